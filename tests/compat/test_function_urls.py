"""Function URLs: boto3's *FunctionUrlConfig* calls, AddPermission/GetPolicy, and plain HTTP requests
(curl-style, via http.client) through both the `<url-id>.lambda-url.` Host form and the
`/lamina/v1/url/<url-id>/` path form, with API Gateway payload 2.0 events and response mapping."""

from __future__ import annotations

import base64
import json
import re
import time

import pytest
from botocore.exceptions import ClientError

from helpers import WAIT, FunctionUrl, client_error, create_function, fn_arn, unique_name, url_id_of

pytestmark = pytest.mark.timeout(90)

TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
CLF_RE = re.compile(r"^\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} \+0000$")

# One handler, many behaviours, picked by the request path.
URL_HANDLER = '''
import base64, json

def handler(event, context):
    path = event.get("rawPath", "")
    if path == "/string":
        return "Hello, world!"
    if path == "/list":
        return [1, "two", {"three": 3}]
    if path == "/number":
        return 42
    if path == "/none":
        return None
    if path == "/custom":
        return {"statusCode": 201, "headers": {"Content-Type": "text/plain", "X-Custom": "yes", "X-Num": 7},
                "cookies": ["a=1; Path=/", "b=2; Max-Age=60"], "body": "created"}
    if path == "/binary":
        return {"statusCode": 200, "headers": {"content-type": "application/octet-stream"},
                "body": base64.b64encode(bytes(range(256))).decode(), "isBase64Encoded": True}
    if path == "/no-content-type":
        return {"statusCode": 404, "body": "missing"}
    if path == "/object-body":
        return {"statusCode": 200, "body": {"k": [1, 2]}}
    if path == "/cors-headers":
        return {"statusCode": 200, "headers": {"Access-Control-Allow-Origin": "https://evil.example"}, "body": "x"}
    if path == "/bad-status":
        return {"statusCode": "teapot"}
    if path == "/bad-header":
        return {"statusCode": 200, "headers": {"X-Split": "a\\r\\nInjected: yes"}, "body": "x"}
    if path == "/boom":
        raise ValueError("boom from the handler")
    return event
'''


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    return next((v for k, v in headers if k == name), None)


@pytest.fixture(scope="module")
def url_function(lambda_client):
    """A function with a NONE-auth BUFFERED URL: (name, url id)."""
    name = unique_name("furl")
    create_function(lambda_client, name, {"app.py": URL_HANDLER})
    resp = lambda_client.create_function_url_config(FunctionName=name, AuthType="NONE")
    yield name, url_id_of(resp["FunctionUrl"])
    lambda_client.delete_function(FunctionName=name)


@pytest.fixture(scope="module")
def web(url_function, endpoint) -> FunctionUrl:
    return FunctionUrl(endpoint, url_function[1])


# ---------------------------------------------------------------------------------------------- API


