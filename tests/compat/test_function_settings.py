"""The smaller per-function operations with boto3 against a real `lamina serve`: Put/GetFunctionRecursionConfig,
Put/GetRuntimeManagementConfig and RuntimeVersionConfig, Put/Get/DeleteResourcePolicy over the policy AddPermission
builds, tags with AWS's limits on functions, and the features Lamina does not offer (capacity providers, function
scaling configuration, durable executions) answered as AWS answers an account without them, SnapStart, and the
request id on every answer."""

from __future__ import annotations

import base64
import json
import time

import pytest

from helpers import (
    ACCOUNT,
    REGION,
    ROLE,
    WAIT,
    assert_aws_error,
    failure,
    fn_arn,
    health,
    make_zip,
    raw_request,
)

pytestmark = pytest.mark.timeout(120)

HANDLER = {"app.py": "def handler(e, c):\n    return 1\n"}


def test_recursion_config(lambda_client, functions):
    fn = functions(HANDLER)
    assert lambda_client.get_function_recursion_config(FunctionName=fn)["RecursiveLoop"] == "Terminate"
    assert lambda_client.put_function_recursion_config(FunctionName=fn, RecursiveLoop="Allow")["RecursiveLoop"] == (
        "Allow")
    assert lambda_client.get_function_recursion_config(FunctionName=fn_arn(fn))["RecursiveLoop"] == "Allow"
    assert failure(lambda_client.put_function_recursion_config, FunctionName=fn, RecursiveLoop="Sometimes") == (
        400, "ValidationException", "1 validation error detected: Value 'Sometimes' at 'recursiveLoop' failed to "
        "satisfy constraint: Member must satisfy enum value set: [Terminate, Allow]")
    assert failure(lambda_client.get_function_recursion_config, FunctionName="no-such-fn")[:2] == (
        404, "ResourceNotFoundException")


def test_runtime_management_config(lambda_client, functions):
    fn = functions(HANDLER)
    cfg = lambda_client.get_function_configuration(FunctionName=fn)
    version_arn = cfg["RuntimeVersionConfig"]["RuntimeVersionArn"]
    assert version_arn.startswith(f"arn:aws:lambda:{REGION}::runtime:")
    got = lambda_client.get_runtime_management_config(FunctionName=fn)
    assert (got["UpdateRuntimeOn"], got["FunctionArn"]) == ("Auto", f"{fn_arn(fn)}:$LATEST")
    put = lambda_client.put_runtime_management_config(FunctionName=fn, UpdateRuntimeOn="Manual",
                                                      RuntimeVersionArn=version_arn)
    assert (put["UpdateRuntimeOn"], put["RuntimeVersionArn"]) == ("Manual", version_arn)
    assert lambda_client.get_runtime_management_config(FunctionName=fn)["RuntimeVersionArn"] == version_arn
    # Lamina runs the host's interpreter: another runtime version cannot be pinned.
    other = f"arn:aws:lambda:{REGION}::runtime:{'0' * 64}"
    assert failure(lambda_client.put_runtime_management_config, FunctionName=fn, UpdateRuntimeOn="Manual",
                   RuntimeVersionArn=other)[:2] == (400, "InvalidParameterValueException")
    assert failure(lambda_client.put_runtime_management_config, FunctionName=fn, UpdateRuntimeOn="Sometimes")[:2] == (
        400, "ValidationException")
    lambda_client.put_runtime_management_config(FunctionName=fn, UpdateRuntimeOn="FunctionUpdate")
    assert "RuntimeVersionArn" not in lambda_client.get_runtime_management_config(FunctionName=fn)


def test_resource_policy_documents(lambda_client, functions):
    fn = functions(HANDLER)
    arn = fn_arn(fn)
    assert failure(lambda_client.get_resource_policy, ResourceArn=arn)[:2] == (404, "ResourceNotFoundException")
    lambda_client.add_permission(FunctionName=fn, StatementId="s1", Action="lambda:InvokeFunction",
                                 Principal="s3.amazonaws.com")
    # The document is the policy AddPermission built.
    got = lambda_client.get_resource_policy(ResourceArn=arn)
    assert [s["Sid"] for s in json.loads(got["Policy"])["Statement"]] == ["s1"]
    document = {"Version": "2012-10-17", "Statement": [
        {"Sid": "fromdoc", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
         "Action": "lambda:InvokeFunction", "Resource": arn}]}
    assert failure(lambda_client.put_resource_policy, ResourceArn=arn, Policy=json.dumps(document),
                   RevisionId="0" * 36)[:2] == (412, "PreconditionFailedException")
    put = lambda_client.put_resource_policy(ResourceArn=arn, Policy=json.dumps(document), RevisionId=got["RevisionId"])
    # It replaced AddPermission's statement; GetPolicy sees the same document.
    assert [s["Sid"] for s in json.loads(put["Policy"])["Statement"]] == ["fromdoc"]
    assert json.loads(lambda_client.get_policy(FunctionName=fn)["Policy"])["Statement"] == document["Statement"]
    lambda_client.remove_permission(FunctionName=fn, StatementId="fromdoc")
    lambda_client.put_resource_policy(ResourceArn=arn, Policy=json.dumps(document))
    lambda_client.delete_resource_policy(ResourceArn=arn)
    assert failure(lambda_client.get_policy, FunctionName=fn)[:2] == (404, "ResourceNotFoundException")
    assert failure(lambda_client.put_resource_policy, ResourceArn=arn, Policy="{not json")[:2] == (
        400, "InvalidParameterValueException")
    assert failure(lambda_client.put_resource_policy, ResourceArn=arn, Policy=json.dumps({"Statement": []}))[:2] == (
        400, "InvalidParameterValueException")


