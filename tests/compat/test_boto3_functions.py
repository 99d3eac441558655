"""boto3's lambda client against a real `lamina serve`: the function lifecycle end to end."""

from __future__ import annotations

import json
import re

import pytest
from botocore.exceptions import ClientError

from helpers import (
    ROLE,
    RUNTIME,
    WAIT,
    client_error,
    create_function,
    decode_log,
    fn_arn,
    invoke,
    make_zip,
    probe_code,
    request_id,
    sha256_b64,
    unique_name,
)

pytestmark = pytest.mark.timeout(90)

LAST_MODIFIED = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}[+-]\d{4}$")


def test_create_wait_active_and_get(lambda_client):
    name = unique_name("create")
    code = make_zip(probe_code())
    try:
        resp = lambda_client.create_function(FunctionName=name, Runtime=RUNTIME, Role=ROLE,
                                             Handler="app.handler", Code={"ZipFile": code}, Description="d1")
        assert resp["ResponseMetadata"]["HTTPStatusCode"] == 201
        assert resp["FunctionName"] == name
        assert resp["FunctionArn"] == fn_arn(name)
        assert resp["Runtime"] == RUNTIME
        assert resp["Handler"] == "app.handler"
        assert resp["Role"] == ROLE
        assert resp["Version"] == "$LATEST"
        assert resp["CodeSize"] == len(code)
        assert resp["CodeSha256"] == sha256_b64(code)
        assert resp["Timeout"] == 3
        assert resp["MemorySize"] == 128
        assert resp["PackageType"] == "Zip"
        assert resp["State"] in ("Pending", "Active")
        assert LAST_MODIFIED.match(resp["LastModified"]), resp["LastModified"]
        assert resp["RevisionId"]

        lambda_client.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAIT)

        got = lambda_client.get_function(FunctionName=name)
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 200
        conf = got["Configuration"]
        assert conf["State"] == "Active"
        assert conf["LastUpdateStatus"] == "Successful"
        assert conf["FunctionArn"] == fn_arn(name)
        assert conf["CodeSha256"] == sha256_b64(code)
        assert conf["Description"] == "d1"

        conf2 = lambda_client.get_function_configuration(FunctionName=name)
        assert conf2["FunctionName"] == name and conf2["State"] == "Active"

        # the function can also be addressed by its ARN
        assert lambda_client.get_function(FunctionName=fn_arn(name))["Configuration"]["FunctionName"] == name
    finally:
        lambda_client.delete_function(FunctionName=name)


def test_invoke_result(lambda_client, functions):
    name = functions(probe_code("v1"))
    resp, body = invoke(lambda_client, name, {"a": 1, "b": [1, 2]})
    assert resp["StatusCode"] == 200
    assert "FunctionError" not in resp
    assert resp["ExecutedVersion"] == "$LATEST"
    assert body["echo"] == {"a": 1, "b": [1, 2]}
    assert body["version"] == "v1"
    assert body["request_id"] == request_id(resp)

    # invoke by ARN and with an explicit RequestResponse type
    resp, body = invoke(lambda_client, fn_arn(name), {"x": "y"}, InvocationType="RequestResponse")
    assert resp["StatusCode"] == 200 and body["echo"] == {"x": "y"}


def test_invoke_non_object_payloads(lambda_client, functions):
    name = functions({"app.py": "def handler(event, context):\n    return event\n"})
    for payload in ("42", '"text"', "[1, 2]", "null"):
        resp, body = invoke(lambda_client, name, payload)
        assert resp["StatusCode"] == 200 and "FunctionError" not in resp
        assert body == json.loads(payload), payload


def test_invoke_handler_error(lambda_client, functions):
    name = functions(probe_code())
    resp, body = invoke(lambda_client, name, {"raise": "boom 42"})
    assert resp["StatusCode"] == 200
    assert resp["FunctionError"] == "Unhandled"
    assert set(body) >= {"errorMessage", "errorType", "requestId", "stackTrace"}, body
    assert body["errorMessage"] == "boom 42"
    assert body["errorType"] == "ValueError"
    assert body["requestId"] == request_id(resp)
    assert isinstance(body["stackTrace"], list) and body["stackTrace"], body
    assert all(isinstance(line, str) for line in body["stackTrace"])
    assert any("app.py" in line for line in body["stackTrace"]), body["stackTrace"]

    # the environment survives a handled exception
    resp, body = invoke(lambda_client, name, {"ok": True})
    assert resp["StatusCode"] == 200 and "FunctionError" not in resp and body["echo"] == {"ok": True}


