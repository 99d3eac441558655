"""Provisioned concurrency beyond the basics, with boto3 against a real `lamina serve`: an alias with weighted
routing spreads its environments over both versions (and re-spreads them when the weights change), a function
with tenant isolation refuses it, pre-started environments whose init fails report FAILED with AWS's
StatusReason, and a provisioned environment that dies is replaced without any invocation asking for it."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from helpers import create_function, failure, invoke, unique_name, wait_environments, wait_provisioned

pytestmark = pytest.mark.timeout(180)

HANDLER = '''
import os, sys

if os.environ.get("FAIL_PUBLISHED") and os.environ["AWS_LAMBDA_FUNCTION_VERSION"] != "$LATEST":
    raise RuntimeError("this init refuses to run published versions")

def handler(event, context):
    if event.get("exit") is not None:
        sys.stdout.flush()
        os._exit(int(event["exit"]))
    return {"init_type": os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE"),
            "version": os.environ.get("AWS_LAMBDA_FUNCTION_VERSION"), "stream": context.log_stream_name}
'''


def _publish_two_versions(client, name: str) -> None:
    create_function(client, name, {"app.py": HANDLER})
    assert client.publish_version(FunctionName=name)["Version"] == "1"
    client.update_function_configuration(FunctionName=name, Description="second")
    client.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 0.2})
    assert client.publish_version(FunctionName=name)["Version"] == "2"


def _init_type(client, name: str, version: str) -> str:
    resp, body = invoke(client, name, {}, Qualifier=version)
    assert resp["ExecutedVersion"] == version and "FunctionError" not in resp, body
    return body["init_type"]


def test_weighted_alias_spreads_provisioned_environments(lamina_factory):
    server = lamina_factory(env={"LAMINA_KEEP_WARM_SECONDS": "1"})
    client = server.client()
    name = unique_name("pc-weights")
    _publish_two_versions(client, name)
    client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    client.put_provisioned_concurrency_config(FunctionName=name, Qualifier="live", ProvisionedConcurrentExecutions=4)
    cfg = wait_provisioned(client, name, "live", "READY")
    assert cfg["AllocatedProvisionedConcurrentExecutions"] == 4
    wait_environments(server.endpoint, 4)  # $LATEST's warm environment is reaped; the four stay
    assert _init_type(client, name, "1") == "provisioned-concurrency"
    assert _init_type(client, name, "2") == "snap-start"  # an ordinary fork of the zygote

    # A canary: half the traffic to version 2. The four environments are spread 2 + 2 (AWS moves provisioned
    # concurrency with the weights, so neither version's share of invocations cold-starts).
    client.update_alias(FunctionName=name, Name="live", RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}})
    cfg = wait_provisioned(client, name, "live", "READY")
    assert (cfg["RequestedProvisionedConcurrentExecutions"], cfg["AllocatedProvisionedConcurrentExecutions"]) == (4, 4)
    wait_environments(server.endpoint, 4)  # version 1's surplus two became ordinary and were reaped
    assert _init_type(client, name, "2") == "provisioned-concurrency"
    assert _init_type(client, name, "1") == "provisioned-concurrency"
    seen = {invoke(client, name, {}, Qualifier="live")[0]["ExecutedVersion"] for _ in range(40)}
    assert seen == {"1", "2"}, seen

    # While the routing is in place the alias's configuration cannot be changed (AWS refuses it too).
    with pytest.raises(ClientError) as err:
        client.put_provisioned_concurrency_config(FunctionName=name, Qualifier="live",
                                                  ProvisionedConcurrentExecutions=2)
    assert err.value.response["Error"]["Code"] == "InvalidParameterValueException"
    assert "Invalid alias configuration for Provisioned Concurrency" in err.value.response["Error"]["Message"]
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400

    # Less weight: 3 + 1. Then promotion (version 2, no routing): all four on version 2.
    client.update_alias(FunctionName=name, Name="live", RoutingConfig={"AdditionalVersionWeights": {"2": 0.25}})
    wait_provisioned(client, name, "live", "READY")
    wait_environments(server.endpoint, 4)
    client.update_alias(FunctionName=name, Name="live", FunctionVersion="2",
                        RoutingConfig={"AdditionalVersionWeights": {}})
    cfg = wait_provisioned(client, name, "live", "READY")
    assert cfg["AvailableProvisionedConcurrentExecutions"] == 4
    wait_environments(server.endpoint, 4)
    streams = {invoke(client, name, {}, Qualifier="2")[1]["stream"] for _ in range(8)}
    assert len(streams) == 1  # sequential invocations reuse one warm environment...
    assert _init_type(client, name, "2") == "provisioned-concurrency"
    # ... and the configuration can be managed again now that the routing is gone.
    client.put_provisioned_concurrency_config(FunctionName=name, Qualifier="live", ProvisionedConcurrentExecutions=2)
    wait_provisioned(client, name, "live", "READY")
    wait_environments(server.endpoint, 2)
    client.delete_provisioned_concurrency_config(FunctionName=name, Qualifier="live")
    wait_environments(server.endpoint, 0)


def test_weighted_spread_survives_a_restart(lamina_factory):
    first = lamina_factory(env={"LAMINA_KEEP_WARM_SECONDS": "1"})
    client = first.client()
    name = unique_name("pc-weights-restart")
    _publish_two_versions(client, name)
    client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    client.put_provisioned_concurrency_config(FunctionName=name, Qualifier="live", ProvisionedConcurrentExecutions=2)
    client.update_alias(FunctionName=name, Name="live", RoutingConfig={"AdditionalVersionWeights": {"2": 0.5}})
    wait_provisioned(client, name, "live", "READY")
    assert first.stop() == 0

    second = lamina_factory(first.data_dir, env={"LAMINA_KEEP_WARM_SECONDS": "1"})
    client = second.client()
    cfg = wait_provisioned(client, name, "live", "READY")
    assert (cfg["RequestedProvisionedConcurrentExecutions"], cfg["AllocatedProvisionedConcurrentExecutions"]) == (2, 2)
    wait_environments(second.endpoint, 2)  # one per version, nothing else
    assert _init_type(client, name, "1") == "provisioned-concurrency"
    assert _init_type(client, name, "2") == "provisioned-concurrency"


def test_tenant_isolated_function_refuses_provisioned_concurrency(lambda_client, functions):
    name = functions({"app.py": HANDLER}, TenancyConfig={"TenantIsolationMode": "PER_TENANT"})
    lambda_client.publish_version(FunctionName=name)
    lambda_client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    for qualifier in ("1", "live"):
        with pytest.raises(ClientError) as err:
            lambda_client.put_provisioned_concurrency_config(FunctionName=name, Qualifier=qualifier,
                                                             ProvisionedConcurrentExecutions=1)
        error = err.value.response
        assert error["Error"]["Code"] == "InvalidParameterValueException"
        assert error["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert "tenant isolation" in error["Error"]["Message"]
    assert lambda_client.list_provisioned_concurrency_configs(FunctionName=name)["ProvisionedConcurrencyConfigs"] == []


def test_failing_init_reports_failed_with_a_reason(lambda_client, functions):
    # $LATEST initialises (so the function is Active); every published version's init raises.
    name = functions({"app.py": HANDLER}, Environment={"Variables": {"FAIL_PUBLISHED": "1"}})
    lambda_client.publish_version(FunctionName=name)
    resp = lambda_client.put_provisioned_concurrency_config(FunctionName=name, Qualifier="1",
                                                            ProvisionedConcurrentExecutions=2)
    assert resp["Status"] == "IN_PROGRESS"
    cfg = wait_provisioned(lambda_client, name, "1", "FAILED")
    assert cfg["StatusReason"].startswith("FUNCTION_ERROR_INIT_FAILURE"), cfg
    assert "refuses to run published versions" in cfg["StatusReason"], cfg
    assert (cfg["AllocatedProvisionedConcurrentExecutions"], cfg["AvailableProvisionedConcurrentExecutions"]) == (0, 0)
    listed = lambda_client.list_provisioned_concurrency_configs(FunctionName=name)["ProvisionedConcurrencyConfigs"]
    assert [c["Status"] for c in listed] == ["FAILED"]
    # Invocations of that version report the init error; $LATEST is unaffected.
    resp, body = invoke(lambda_client, name, {}, Qualifier="1")
    assert resp.get("FunctionError") == "Unhandled" and "refuses" in body["errorMessage"], body
    assert invoke(lambda_client, name, {})[1]["version"] == "$LATEST"
    lambda_client.delete_provisioned_concurrency_config(FunctionName=name, Qualifier="1")


def test_a_provisioned_environment_that_dies_is_replaced(lambda_client, functions):
    name = functions({"app.py": HANDLER})
    lambda_client.publish_version(FunctionName=name)
    lambda_client.put_provisioned_concurrency_config(FunctionName=name, Qualifier="1",
                                                     ProvisionedConcurrentExecutions=1)
    wait_provisioned(lambda_client, name, "1", "READY")
    _, before = invoke(lambda_client, name, {}, Qualifier="1")
    assert before["init_type"] == "provisioned-concurrency"

    resp, body = invoke(lambda_client, name, {"exit": 3}, Qualifier="1")  # the environment's process dies
    assert resp.get("FunctionError") == "Unhandled", body
    # A replacement starts on its own (no invocation asks for it): the configuration is READY again ...
    cfg = wait_provisioned(lambda_client, name, "1")
    assert cfg["AvailableProvisionedConcurrentExecutions"] == 1, cfg
    # ... and it is a new, provisioned environment.
    _, after = invoke(lambda_client, name, {}, Qualifier="1")
    assert after["init_type"] == "provisioned-concurrency" and after["stream"] != before["stream"], (before, after)
    lambda_client.delete_provisioned_concurrency_config(FunctionName=name, Qualifier="1")


def test_provisioned_errors_match_aws(lambda_client, functions):
    """The errors of AWS's own provisioned-concurrency API tests, word for word."""
    name = functions({"app.py": HANDLER})
    lambda_client.publish_version(FunctionName=name)
    lambda_client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    arn = f"arn:aws:lambda:us-east-1:000000000000:function:{name}"

    get, put = lambda_client.get_provisioned_concurrency_config, lambda_client.put_provisioned_concurrency_config
    delete = lambda_client.delete_provisioned_concurrency_config
    for call in (get, delete):
        assert failure(call, FunctionName=name, Qualifier="$LATEST") == (
            400, "InvalidParameterValueException", "The function resource provided must be an alias or a published "
            "version.")
        assert failure(call, FunctionName=name, Qualifier="noalias") == (
            404, "ResourceNotFoundException", f"Cannot find alias arn: {arn}:noalias")
        assert failure(call, FunctionName=name, Qualifier="10") == (
            404, "ResourceNotFoundException", f"Function not found: {arn}:10")
    assert failure(put, FunctionName=name, Qualifier="$LATEST", ProvisionedConcurrentExecutions=1) == (
        400, "InvalidParameterValueException", "Provisioned Concurrency Configs cannot be applied to unpublished "
        "function versions.")
    assert failure(put, FunctionName="doesnotexist", Qualifier="noalias", ProvisionedConcurrentExecutions=1) == (
        404, "ResourceNotFoundException", "Cannot find alias arn: "
        "arn:aws:lambda:us-east-1:000000000000:function:doesnotexist:noalias")
    assert failure(put, FunctionName="doesnotexist", Qualifier="1", ProvisionedConcurrentExecutions=1) == (
        404, "ResourceNotFoundException", "Function not found: "
        "arn:aws:lambda:us-east-1:000000000000:function:doesnotexist:1")
    # Deleting a configuration that is not there is a 204.
    resp = delete(FunctionName=name, Qualifier="1")
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204

    # One configuration per version, directly or through an alias.
    put(FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=1)
    assert failure(put, FunctionName=name, Qualifier="live", ProvisionedConcurrentExecutions=1) == (
        409, "ResourceConflictException", "Alias can't be used for Provisioned Concurrency configuration on an "
        "already Provisioned version")
    delete(FunctionName=name, Qualifier="1")
    put(FunctionName=name, Qualifier="live", ProvisionedConcurrentExecutions=1)
    assert failure(put, FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=1) == (
        409, "ResourceConflictException", "Version is pointed by a Provisioned Concurrency alias")
    delete(FunctionName=name, Qualifier="live")

    # Limits: over the account's limit, or leaving less than 100 unreserved, for either kind of concurrency.
    limit = lambda_client.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"]
    assert failure(put, FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=limit + 1) == (
        400, "InvalidParameterValueException", "Specified ConcurrentExecutions for function is greater than "
        f"account's unreserved concurrency [{limit}].")
    assert failure(put, FunctionName=name, Qualifier="1", ProvisionedConcurrentExecutions=limit) == (
        400, "InvalidParameterValueException", "Specified ConcurrentExecutions for function decreases account's "
        "UnreservedConcurrentExecution below its minimum value of [100].")
    for value in (limit + 1, limit):
        assert failure(lambda_client.put_function_concurrency, FunctionName=name,
                     ReservedConcurrentExecutions=value) == (
            400, "InvalidParameterValueException", "Specified ReservedConcurrentExecutions for function decreases "
            "account's UnreservedConcurrentExecution below its minimum value of [100].")