def test_function_tags(lambda_client, functions):
    fn = functions(HANDLER, Tags={"a": "1"})
    arn = fn_arn(fn)
    before = lambda_client.get_function(FunctionName=fn)
    assert before["Tags"] == {"a": "1"}
    lambda_client.tag_resource(Resource=arn, Tags={"b": "2"})
    after = lambda_client.get_function(FunctionName=fn)
    assert after["Tags"] == {"a": "1", "b": "2"}
    # Tagging is a change of revision, as on AWS.
    assert after["Configuration"]["RevisionId"] != before["Configuration"]["RevisionId"]
    assert failure(lambda_client.tag_resource, Resource=arn, Tags={f"k{i}": "v" for i in range(49)}) == (
        400, "InvalidParameterValueException", "Number of tags exceeds resource tag limit.")
    assert failure(lambda_client.tag_resource, Resource=arn, Tags={"long": "v" * 257})[:2] == (
        400, "ValidationException")
    assert failure(lambda_client.tag_resource, Resource=arn, Tags={})[:2] == (400, "InvalidParameterValueException")
    assert failure(lambda_client.untag_resource, Resource=arn, TagKeys=[])[:2] == (400, "ValidationException")
    assert failure(lambda_client.tag_resource, Resource=f"{arn}:1", Tags={"a": "b"}) == (
        400, "InvalidParameterValueException", "Tags on function aliases and versions are not supported. Please "
        "specify a function ARN.")
    assert failure(lambda_client.list_tags, Resource=f"arn:aws:lambda:{REGION}:{ACCOUNT}:foobar:x")[:2] == (
        400, "ValidationException")
    provider = f"arn:aws:lambda:{REGION}:{ACCOUNT}:capacity-provider:none"
    assert failure(lambda_client.list_tags, Resource=provider) == (
        404, "ResourceNotFoundException", f"Capacity provider not found: {provider}")
    lambda_client.untag_resource(Resource=arn, TagKeys=["a", "nope"])
    assert lambda_client.list_tags(Resource=arn)["Tags"] == {"b": "2"}


def test_features_not_offered(lambda_client, functions):
    fn = functions(HANDLER)
    assert lambda_client.list_capacity_providers()["CapacityProviders"] == []
    assert failure(lambda_client.get_capacity_provider, CapacityProviderName="cp") == (
        404, "ResourceNotFoundException",
        f"Capacity provider not found: arn:aws:lambda:{REGION}:{ACCOUNT}:capacity-provider:cp")
    status, code, message = failure(lambda_client.create_capacity_provider, CapacityProviderName="cp",
                                    VpcConfig={"SubnetIds": ["subnet-1"], "SecurityGroupIds": ["sg-1"]},
                                    PermissionsConfig={"CapacityProviderOperatorRoleArn":
                                                       f"arn:aws:iam::{ACCOUNT}:role/r"})
    assert (status, code) == (400, "InvalidParameterValueException") and "Lamina does not offer" in message
    status, code, message = failure(lambda_client.get_function_scaling_config, FunctionName=fn, Qualifier="$LATEST")
    assert (status, code) == (400, "InvalidParameterValueException") and "Lamina does not offer" in message
    assert lambda_client.list_durable_executions_by_function(FunctionName=fn)["DurableExecutions"] == []
    execution = f"{fn_arn(fn)}:$LATEST/durable-execution/run/1"
    assert failure(lambda_client.get_durable_execution, DurableExecutionArn=execution)[:2] == (
        404, "ResourceNotFoundException")


def test_configuration_revisions_follow_state(lambda_client, functions):
    """As AWS records it: CreateFunction answers Pending without LastUpdateStatus; becoming Active is a new revision;
    an update answers InProgress ("The function is being created.") and its end is another revision."""
    name = functions(HANDLER, wait=False)
    created = lambda_client.get_function_configuration(FunctionName=name)
    lambda_client.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    active = lambda_client.get_function_configuration(FunctionName=name)
    assert active["State"] == "Active" and active["LastUpdateStatus"] == "Successful"
    if created["State"] == "Pending":
        assert "LastUpdateStatus" not in created
        assert active["RevisionId"] != created["RevisionId"]
    updated = lambda_client.update_function_configuration(FunctionName=name, Description="x")
    assert (updated["LastUpdateStatus"], updated["LastUpdateStatusReason"], updated["LastUpdateStatusReasonCode"]) == (
        "InProgress", "The function is being created.", "Creating")
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    done = lambda_client.get_function_configuration(FunctionName=name)
    assert done["RevisionId"] not in (updated["RevisionId"], active["RevisionId"])


