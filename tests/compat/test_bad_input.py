"""Bad input gets an AWS-shaped 4xx (status, x-amzn-ErrorType, JSON message) and the server keeps serving.

Requests are sent raw (SigV4-signed like boto3) because boto3 validates most of these client-side.
"""

from __future__ import annotations

import base64
import json
import os
import uuid

import pytest

from helpers import (
    ROLE,
    RUNTIME,
    assert_aws_error,
    create_function,
    make_zip,
    probe_code,
    raw_request,
    unique_name,
)

pytestmark = pytest.mark.timeout(90)

FUNCTIONS = "/2015-03-31/functions"
# AWS answers constraint violations on members with ValidationException and semantic problems with
# InvalidParameterValueException; either is an acceptable AWS shape here.
VALIDATION = ("InvalidParameterValueException", "ValidationException")
BAD_BODY = ("InvalidRequestContentException", "SerializationException", "InvalidParameterValueException",
            "ValidationException")


def _create_body(name: str, **overrides) -> dict:
    body = {
        "FunctionName": name,
        "Runtime": RUNTIME,
        "Role": ROLE,
        "Handler": "app.handler",
        "Code": {"ZipFile": base64.b64encode(make_zip(probe_code())).decode()},
    }
    body.update(overrides)
    return body


def _post_create(endpoint: str, body: bytes | dict):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return raw_request(endpoint, "POST", FUNCTIONS, data, {"Content-Type": "application/json"})


def _assert_not_created(lambda_client, name: str) -> None:
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.get_function(FunctionName=name)


def test_valid_raw_create_is_accepted(endpoint, lambda_client):
    """Control: the raw request helper produces a CreateFunction the server accepts."""
    name = unique_name("raw")
    resp = _post_create(endpoint, _create_body(name))
    try:
        assert resp.status == 201, resp.describe()
        assert resp.json()["FunctionName"] == name
    finally:
        lambda_client.delete_function(FunctionName=name)


@pytest.mark.parametrize("body", [b"{not json", b"", b"[1, 2, 3]", b'"a string"', b"\xff\xfe\x00garbage"],
                         ids=["broken", "empty", "array", "string", "binary"])
def test_create_invalid_json_body(endpoint, assert_serving, body):
    resp = _post_create(endpoint, body)
    assert_aws_error(resp, 400, BAD_BODY)
    assert_serving()


@pytest.mark.parametrize(
    "overrides",
    [
        {"MemorySize": "256"},
        {"Timeout": "3"},
        {"FunctionName": 12345},
        {"Environment": {"Variables": {"A": 1}}},
        {"Environment": {"Variables": ["A=1"]}},
        {"Code": "not-an-object"},
        {"Publish": "yes"},
    ],
    ids=["memory-string", "timeout-string", "name-number", "env-value-number", "env-list",
         "code-string", "publish-string"],
)
def test_create_wrong_types(endpoint, lambda_client, assert_serving, overrides):
    name = unique_name("types")
    body = _create_body(name, **overrides)
    resp = _post_create(endpoint, body)
    assert_aws_error(resp, 400, BAD_BODY)
    _assert_not_created(lambda_client, name)
    assert_serving()


@pytest.mark.parametrize(
    ("overrides", "mentions"),
    [
        ({"Timeout": 0}, "timeout"),
        ({"Timeout": 901}, "timeout"),
        ({"Timeout": -5}, "timeout"),
        ({"MemorySize": 64}, "memorysize"),
        ({"MemorySize": 127}, "memorysize"),
        ({"MemorySize": 32769}, "memorysize"),
        ({"FunctionName": "bad name!"}, "functionname"),
        ({"FunctionName": "x" * 65}, "functionname"),
        ({"Handler": "x" * 129}, "handler"),
    ],
    ids=["timeout-0", "timeout-901", "timeout-negative", "memory-64", "memory-127", "memory-32769",
         "name-chars", "name-too-long", "handler-too-long"],
)
def test_create_out_of_range(endpoint, lambda_client, assert_serving, overrides, mentions):
    name = unique_name("range")
    resp = _post_create(endpoint, _create_body(name, **overrides))
    message = assert_aws_error(resp, 400, VALIDATION)
    assert mentions in message.lower().replace(" ", ""), message
    if "FunctionName" not in overrides:
        _assert_not_created(lambda_client, name)
    assert_serving()


@pytest.mark.parametrize("missing", ["FunctionName", "Role", "Code"])
def test_create_missing_required(endpoint, assert_serving, missing):
    body = _create_body(unique_name("req"))
    del body[missing]
    resp = _post_create(endpoint, body)
    assert_aws_error(resp, 400, VALIDATION + ("InvalidRequestContentException",))
    assert_serving()


@pytest.mark.parametrize("runtime", ["python9.9", "cobol1", ""])
def test_create_unknown_runtime(endpoint, lambda_client, assert_serving, runtime):
    name = unique_name("rt")
    resp = _post_create(endpoint, _create_body(name, Runtime=runtime))
    message = assert_aws_error(resp, 400, VALIDATION)
    if runtime:
        assert runtime in message, message
    _assert_not_created(lambda_client, name)
    assert_serving()


@pytest.mark.parametrize("blob", [b"hello, not a zip", b"PK\x03\x04\x14\x00truncated", b""],
                         ids=["text", "truncated-zip", "empty"])
def test_create_not_a_zip(endpoint, lambda_client, assert_serving, blob):
    name = unique_name("zip")
    resp = _post_create(endpoint, _create_body(name, Code={"ZipFile": base64.b64encode(blob).decode()}))
    assert_aws_error(resp, 400, ("InvalidParameterValueException",) if blob else VALIDATION,
                     message_contains="Could not unzip uploaded file" if blob else None)
    _assert_not_created(lambda_client, name)
    assert_serving()


