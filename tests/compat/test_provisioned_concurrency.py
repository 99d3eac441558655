"""Provisioned concurrency with boto3 against a real `lamina serve`: Put/Get/Delete/ListProvisionedConcurrencyConfig
on a version and on an alias, IN_PROGRESS then READY, pre-started environments that report
AWS_LAMBDA_INITIALIZATION_TYPE=provisioned-concurrency, survive keep-warm and come back after a restart, and
AWS's errors ($LATEST, unknown qualifiers, limits)."""

from __future__ import annotations

import json

import pytest

from helpers import (
    assert_aws_error,
    create_function,
    environments,
    invoke,
    raw_request,
    unique_name,
    wait_environments,
    wait_provisioned,
)

pytestmark = pytest.mark.timeout(120)

HANDLER = '''
import os

def handler(event, context):
    return {"init_type": os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE"),
            "version": os.environ.get("AWS_LAMBDA_FUNCTION_VERSION"), "color": os.environ.get("COLOR")}
'''


def test_provisioned_on_version_and_alias(lambda_client, functions):
    name = functions({"app.py": HANDLER}, Environment={"Variables": {"COLOR": "red"}})
    assert lambda_client.publish_version(FunctionName=name)["Version"] == "1"
    lambda_client.update_function_configuration(FunctionName=name, Environment={"Variables": {"COLOR": "blue"}})
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 0.2})
    assert lambda_client.publish_version(FunctionName=name)["Version"] == "2"
    lambda_client.create_alias(FunctionName=name, Name="live", FunctionVersion="2")

    resp = lambda_client.put_provisioned_concurrency_config(FunctionName=name, Qualifier="1",
                                                             ProvisionedConcurrentExecutions=2)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert resp["RequestedProvisionedConcurrentExecutions"] == 2
    assert resp["Status"] in ("IN_PROGRESS", "READY")
    assert resp["LastModified"]
    cfg = wait_provisioned(lambda_client, name, "1")
    assert (cfg["AllocatedProvisionedConcurrentExecutions"], cfg["AvailableProvisionedConcurrentExecutions"]) == (2, 2)

    resp, body = invoke(lambda_client, name, {}, Qualifier="1")
    assert body == {"init_type": "provisioned-concurrency", "version": "1", "color": "red"}, body
    _, body = invoke(lambda_client, name, {})
    assert body["init_type"] == "snap-start", body  # a fork of the zygote: restored from its snapshot

    lambda_client.put_provisioned_concurrency_config(FunctionName=name, Qualifier="live",
                                                     ProvisionedConcurrentExecutions=1)
    cfg = wait_provisioned(lambda_client, name, "live")
    assert cfg["AvailableProvisionedConcurrentExecutions"] == 1
    resp, body = invoke(lambda_client, name, {}, Qualifier="live")
    assert resp["ExecutedVersion"] == "2"
    assert body == {"init_type": "provisioned-concurrency", "version": "2", "color": "blue"}, body

    # The alias's own version can't carry a second configuration.
    with pytest.raises(lambda_client.exceptions.ResourceConflictException):
        lambda_client.put_provisioned_concurrency_config(FunctionName=name, Qualifier="2",
                                                         ProvisionedConcurrentExecutions=1)

    listed = lambda_client.list_provisioned_concurrency_configs(FunctionName=name)["ProvisionedConcurrencyConfigs"]
    assert sorted(c["FunctionArn"].rsplit(":", 1)[1] for c in listed) == ["1", "live"]
    assert all(c["Status"] == "READY" for c in listed), listed
    page = lambda_client.list_provisioned_concurrency_configs(FunctionName=name, MaxItems=1)
    assert len(page["ProvisionedConcurrencyConfigs"]) == 1 and page["NextMarker"]
    rest = lambda_client.list_provisioned_concurrency_configs(FunctionName=name, Marker=page["NextMarker"])
    assert len(rest["ProvisionedConcurrencyConfigs"]) == 1 and "NextMarker" not in rest

    lambda_client.delete_provisioned_concurrency_config(FunctionName=name, Qualifier="1")
    with pytest.raises(lambda_client.exceptions.ProvisionedConcurrencyConfigNotFoundException):
        lambda_client.get_provisioned_concurrency_config(FunctionName=name, Qualifier="1")
    # Deleting the alias deletes its configuration.
    lambda_client.delete_alias(FunctionName=name, Name="live")
    assert lambda_client.list_provisioned_concurrency_configs(FunctionName=name)["ProvisionedConcurrencyConfigs"] == []