def test_invoke_log_tail(lambda_client, functions):
    name = functions(probe_code())
    resp, body = invoke(lambda_client, name, {"a": 1}, LogType="Tail")
    assert resp["StatusCode"] == 200 and "FunctionError" not in resp
    rid = request_id(resp)
    log = decode_log(resp)
    assert f"START RequestId: {rid} Version: $LATEST" in log, log
    assert f"END RequestId: {rid}" in log, log
    assert f"REPORT RequestId: {rid}" in log, log
    assert log.index("START RequestId") < log.index("END RequestId") < log.index("REPORT RequestId"), log

    # without LogType=Tail there is no LogResult
    resp, _ = invoke(lambda_client, name, {"a": 1})
    assert "LogResult" not in resp


def test_invoke_event_is_202(lambda_client, functions):
    name = functions(probe_code())
    resp = lambda_client.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"async": true}')
    assert resp["StatusCode"] == 202
    assert resp["Payload"].read() == b""
    assert "FunctionError" not in resp


def test_invoke_dry_run_is_204(lambda_client, functions):
    name = functions(probe_code())
    resp = lambda_client.invoke(FunctionName=name, InvocationType="DryRun", Payload=b"{}")
    assert resp["StatusCode"] == 204
    assert resp["Payload"].read() == b""


def test_update_code_then_new_result(lambda_client, functions):
    name = functions(probe_code("v1"))
    _, body = invoke(lambda_client, name, {})
    assert body["version"] == "v1"

    new_code = make_zip(probe_code("v2"))
    resp = lambda_client.update_function_code(FunctionName=name, ZipFile=new_code)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert resp["FunctionName"] == name
    assert resp["CodeSha256"] == sha256_b64(new_code)
    assert resp["CodeSize"] == len(new_code)
    assert resp["LastUpdateStatus"] in ("InProgress", "Successful")

    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    conf = lambda_client.get_function(FunctionName=name)["Configuration"]
    assert conf["LastUpdateStatus"] == "Successful"
    assert conf["State"] == "Active"
    assert conf["CodeSha256"] == sha256_b64(new_code)

    for _ in range(3):  # every invoke after the update sees the new code, none a stale warm environment
        resp, body = invoke(lambda_client, name, {})
        assert resp["StatusCode"] == 200 and "FunctionError" not in resp, body
        assert body["version"] == "v2"


def test_update_configuration(lambda_client, functions):
    name = functions(probe_code())
    resp = lambda_client.update_function_configuration(FunctionName=name, Timeout=7, MemorySize=256,
                                                       Environment={"Variables": {"K": "V"}})
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert resp["Timeout"] == 7 and resp["MemorySize"] == 256
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    conf = lambda_client.get_function_configuration(FunctionName=name)
    assert conf["Timeout"] == 7 and conf["MemorySize"] == 256
    assert conf["Environment"]["Variables"] == {"K": "V"}


def test_list_functions_pagination(lambda_client, functions):
    prefix = unique_name("page")
    mine = {functions(probe_code(), prefix=prefix, wait=False) for _ in range(3)}

    seen: list[str] = []
    marker = None
    pages = 0
    while True:
        kwargs = {"MaxItems": 1}
        if marker:
            kwargs["Marker"] = marker
        page = lambda_client.list_functions(**kwargs)
        assert page["ResponseMetadata"]["HTTPStatusCode"] == 200
        assert len(page["Functions"]) <= 1, page["Functions"]
        seen.extend(f["FunctionName"] for f in page["Functions"])
        pages += 1
        assert pages < 1000, "pagination does not end"
        marker = page.get("NextMarker")
        if not marker:
            break
        assert len(page["Functions"]) == 1, "a page with a NextMarker must be full"
    assert len(seen) == len(set(seen)), f"a function was listed twice: {seen}"
    assert mine <= set(seen), (mine, seen)

    total = len(seen)
    page = lambda_client.list_functions(MaxItems=2)
    assert len(page["Functions"]) == 2 and page["NextMarker"], page

    everything = lambda_client.list_functions()
    assert "NextMarker" not in everything or total > 50
    names = {f["FunctionName"] for f in everything["Functions"]}
    assert mine <= names
    listed = next(f for f in everything["Functions"] if f["FunctionName"] in mine)
    assert listed["FunctionArn"] == fn_arn(listed["FunctionName"]) and listed["Runtime"] == RUNTIME

    # boto3's paginator follows NextMarker the same way
    paginator = lambda_client.get_paginator("list_functions")
    via_paginator = [f["FunctionName"] for p in paginator.paginate(PaginationConfig={"PageSize": 2})
                     for f in p["Functions"]]
    assert mine <= set(via_paginator) and len(via_paginator) == len(set(via_paginator))