def test_create_zipfile_not_base64(endpoint, lambda_client, assert_serving):
    name = unique_name("b64")
    resp = _post_create(endpoint, _create_body(name, Code={"ZipFile": "%%% not base64 %%%"}))
    assert_aws_error(resp, 400, BAD_BODY)
    _assert_not_created(lambda_client, name)
    assert_serving()


def test_create_zip_path_traversal(endpoint, lambda_client, assert_serving):
    """A zip with ../ entries must not write outside the function's code directory."""
    name = unique_name("slip")
    target = f"/tmp/lamina-zip-slip-{uuid.uuid4().hex}.txt"
    evil = make_zip({"app.py": "def handler(e, c):\n    return 1\n", "../" * 30 + target.lstrip("/"): "x"})
    resp = _post_create(endpoint, _create_body(name, Code={"ZipFile": base64.b64encode(evil).decode()}))
    escaped = os.path.exists(target)
    if escaped:
        os.unlink(target)
    assert not escaped, "a zip entry was written outside the function's code directory"
    assert resp.status in (201, 400), resp.describe()
    if resp.status == 400:
        assert_aws_error(resp, 400, VALIDATION)
    else:
        lambda_client.delete_function(FunctionName=name)
    assert_serving()


# ---------------------------------------------------------------------------------------------------- invoke


@pytest.fixture(scope="module")
def echo_fn(lambda_client):
    name = unique_name("echo")
    code = "def handler(event, context):\n    return {'n': len(str(event))}\n"
    create_function(lambda_client, name, {"app.py": code})
    yield name
    lambda_client.delete_function(FunctionName=name)


def _invoke_raw(endpoint: str, name: str, body: bytes, invocation_type: str | None = None):
    headers = {}
    if invocation_type:
        headers["X-Amz-Invocation-Type"] = invocation_type
    return raw_request(endpoint, "POST", f"{FUNCTIONS}/{name}/invocations", body, headers)


def test_sync_payload_over_6mb_is_413(endpoint, echo_fn, assert_serving):
    payload = json.dumps({"data": "x" * (7 * 1024 * 1024)}).encode()
    resp = _invoke_raw(endpoint, echo_fn, payload)
    assert_aws_error(resp, 413, "RequestTooLargeException")
    assert_serving()


def test_sync_payload_under_6mb_is_accepted(endpoint, echo_fn):
    payload = json.dumps({"data": "x" * (5 * 1024 * 1024)}).encode()
    resp = _invoke_raw(endpoint, echo_fn, payload)
    assert resp.status == 200, resp.describe()
    assert "x-amz-function-error" not in resp.headers, resp.describe()
    assert resp.json()["n"] > 5 * 1024 * 1024


def test_sync_payload_over_6mb_with_boto3(lambda_client, echo_fn):
    with pytest.raises(lambda_client.exceptions.RequestTooLargeException) as exc:
        lambda_client.invoke(FunctionName=echo_fn, Payload=b'{"d": "' + b"y" * (7 * 1024 * 1024) + b'"}')
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413


def test_async_payload_over_1mb_is_413(endpoint, echo_fn, assert_serving):
    payload = json.dumps({"data": "x" * 1_100_000}).encode()
    resp = _invoke_raw(endpoint, echo_fn, payload, "Event")
    assert_aws_error(resp, 413, "RequestTooLargeException")
    assert_serving()


def test_async_payload_under_1mb_is_accepted(endpoint, echo_fn):
    payload = json.dumps({"data": "x" * 900_000}).encode()
    resp = _invoke_raw(endpoint, echo_fn, payload, "Event")
    assert resp.status == 202, resp.describe()
    assert resp.body == b""


@pytest.mark.parametrize("invocation_type", [None, "Event"])
@pytest.mark.parametrize("body", [b"{not json", b'{"a": 1', b"\xff\xfe", b"nul"],
                         ids=["broken", "unclosed", "binary", "bare-word"])
def test_invalid_json_payload_is_400(endpoint, echo_fn, assert_serving, body, invocation_type):
    resp = _invoke_raw(endpoint, echo_fn, body, invocation_type)
    assert_aws_error(resp, 400, "InvalidRequestContentException")
    assert_serving()


def test_empty_payload_is_allowed(endpoint, echo_fn):
    """AWS treats an empty body as {} (boto3 sends none when Payload is omitted)."""
    resp = _invoke_raw(endpoint, echo_fn, b"")
    assert resp.status == 200, resp.describe()
    assert "x-amz-function-error" not in resp.headers, resp.describe()
    assert resp.json() == {"n": len(str({}))}, resp.describe()  # the handler got {}


def test_unknown_invocation_type_is_400(endpoint, echo_fn, assert_serving):
    resp = _invoke_raw(endpoint, echo_fn, b"{}", "Sometimes")
    assert_aws_error(resp, 400, VALIDATION + ("InvalidRequestContentException",))
    assert_serving()


def test_unknown_path_is_aws_shaped(endpoint, assert_serving):
    resp = raw_request(endpoint, "GET", "/2015-03-31/no-such-thing")
    assert 400 <= resp.status < 500, resp.describe()
    assert resp.error_type, resp.describe()
    assert_aws_error(resp, resp.status, resp.error_type)  # and a JSON body with a message
    assert_serving()


def test_invoke_unknown_function_raw(endpoint, assert_serving):
    name = unique_name("missing")
    resp = _invoke_raw(endpoint, name, b"{}")
    assert_aws_error(resp, 404, "ResourceNotFoundException", message_contains=name)
    assert_serving()