def test_provisioned_errors(endpoint, lambda_client, functions):
    name = functions({"app.py": HANDLER})
    lambda_client.publish_version(FunctionName=name)
    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException) as info:
        lambda_client.put_provisioned_concurrency_config(FunctionName=name, Qualifier="$LATEST",
                                                         ProvisionedConcurrentExecutions=1)
    assert "unpublished function versions" in str(info.value)
    for qualifier in ("9", "nope"):
        with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
            lambda_client.put_provisioned_concurrency_config(FunctionName=name, Qualifier=qualifier,
                                                             ProvisionedConcurrentExecutions=1)
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.get_provisioned_concurrency_config(FunctionName="no-such-fn-xyz", Qualifier="1")
    with pytest.raises(lambda_client.exceptions.ProvisionedConcurrencyConfigNotFoundException):
        lambda_client.get_provisioned_concurrency_config(FunctionName=name, Qualifier="1")
    path = f"/2019-09-30/functions/{name}/provisioned-concurrency"
    resp = raw_request(endpoint, "PUT", path, json.dumps({"ProvisionedConcurrentExecutions": 1}).encode())
    assert_aws_error(resp, 400, "ValidationException", "must not be null")
    zero = json.dumps({"ProvisionedConcurrentExecutions": 0}).encode()
    resp = raw_request(endpoint, "PUT", path + "?Qualifier=1", zero)
    assert_aws_error(resp, 400, "ValidationException", "greater than or equal to 1")
    # Out of the account's unreserved pool (1,000, of which 100 stay unreserved), in AWS's words ...
    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException) as info:
        lambda_client.put_provisioned_concurrency_config(FunctionName=name, Qualifier="1",
                                                         ProvisionedConcurrentExecutions=1001)
    assert "greater than account's unreserved concurrency [1000]" in str(info.value)
    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException) as info:
        lambda_client.put_provisioned_concurrency_config(FunctionName=name, Qualifier="1",
                                                         ProvisionedConcurrentExecutions=950)
    assert "UnreservedConcurrentExecution below its minimum value of [100]" in str(info.value)
    # ... or out of the function's reservation.
    lambda_client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException) as info:
        lambda_client.put_provisioned_concurrency_config(FunctionName=name, Qualifier="1",
                                                         ProvisionedConcurrentExecutions=2)
    assert "reservedConcurrentExecution" in str(info.value)
    lambda_client.put_provisioned_concurrency_config(FunctionName=name, Qualifier="1",
                                                     ProvisionedConcurrentExecutions=1)
    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException):
        lambda_client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    wait_provisioned(lambda_client, name, "1")
    lambda_client.delete_function(FunctionName=name)
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.list_provisioned_concurrency_configs(FunctionName=name)


def test_provisioned_environments_survive_keep_warm_and_restart(lamina_factory):
    first = lamina_factory(env={"LAMINA_KEEP_WARM_SECONDS": "1"})
    client = first.client()
    name = unique_name("prov")
    create_function(client, name, {"app.py": HANDLER})
    client.publish_version(FunctionName=name)
    wait_environments(first.endpoint, 0)  # $LATEST's warm environment is reaped after a second
    client.put_provisioned_concurrency_config(FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=3)
    wait_provisioned(client, name, "1")
    assert environments(first.endpoint) == 3
    # An on-demand environment beside them is reaped after keep-warm; the provisioned three stay.
    assert invoke(client, name, {})[1]["init_type"] == "snap-start"
    wait_environments(first.endpoint, 3)
    assert client.get_provisioned_concurrency_config(FunctionName=name, Qualifier="1")["Status"] == "READY"
    _, body = invoke(client, name, {}, Qualifier="1")
    assert body["init_type"] == "provisioned-concurrency"
    assert first.stop() == 0

    second = lamina_factory(first.data_dir, env={"LAMINA_KEEP_WARM_SECONDS": "1"})
    client = second.client()
    cfg = wait_provisioned(client, name, "1")
    assert cfg["RequestedProvisionedConcurrentExecutions"] == 3
    wait_environments(second.endpoint, 3)
    _, body = invoke(client, name, {}, Qualifier="1")
    assert body["init_type"] == "provisioned-concurrency"
    client.delete_provisioned_concurrency_config(FunctionName=name, Qualifier="1")
    wait_environments(second.endpoint, 0)  # ordinary environments now: reaped after keep-warm