def test_delete_function(lambda_client):
    name = unique_name("del")
    create_function(lambda_client, name, probe_code())
    resp = lambda_client.delete_function(FunctionName=name)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] in (200, 204)
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.get_function(FunctionName=name)
    assert name not in {f["FunctionName"] for f in lambda_client.list_functions()["Functions"]}
    # the name can be reused, with new code
    create_function(lambda_client, name, probe_code("again"))
    _, body = invoke(lambda_client, name, {})
    assert body["version"] == "again"
    lambda_client.delete_function(FunctionName=name)


@pytest.mark.parametrize("op", ["get_function", "get_function_configuration", "invoke", "delete_function",
                                "update_function_code"])
def test_unknown_function_is_404(lambda_client, op):
    name = unique_name("missing")
    kwargs = {"FunctionName": name}
    if op == "update_function_code":
        kwargs["ZipFile"] = make_zip(probe_code())
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException) as exc:
        getattr(lambda_client, op)(**kwargs)
    status, code, message = client_error(exc)
    assert status == 404
    assert code == "ResourceNotFoundException"
    assert name in message, message


def test_create_existing_is_409(lambda_client, functions):
    name = functions(probe_code())
    with pytest.raises(lambda_client.exceptions.ResourceConflictException) as exc:
        create_function(lambda_client, name, probe_code("other"), wait=False)
    status, code, message = client_error(exc)
    assert status == 409 and code == "ResourceConflictException"
    assert name in message, message
    _, body = invoke(lambda_client, name, {})
    assert body["version"] == "v1", "the failed create must not replace the code"


def test_create_not_a_zip_is_400(lambda_client):
    name = unique_name("nozip")
    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException) as exc:
        create_function(lambda_client, name, b"this is not a zip file", wait=False)
    status, code, message = client_error(exc)
    assert status == 400 and code == "InvalidParameterValueException"
    assert "Could not unzip uploaded file" in message, message
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.get_function(FunctionName=name)


def test_update_code_not_a_zip_is_400(lambda_client, functions):
    name = functions(probe_code())
    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException) as exc:
        lambda_client.update_function_code(FunctionName=name, ZipFile=b"PK\x03\x04 truncated")
    status, code, message = client_error(exc)
    assert status == 400 and "Could not unzip uploaded file" in message, message
    _, body = invoke(lambda_client, name, {})
    assert body["version"] == "v1"


@pytest.mark.parametrize("key", ["AWS_REGION", "AWS_LAMBDA_FUNCTION_NAME", "_HANDLER", "AWS_ACCESS_KEY_ID"])
def test_reserved_environment_keys_are_400(lambda_client, key):
    name = unique_name("envres")
    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException) as exc:
        create_function(lambda_client, name, probe_code(), wait=False,
                        Environment={"Variables": {"OK_VAR": "1", key: "x"}})
    status, code, message = client_error(exc)
    assert status == 400 and code == "InvalidParameterValueException"
    assert key in message, message
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.get_function(FunctionName=name)


def test_reserved_environment_key_on_update_is_400(lambda_client, functions):
    name = functions(probe_code())
    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException) as exc:
        lambda_client.update_function_configuration(FunctionName=name,
                                                    Environment={"Variables": {"AWS_REGION": "eu-west-1"}})
    status, code, message = client_error(exc)
    assert (status, code) == (400, "InvalidParameterValueException") and "AWS_REGION" in message, message


def test_error_responses_carry_request_id(lambda_client):
    with pytest.raises(ClientError) as exc:
        lambda_client.get_function(FunctionName=unique_name("missing"))
    headers = exc.value.response["ResponseMetadata"]["HTTPHeaders"]
    assert headers.get("x-amzn-requestid"), headers
    assert headers["x-amzn-errortype"].startswith("ResourceNotFoundException"), headers