def test_url_config_crud(lambda_client, functions, endpoint):
    name = functions({"app.py": URL_HANDLER})
    port = endpoint.rsplit(":", 1)[1]

    created = lambda_client.create_function_url_config(FunctionName=name, AuthType="NONE")
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    url_id = url_id_of(created["FunctionUrl"])
    assert created["FunctionUrl"].endswith(f":{port}/")
    assert created["FunctionArn"] == fn_arn(name)
    # As AWS records it: InvokeMode is in the answer only when the request named it (GetFunctionUrlConfig has it).
    assert created["AuthType"] == "NONE" and "InvokeMode" not in created
    assert lambda_client.get_function_url_config(FunctionName=name)["InvokeMode"] == "BUFFERED"
    assert TIME_RE.match(created["CreationTime"]), created["CreationTime"]
    assert "Cors" not in created

    got = lambda_client.get_function_url_config(FunctionName=name)
    assert got["FunctionUrl"] == created["FunctionUrl"]
    assert got["CreationTime"] == created["CreationTime"]
    assert TIME_RE.match(got["LastModifiedTime"])
    # Addressable by ARN too
    assert lambda_client.get_function_url_config(FunctionName=fn_arn(name))["FunctionUrl"] == created["FunctionUrl"]

    with pytest.raises(ClientError) as exc:
        lambda_client.create_function_url_config(FunctionName=name, AuthType="NONE")
    status, code, message = client_error(exc)
    assert (status, code) == (409, "ResourceConflictException") and "exists" in message

    cors = {"AllowOrigins": ["https://example.com"], "AllowMethods": ["GET", "POST"], "MaxAge": 300,
            "AllowCredentials": True, "AllowHeaders": ["x-custom"], "ExposeHeaders": ["x-out"]}
    time.sleep(0.01)
    updated = lambda_client.update_function_url_config(FunctionName=name, AuthType="AWS_IAM", Cors=cors,
                                                       InvokeMode="RESPONSE_STREAM")
    assert updated["AuthType"] == "AWS_IAM" and updated["InvokeMode"] == "RESPONSE_STREAM"
    assert updated["Cors"] == cors
    assert updated["FunctionUrl"] == created["FunctionUrl"], "the URL never changes"
    assert updated["CreationTime"] == created["CreationTime"]
    assert updated["LastModifiedTime"] > got["LastModifiedTime"]

    listed = lambda_client.list_function_url_configs(FunctionName=name)["FunctionUrlConfigs"]
    assert [u["FunctionUrl"] for u in listed] == [created["FunctionUrl"]]
    assert listed[0]["AuthType"] == "AWS_IAM" and listed[0]["Cors"] == cors

    resp = lambda_client.delete_function_url_config(FunctionName=name)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as exc:
        lambda_client.get_function_url_config(FunctionName=name)
    assert client_error(exc)[:2] == (404, "ResourceNotFoundException")
    with pytest.raises(ClientError) as exc:
        lambda_client.delete_function_url_config(FunctionName=name)
    assert client_error(exc)[:2] == (404, "ResourceNotFoundException")
    with pytest.raises(ClientError) as exc:
        lambda_client.update_function_url_config(FunctionName=name, AuthType="NONE")
    assert client_error(exc)[:2] == (404, "ResourceNotFoundException")
    assert lambda_client.list_function_url_configs(FunctionName=name)["FunctionUrlConfigs"] == []

    # a deleted URL no longer answers; a new one gets a new id
    status, _, body = FunctionUrl(endpoint, url_id).request("GET", "/")
    assert status == 404, body
    again = lambda_client.create_function_url_config(FunctionName=name, AuthType="NONE")
    assert url_id_of(again["FunctionUrl"]) != url_id


def test_url_config_errors(lambda_client, functions):
    name = functions({"app.py": URL_HANDLER})
    missing = unique_name("nofn")
    for call in (lambda: lambda_client.create_function_url_config(FunctionName=missing, AuthType="NONE"),
                 lambda: lambda_client.get_function_url_config(FunctionName=missing),
                 lambda: lambda_client.list_function_url_configs(FunctionName=missing)):
        with pytest.raises(ClientError) as exc:
            call()
        assert client_error(exc)[:2] == (404, "ResourceNotFoundException")

    with pytest.raises(ClientError) as exc:
        lambda_client.create_function_url_config(FunctionName=name, AuthType="OPEN")
    status, code, message = client_error(exc)
    assert (status, code) == (400, "ValidationException") and "authType" in message and "AWS_IAM" in message

    with pytest.raises(ClientError) as exc:
        lambda_client.create_function_url_config(FunctionName=name, AuthType="NONE", InvokeMode="STREAMING")
    status, code, message = client_error(exc)
    assert (status, code) == (400, "ValidationException") and "invokeMode" in message

    with pytest.raises(ClientError) as exc:
        lambda_client.create_function_url_config(FunctionName=name, AuthType="NONE", Cors={"MaxAge": 90000})
    assert client_error(exc)[:2] == (400, "ValidationException")

    # no aliases exist: a qualifier names nothing
    with pytest.raises(ClientError) as exc:
        lambda_client.create_function_url_config(FunctionName=name, Qualifier="live", AuthType="NONE")
    assert client_error(exc)[:2] == (404, "ResourceNotFoundException")
    with pytest.raises(ClientError) as exc:
        lambda_client.create_function_url_config(FunctionName=name, Qualifier="$LATEST", AuthType="NONE")
    assert client_error(exc)[:2] == (400, "ValidationException")

    # nothing was created by the failed calls
    assert lambda_client.list_function_url_configs(FunctionName=name)["FunctionUrlConfigs"] == []