SNAP_HANDLER = '''
import os, time
INIT_PID = os.getpid()
INITIALISED_AT = time.time()

def handler(event, context):
    return {"initialised_at": INITIALISED_AT}
'''


def _host_has(endpoint: str, runtime: str) -> bool:
    return runtime in health(endpoint)["runtimes"]["available"]


def test_snap_start(lambda_client, functions, endpoint):
    """SnapStart as AWS configures it; honoured by initialising a published version at publish time (its zygote,
    from which environments are restored): the version is Pending until then, its OptimizationStatus On."""
    if not _host_has(endpoint, "python3.12"):
        pytest.skip("needs python3.12 on this host")
    assert failure(lambda_client.create_function, FunctionName="snap-bad", Runtime="python3.11", Role=ROLE,
                   Handler="app.handler", Code={"ZipFile": make_zip(HANDLER)},
                   SnapStart={"ApplyOn": "PublishedVersions"}) == (
        400, "InvalidParameterValueException", "python3.11 is not supported for SnapStart enabled functions.")
    status, code, message = failure(lambda_client.create_function, FunctionName="snap-bad", Runtime="java21",
                                    Role=ROLE, Handler="x", Code={"ZipFile": make_zip(HANDLER)},
                                    SnapStart={"ApplyOn": "Sometimes"})
    assert (status, code) == (400, "ValidationException") and "snapStart.applyOn" in message
    fn = functions({"app.py": SNAP_HANDLER}, Runtime="python3.12")
    updated = lambda_client.update_function_configuration(FunctionName=fn, SnapStart={"ApplyOn": "PublishedVersions"})
    assert updated["SnapStart"] == {"ApplyOn": "PublishedVersions", "OptimizationStatus": "Off"}
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=fn, WaiterConfig=WAIT)
    published = lambda_client.publish_version(FunctionName=fn)
    assert published["State"] == "Pending"
    assert published["SnapStart"] == {"ApplyOn": "PublishedVersions", "OptimizationStatus": "On"}
    lambda_client.get_waiter("published_version_active").wait(FunctionName=fn, Qualifier=published["Version"],
                                                              WaiterConfig=WAIT)
    ready_at = time.time()
    # Initialised at publish (before the version was Active), not at the first invoke.
    out = json.loads(lambda_client.invoke(FunctionName=fn, Qualifier=published["Version"])["Payload"].read())
    assert out["initialised_at"] < ready_at
    assert lambda_client.get_function_configuration(FunctionName=fn)["SnapStart"]["OptimizationStatus"] == "Off"


def test_every_answer_has_a_request_id(lambda_client, functions):
    """x-amzn-RequestId on every answer, as AWS sends it (boto3 reads it into ResponseMetadata.RequestId)."""
    fn = functions(HANDLER)
    answers = [lambda_client.list_functions(), lambda_client.get_function(FunctionName=fn),
               lambda_client.list_layers(), lambda_client.get_account_settings(),
               lambda_client.get_function_recursion_config(FunctionName=fn)]
    ids = [a["ResponseMetadata"].get("RequestId") for a in answers]
    assert all(ids) and len(set(ids)) == len(ids), ids
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException) as exc:
        lambda_client.get_function(FunctionName="no-such-function")
    assert exc.value.response["ResponseMetadata"].get("RequestId")


def test_members_are_checked_not_dropped(lambda_client, functions, endpoint):
    """A member of the wrong JSON type is refused (boto3 would not send one; other clients may), and configuration
    Lamina cannot honour is refused saying so, never accepted and dropped; TracingConfig is kept."""
    fn = functions(HANDLER, TracingConfig={"Mode": "Active"})
    assert lambda_client.get_function_configuration(FunctionName=fn)["TracingConfig"] == {"Mode": "Active"}
    path = f"/2015-03-31/functions/{fn}"
    for route, body in ((path + "/configuration", {"TracingConfig": "not-an-object", "Timeout": "ten"}),
                        (path + "/code", {"ZipFile": base64.b64encode(make_zip(HANDLER)).decode(),
                                          "S3ObjectVersion": 12345})):
        resp = raw_request(endpoint, "PUT", route, json.dumps(body).encode())
        assert_aws_error(resp, 400, "ValidationException", "Member must be")
    # The code was not replaced by the refused update.
    assert lambda_client.get_function_configuration(FunctionName=fn)["LastUpdateStatus"] == "Successful"
    for member in ({"KMSKeyArn": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1"},
                   {"FileSystemConfigs": [{"Arn": f"arn:aws:elasticfilesystem:{REGION}:{ACCOUNT}:access-point/fsap-1",
                                           "LocalMountPath": "/mnt/efs"}]}):
        status, code, message = failure(lambda_client.update_function_configuration, FunctionName=fn, **member)
        assert (status, code) == (400, "InvalidParameterValueException") and "not supported" in message
    assert failure(lambda_client.update_function_configuration, FunctionName=fn,
                   TracingConfig={"Mode": "Sometimes"})[:2] == (400, "ValidationException")
