"""HTTP-app functions: configuration from the Web Adapter's variables, response parsing, and the
Invoke API's event <-> HTTP conversion (dispatch/http_app/, httpevent/adapter.py; no server)."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest

from lamina.dispatch.http_app.client import AppError, AppResponse
from lamina.dispatch.http_app.config import HttpAppConfig, is_http_app, parse_statuses
from lamina.dispatch.spec import FunctionSpec
from lamina.httpevent.adapter import event_request, response_payload


def _spec(env: dict[str, str] | None = None, runtime: str = "provided.al2023", handler: str = "bootstrap"):
    return FunctionSpec(name="f", arn="arn:aws:lambda:us-east-1:000000000000:function:f", version="$LATEST",
                        runtime=runtime, handler=handler, memory_mb=128, timeout_s=3, code_dir=Path("/nonexistent"),
                        code_sha="x", environment=tuple(sorted((env or {}).items())))


# ------------------------------------------------------------------ detection and configuration


def test_detection():
    assert not is_http_app(_spec({}))
    assert not is_http_app(_spec({"PORT": "8000", "AWS_LAMBDA_EXEC_WRAPPER": "/opt/other"}))
    assert is_http_app(_spec({"AWS_LAMBDA_EXEC_WRAPPER": "/opt/bootstrap"}))
    assert is_http_app(_spec({"AWS_LWA_INVOKE_MODE": "buffered"}))


def test_defaults():
    cfg = HttpAppConfig.from_spec(_spec({"AWS_LAMBDA_EXEC_WRAPPER": "/opt/bootstrap"}, "python3.11", "run.sh"))
    assert cfg.error is None and cfg.command == "run.sh"
    assert (cfg.port, cfg.readiness_port, cfg.readiness_path, cfg.readiness_protocol) == (8080, None, "/", "http")
    assert cfg.healthy == ((100, 499),) and cfg.max_concurrency == 10 and cfg.invoke_mode == "buffered"
    assert cfg.pass_through_path == "/events" and not cfg.async_init and cfg.base_path == ""
    assert HttpAppConfig.from_spec(_spec({"AWS_LWA_PORT": "1"})).command == "bootstrap"


def test_variables():
    cfg = HttpAppConfig.from_spec(_spec({
        "PORT": "9000", "AWS_LWA_READINESS_CHECK_PORT": "9001", "AWS_LWA_READINESS_CHECK_PATH": "/healthz",
        "AWS_LWA_READINESS_CHECK_PROTOCOL": "TCP", "AWS_LWA_READINESS_CHECK_HEALTHY_STATUS": "200-399, 404",
        "AWS_LWA_ASYNC_INIT": "true", "AWS_LWA_REMOVE_BASE_PATH": "/api/", "AWS_LWA_INVOKE_MODE": "RESPONSE_STREAM",
        "AWS_LWA_ERROR_STATUS_CODES": "500,502-504", "AWS_LAMBDA_MAX_CONCURRENCY": "3",
        "AWS_LWA_AUTHORIZATION_SOURCE": "X-Auth"}))
    assert cfg.error is None
    assert (cfg.port, cfg.readiness_port, cfg.readiness_path, cfg.readiness_protocol) == (9000, 9001, "/healthz", "tcp")
    assert cfg.healthy == ((200, 399), (404, 404)) and cfg.is_healthy(404) and not cfg.is_healthy(403)
    assert cfg.async_init and cfg.base_path == "/api" and cfg.invoke_mode == "response_stream"
    assert cfg.is_error(503) and not cfg.is_error(501) and cfg.max_concurrency == 3
    assert cfg.authorization_source == "x-auth"
    # AWS_LWA_PORT wins over PORT; the adapter's old unprefixed names still work
    cfg = HttpAppConfig.from_spec(_spec({"AWS_LWA_PORT": "7000", "PORT": "9000", "READINESS_CHECK_PATH": "/up"}))
    assert cfg.port == 7000 and cfg.readiness_path == "/up"


@pytest.mark.parametrize("env, mentions", [
    ({"AWS_LWA_PORT": "http"}, "AWS_LWA_PORT"),
    ({"AWS_LWA_PORT": "70000"}, "AWS_LWA_PORT"),
    ({"AWS_LWA_READINESS_CHECK_PATH": "health"}, "AWS_LWA_READINESS_CHECK_PATH"),
    ({"AWS_LWA_READINESS_CHECK_PROTOCOL": "udp"}, "AWS_LWA_READINESS_CHECK_PROTOCOL"),
    ({"AWS_LWA_READINESS_CHECK_HEALTHY_STATUS": "ok"}, "AWS_LWA_READINESS_CHECK_HEALTHY_STATUS"),
    ({"AWS_LWA_INVOKE_MODE": "stream"}, "AWS_LWA_INVOKE_MODE"),
    ({"AWS_LWA_PORT": "1", "AWS_LAMBDA_MAX_CONCURRENCY": "0"}, "AWS_LAMBDA_MAX_CONCURRENCY"),
])
def test_bad_values_are_reported(env, mentions):
    cfg = HttpAppConfig.from_spec(_spec(env))
    assert cfg.error is not None and mentions in cfg.error


def test_parse_statuses():
    assert parse_statuses("200") == ((200, 200),)
    assert parse_statuses("100-499") == ((100, 499),)
    for bad in ("", "abc", "500-400", "99", "200-700"):
        with pytest.raises(ValueError):
            parse_statuses(bad)


# ------------------------------------------------------------------ reading responses


class _Conn:
    transport = None


def _parse(data: bytes, head_only: bool = False, lose: bool = False):
    async def run():
        resp = AppResponse(_Conn(), head_only)  # type: ignore[arg-type]
        resp.feed(data)
        if lose:
            resp.lost(None)
        await resp.head()
        return resp, await resp.read_all(1 << 20)
    return asyncio.run(run())


def test_response_with_length_chunked_and_informational():
    resp, body = _parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\nhi")
    assert (resp.status, body, resp.keep_alive) == (200, b"hi", True)
    assert resp.headers == [(b"content-length", b"2"), (b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")]
    resp, body = _parse(b"HTTP/1.1 519 \r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
    assert (resp.status, body) == (519, b"abcde")
    resp, body = _parse(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nx")
    assert (resp.status, body, resp.headers) == (201, b"x", [(b"content-length", b"1")])


def test_response_to_head_and_until_close():
    resp, body = _parse(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", head_only=True)
    assert (resp.status, body) == (200, b"")
    resp, body = _parse(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close", lose=True)
    assert (body, resp.keep_alive) == (b"until close", False)


def test_truncated_and_invalid_responses():
    with pytest.raises(AppError, match="in the middle"):
        _parse(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", lose=True)
    with pytest.raises(AppError, match="before it answered"):
        _parse(b"HTTP/1.1 200 OK\r\nContent-Le", lose=True)
    with pytest.raises(AppError, match="invalid HTTP response"):
        _parse(b"NOT HTTP AT ALL\r\n\r\n")


# ------------------------------------------------------------------ the Invoke API's conversion


APP = HttpAppConfig(command="bootstrap", base_path="/api", authorization_source="x-token")


def test_v2_event_to_request():
    event = {"version": "2.0", "rawPath": "/api/items", "rawQueryString": "a=1&a=2",
             "headers": {"X-Token": "t", "Authorization": "old", "Content-Length": "99", "Connection": "close"},
             "cookies": ["c=1", "d=2"], "requestContext": {"http": {"method": "PUT"}, "requestId": "r"},
             "body": base64.b64encode(b"\x00\x01").decode(), "isBase64Encoded": True}
    req = event_request(json.dumps(event).encode(), APP)
    assert (req.method, req.target, req.body, req.shape) == ("PUT", "/items?a=1&a=2", b"\x00\x01", "v2")
    assert (b"authorization", b"t") in req.headers and (b"authorization", b"old") not in req.headers
    assert (b"cookie", b"c=1; d=2") in req.headers
    assert not any(k in (b"content-length", b"connection") for k, _ in req.headers)
    assert req.context == {"http": {"method": "PUT"}, "requestId": "r"}


def test_v1_and_pass_through_events():
    event = {"httpMethod": "GET", "path": "/x y", "multiValueQueryStringParameters": {"q": ["1", "2"]},
             "multiValueHeaders": {"X-A": ["1", "2"]}, "requestContext": {"stage": "prod"}, "body": None}
    req = event_request(json.dumps(event).encode(), HttpAppConfig(command="bootstrap"))
    assert (req.method, req.target, req.shape) == ("GET", "/x%20y?q=1&q=2", "v1")
    assert [v for k, v in req.headers if k == b"x-a"] == [b"1", b"2"]
    req = event_request(b'{"Records": []}', HttpAppConfig(command="bootstrap", pass_through_path="/in"))
    assert (req.method, req.target, req.body, req.shape) == ("POST", "/in", b'{"Records": []}', "raw")


def test_responses_in_the_event_shape():
    headers = [(b"content-type", b"text/plain"), (b"set-cookie", b"a=1"), (b"set-cookie", b"b=2"),
               (b"x-m", b"1"), (b"x-m", b"2"), (b"transfer-encoding", b"chunked")]
    out = json.loads(response_payload("v2", 201, headers, b"hi", "buffered"))
    assert out == {"statusCode": 201, "headers": {"content-type": "text/plain", "x-m": "1,2"},
                   "cookies": ["a=1", "b=2"], "body": "hi", "isBase64Encoded": False}
    out = json.loads(response_payload("alb", 200, [(b"content-type", b"image/png"), (b"x-m", b"1"), (b"x-m", b"2")],
                                      b"\x89PNG", "buffered"))
    assert out["isBase64Encoded"] and base64.b64decode(out["body"]) == b"\x89PNG"
    assert out["multiValueHeaders"]["x-m"] == ["1", "2"] and out["statusDescription"] == "200 OK"
    raw = response_payload("v2", 200, headers, b"stream", "response_stream")
    prelude, _, body = raw.partition(b"\x00" * 8)
    assert json.loads(prelude)["cookies"] == ["a=1", "b=2"] and body == b"stream"
    assert response_payload("raw", 200, headers, b"as is", "buffered") == b"as is"