def test_url_deleted_with_function(lambda_client, endpoint):
    name = unique_name("furl-del")
    create_function(lambda_client, name, {"app.py": URL_HANDLER})
    url_id = url_id_of(lambda_client.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"])
    lambda_client.add_permission(FunctionName=name, StatementId="public", Action="lambda:InvokeFunctionUrl",
                                 Principal="*", FunctionUrlAuthType="NONE")
    assert FunctionUrl(endpoint, url_id).request("GET", "/string")[0] == 200
    lambda_client.delete_function(FunctionName=name)
    assert FunctionUrl(endpoint, url_id).request("GET", "/string")[0] == 404

    create_function(lambda_client, name, {"app.py": URL_HANDLER})
    try:
        with pytest.raises(ClientError) as exc:
            lambda_client.get_function_url_config(FunctionName=name)
        assert client_error(exc)[:2] == (404, "ResourceNotFoundException")
        with pytest.raises(ClientError) as exc:
            lambda_client.get_policy(FunctionName=name)
        assert client_error(exc)[:2] == (404, "ResourceNotFoundException")
    finally:
        lambda_client.delete_function(FunctionName=name)


def test_permissions_for_function_urls(lambda_client, functions):
    name = functions({"app.py": URL_HANDLER})
    with pytest.raises(ClientError) as exc:
        lambda_client.get_policy(FunctionName=name)
    assert client_error(exc)[:2] == (404, "ResourceNotFoundException")

    resp = lambda_client.add_permission(FunctionName=name, StatementId="FunctionURLAllowPublicAccess",
                                        Action="lambda:InvokeFunctionUrl", Principal="*", FunctionUrlAuthType="NONE")
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 201
    statement = json.loads(resp["Statement"])
    assert statement == {
        "Sid": "FunctionURLAllowPublicAccess", "Effect": "Allow", "Principal": "*",
        "Action": "lambda:InvokeFunctionUrl", "Resource": fn_arn(name),
        "Condition": {"StringEquals": {"lambda:FunctionUrlAuthType": "NONE"}},
    }
    sns = lambda_client.add_permission(FunctionName=name, StatementId="sns", Action="lambda:InvokeFunction",
                                       Principal="sns.amazonaws.com",
                                       SourceArn="arn:aws:sns:us-east-1:000000000000:topic")
    assert json.loads(sns["Statement"])["Principal"] == {"Service": "sns.amazonaws.com"}
    assert json.loads(sns["Statement"])["Condition"] == {
        "ArnLike": {"AWS:SourceArn": "arn:aws:sns:us-east-1:000000000000:topic"}}

    policy = lambda_client.get_policy(FunctionName=name)
    doc = json.loads(policy["Policy"])
    assert doc["Version"] == "2012-10-17"
    assert [s["Sid"] for s in doc["Statement"]] == ["FunctionURLAllowPublicAccess", "sns"]
    assert policy["RevisionId"]

    with pytest.raises(ClientError) as exc:
        lambda_client.add_permission(FunctionName=name, StatementId="sns", Action="lambda:InvokeFunction",
                                     Principal="*")
    assert client_error(exc)[:2] == (409, "ResourceConflictException")
    with pytest.raises(ClientError) as exc:
        lambda_client.add_permission(FunctionName=name, StatementId="bad", Action="s3:GetObject", Principal="*")
    assert client_error(exc)[:2] == (400, "ValidationException")
    with pytest.raises(ClientError) as exc:
        lambda_client.add_permission(FunctionName=name, StatementId="rev", Action="lambda:InvokeFunction",
                                     Principal="*", RevisionId="not-the-revision")
    assert client_error(exc)[:2] == (412, "PreconditionFailedException")

    assert lambda_client.remove_permission(FunctionName=name, StatementId="sns")[
        "ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as exc:
        lambda_client.remove_permission(FunctionName=name, StatementId="sns")
    assert client_error(exc)[:2] == (404, "ResourceNotFoundException")
    doc = json.loads(lambda_client.get_policy(FunctionName=name)["Policy"])
    assert [s["Sid"] for s in doc["Statement"]] == ["FunctionURLAllowPublicAccess"]


def test_url_and_policy_survive_restart(lamina_factory):
    first = lamina_factory()
    client = first.client()
    name = unique_name("furl-persist")
    create_function(client, name, {"app.py": URL_HANDLER})
    created = client.create_function_url_config(FunctionName=name, AuthType="NONE", InvokeMode="RESPONSE_STREAM",
                                                Cors={"AllowOrigins": ["*"]})
    url_id = url_id_of(created["FunctionUrl"])
    client.add_permission(FunctionName=name, StatementId="public", Action="lambda:InvokeFunctionUrl",
                          Principal="*", FunctionUrlAuthType="NONE")
    assert first.stop() == 0

    second = lamina_factory(first.data_dir)
    client = second.client()
    client.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    got = client.get_function_url_config(FunctionName=name)
    assert url_id_of(got["FunctionUrl"]) == url_id
    assert got["FunctionUrl"].endswith(f":{second.port}/"), "the address follows the server's port"
    assert (got["CreationTime"], got["InvokeMode"], got["Cors"]) == (
        created["CreationTime"], "RESPONSE_STREAM", {"AllowOrigins": ["*"]})
    assert [s["Sid"] for s in json.loads(client.get_policy(FunctionName=name)["Policy"])["Statement"]] == ["public"]
    status, _, body = FunctionUrl(second.endpoint, url_id).request("GET", "/string")
    assert (status, body) == (200, b'"Hello, world!"')


# ---------------------------------------------------------------------------------------------- HTTP


@pytest.mark.parametrize("form", ["host", "path"])
def test_payload_v2_event(web, url_function, form):
    name, url_id = url_function
    raw_query = "a=1&a=2&b=x%20y&c&d[]=%2F&e=caf%C3%A9"
    before = time.time()
    event = web.json("POST", f"/some/path%20x/?{raw_query}", body=b'{"hello": "world"}', form=form, headers=[
        ("Content-Type", "application/json"), ("User-Agent", "curl/8.0"), ("X-Multi", "one"), ("X-Multi", "two"),
        ("Cookie", "c1=v1; c2=v2"), ("Cookie", "c3=v3"), ("X-Amzn-Trace-Id", "Root=1-abc-def")])
    assert event["version"] == "2.0" and event["routeKey"] == "$default"
    assert event["rawPath"] == "/some/path%20x/"
    assert event["rawQueryString"] == raw_query, "the query string reaches the function exactly as sent"
    assert event["queryStringParameters"] == {"a": "1,2", "b": "x y", "c": "", "d[]": "/", "e": "café"}
    assert event["cookies"] == ["c1=v1", "c2=v2", "c3=v3"]
    headers = event["headers"]
    assert all(k == k.lower() for k in headers), headers
    assert "cookie" not in headers
    assert headers["x-multi"] == "one,two"
    assert headers["content-type"] == "application/json" and headers["user-agent"] == "curl/8.0"
    assert headers["x-forwarded-proto"] == "http" and headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-amzn-trace-id"] == "Root=1-abc-def"
    assert event["body"] == '{"hello": "world"}' and event["isBase64Encoded"] is False
    ctx = event["requestContext"]
    assert ctx["apiId"] == url_id and ctx["domainPrefix"] == url_id
    assert ctx["domainName"] == f"{url_id}.lambda-url.us-east-1.localhost"
    assert ctx["http"] == {"method": "POST", "path": "/some/path%20x/", "protocol": "HTTP/1.1",
                           "sourceIp": "127.0.0.1", "userAgent": "curl/8.0"}
    assert ctx["routeKey"] == "$default" and ctx["stage"] == "$default"
    assert ctx["accountId"] == "anonymous"
    assert re.fullmatch(r"[0-9a-f-]{36}", ctx["requestId"])
    assert CLF_RE.match(ctx["time"]), ctx["time"]
    assert before * 1000 - 1000 <= ctx["timeEpoch"] <= time.time() * 1000 + 1000


def test_path_form_strips_prefix(web):
    assert web.json("GET", "", form="path")["rawPath"] == "/"
    event = web.json("GET", "/", form="path")
    assert event["rawPath"] == "/" and event["rawQueryString"] == ""
    assert "queryStringParameters" not in event and "cookies" not in event and "body" not in event
    assert event["requestContext"]["http"]["method"] == "GET"
    assert web.json("DELETE", "/a/b/c", form="path")["rawPath"] == "/a/b/c"


def test_binary_request_body_is_base64(web):
    data = bytes(range(256)) * 4
    for headers in ([("Content-Type", "application/octet-stream")], [("Content-Type", "image/png")], []):
        event = web.json("PUT", "/upload", body=data, headers=headers)
        assert event["isBase64Encoded"] is True, headers
        assert base64.b64decode(event["body"]) == data
    event = web.json("POST", "/form", body="naïve text".encode(),
                     headers=[("Content-Type", "text/plain; charset=utf-8")])
    assert (event["isBase64Encoded"], event["body"]) == (False, "naïve text")


@pytest.mark.parametrize("path,body", [
    ("/string", b'"Hello, world!"'),
    ("/list", b'[1, "two", {"three": 3}]'),
    ("/number", b"42"),
    ("/none", b"null"),
])
def test_inferred_responses(web, path, body):
    status, headers, got = web.request("GET", path)
    assert status == 200
    assert _header(headers, "content-type") == "application/json"
    assert got == body
    assert _header(headers, "x-amzn-requestid")


def test_inferred_response_for_object_without_status_code(web):
    status, headers, body = web.request("GET", "/echo-me")
    assert status == 200 and _header(headers, "content-type") == "application/json"
    assert json.loads(body)["rawPath"] == "/echo-me"


def test_structured_response_headers_and_cookies(web):
    status, headers, body = web.request("GET", "/custom")
    assert (status, body) == (201, b"created")
    assert _header(headers, "content-type") == "text/plain"
    assert _header(headers, "x-custom") == "yes" and _header(headers, "x-num") == "7"
    assert [v for k, v in headers if k == "set-cookie"] == ["a=1; Path=/", "b=2; Max-Age=60"]
    assert _header(headers, "content-length") == "7"


def test_structured_response_bodies(web):
    status, headers, body = web.request("GET", "/binary")
    assert (status, body) == (200, bytes(range(256)))
    assert _header(headers, "content-type") == "application/octet-stream"
    status, headers, body = web.request("GET", "/no-content-type")
    assert (status, body) == (404, b"missing")
    assert _header(headers, "content-type") == "application/json"
    status, _, body = web.request("GET", "/object-body")
    assert status == 200 and json.loads(body) == {"k": [1, 2]}


@pytest.mark.parametrize("path", ["/boom", "/bad-status", "/bad-header"])
def test_function_error_is_502(web, path):
    status, headers, body = web.request("GET", path)
    assert status == 502
    assert json.loads(body) == {"Message": "Internal Server Error"}
    assert not any(k == "injected" for k, _ in headers)


def test_unknown_url_is_404(endpoint):
    for form in ("host", "path"):
        status, _, body = FunctionUrl(endpoint, "0" * 32).request("GET", "/", form=form)
        assert status == 404 and json.loads(body) == {"Message": "Not Found"}


def test_request_over_6mb_is_413(web):
    status, _, body = web.request("POST", "/big", body=b"x" * (6 * 1024 * 1024 + 1),
                                  headers=[("Content-Type", "text/plain")])
    assert status == 413, body
    # binary bodies grow by a third in base64: the event is what must fit
    status, _, body = web.request("POST", "/big", body=b"\x00" * (5 * 1024 * 1024),
                                  headers=[("Content-Type", "application/octet-stream")])
    assert status == 413, body


def test_aws_iam_url_is_forbidden(lambda_client, functions, endpoint):
    name = functions({"app.py": URL_HANDLER})
    url = lambda_client.create_function_url_config(FunctionName=name, AuthType="AWS_IAM")["FunctionUrl"]
    client = FunctionUrl(endpoint, url)
    for form in ("host", "path"):
        status, headers, body = client.request("GET", "/string", form=form)
        assert status == 403 and json.loads(body) == {"Message": "Forbidden"}
    lambda_client.update_function_url_config(FunctionName=name, AuthType="NONE")
    assert client.request("GET", "/string")[0] == 200


def test_response_stream_mode(lambda_client, functions, endpoint):
    name = functions({"app.py": URL_HANDLER})
    url = lambda_client.create_function_url_config(FunctionName=name, AuthType="NONE",
                                                   InvokeMode="RESPONSE_STREAM")["FunctionUrl"]
    client = FunctionUrl(endpoint, url)
    status, headers, body = client.request("GET", "/custom")
    assert (status, body) == (201, b"created")
    assert _header(headers, "transfer-encoding") == "chunked" and _header(headers, "content-length") is None
    assert [v for k, v in headers if k == "set-cookie"] == ["a=1; Path=/", "b=2; Max-Age=60"]
    status, headers, body = client.request("GET", "/string")
    assert (status, body) == (200, b'"Hello, world!"')
    status, _, body = client.request("GET", "/boom")
    assert status == 502 and json.loads(body) == {"Message": "Internal Server Error"}


def test_cors(lambda_client, functions, endpoint):
    name = functions({"app.py": URL_HANDLER})
    url = lambda_client.create_function_url_config(
        FunctionName=name, AuthType="NONE",
        Cors={"AllowOrigins": ["https://app.example"], "AllowMethods": ["GET", "POST"], "AllowHeaders": ["x-token"],
              "ExposeHeaders": ["x-custom"], "MaxAge": 600, "AllowCredentials": True})["FunctionUrl"]
    client = FunctionUrl(endpoint, url)
    status, headers, body = client.request("OPTIONS", "/anything", headers=[
        ("Origin", "https://app.example"), ("Access-Control-Request-Method", "POST")])
    assert (status, body) == (200, b""), "the preflight is answered without invoking the function"
    assert _header(headers, "access-control-allow-origin") == "https://app.example"
    assert _header(headers, "access-control-allow-methods") == "GET,POST"
    assert _header(headers, "access-control-allow-headers") == "x-token"
    assert _header(headers, "access-control-max-age") == "600"
    assert _header(headers, "access-control-allow-credentials") == "true"

    status, headers, body = client.request("GET", "/cors-headers", headers=[("Origin", "https://app.example")])
    assert status == 200
    assert [v for k, v in headers if k == "access-control-allow-origin"] == ["https://app.example"]
    assert _header(headers, "access-control-expose-headers") == "x-custom"

    status, headers, _ = client.request("GET", "/string", headers=[("Origin", "https://other.example")])
    assert status == 200 and _header(headers, "access-control-allow-origin") is None
