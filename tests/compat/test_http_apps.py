"""HTTP-app functions (the lambda-dispatch / Lambda Web Adapter model) through a real `lamina serve`.

The function's environment runs a web server, configured with the Web Adapter's variables
(AWS_LWA_PORT, AWS_LWA_READINESS_CHECK_PATH, AWS_LAMBDA_EXEC_WRAPPER=/opt/bootstrap with run.sh, ...);
function-URL requests are proxied to it as raw HTTP/1.1, many at a time per environment, streamed
both ways. The main app is lambda-dispatch's demo-app contract in stdlib Python (http_app_demo.py);
a Flask app under gunicorn and an ASGI app under uvicorn are shipped in their zips unchanged.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import gzip
import hashlib
import http.client
import json
import random
import socket
import threading
import time
import uuid
import zlib
from pathlib import Path

import pytest

from helpers import (
    ROLE,
    WAIT,
    FunctionUrl,
    create_function,
    installed_files,
    make_zip,
    recycle,
    unique_name,
)

pytestmark = pytest.mark.timeout(120)

DEMO = (Path(__file__).parent / "http_app_demo.py").read_text()
MB = 1024 * 1024
FIRST_CHUNK = b"INITIAL PAYLOAD RESPONSE\n"  # the demo's /chunked-response, before it waits

FLASK_APP = '''
import os
from flask import Flask, Response, request

app = Flask(__name__)

@app.get("/")
def index():
    return {"server": "gunicorn", "framework": "flask", "pid": os.getpid(), "args": request.args.to_dict(flat=False)}

@app.post("/echo")
def echo():
    return Response(request.get_data(), content_type=request.content_type)

@app.get("/cookies")
def cookies():
    resp = Response("cookies")
    resp.set_cookie("a", "1")
    resp.set_cookie("b", "2", httponly=True)
    return resp

@app.get("/teapot")
def teapot():
    return "short and stout", 418

@app.get("/stream")
def stream():
    return Response((f"line {i}\\n" for i in range(1000)), content_type="text/plain")
'''

RUN_SH = '''#!/bin/sh
# As in the Web Adapter's Flask zip example: the adapter layer runs $LAMBDA_TASK_ROOT/$_HANDLER.
exec python -m gunicorn --bind "127.0.0.1:$PORT" --workers 1 --threads 8 app:app
'''

ASGI_APP = '''
import json

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    if path == "/healthz":
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/echo":
        headers = [(k, v) for k, v in scope["headers"] if k in (b"content-type", b"content-length")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
            await send({"type": "http.response.body", "body": message.get("body", b""), "more_body": more})
        return
    headers = {k.decode(): v.decode() for k, v in scope["headers"]}
    body = json.dumps({"server": "uvicorn", "method": scope["method"], "path": path,
                       "raw_path": scope["raw_path"].decode(), "query": scope["query_string"].decode(),
                       "headers": headers}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"set-cookie", b"x=1"), (b"set-cookie", b"y=2")]})
    await send({"type": "http.response.body", "body": body})
'''

UVICORN_BOOTSTRAP = '''#!/bin/sh
export PYTHONPATH="$LAMBDA_TASK_ROOT"
exec python3 -m uvicorn --host 127.0.0.1 --port "$AWS_LWA_PORT" --no-access-log app:app
'''


# --------------------------------------------------------------------------------------------------
# Packaging and plumbing


def duplex(url: FunctionUrl, target: str, size: int, chunked: bool, block: int = 256 * 1024,
           ctype: str = "application/octet-stream") -> tuple[int, dict[str, str], int, str, str]:
    """POST `size` pseudo-random bytes while reading the response at the same time (a streaming
    echo would deadlock a client that sends everything first). Returns (status, headers,
    response size, sha256 sent, sha256 received); the body is never held whole in memory."""
    sock = socket.create_connection(("127.0.0.1", url.port), timeout=60)
    sent = hashlib.sha256()
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
    head = (f"POST {target} HTTP/1.1\r\nHost: {url.host}\r\nContent-Type: {ctype}\r\n{framing}\r\n"
            f"Connection: close\r\n\r\n").encode()
    rng = random.Random(size)
    errors: list[BaseException] = []

    def sender() -> None:
        try:
            sock.sendall(head)
            left = size
            while left:
                piece = rng.randbytes(min(block, left))
                left -= len(piece)
                sent.update(piece)
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=sender, daemon=True)
    thread.start()
    resp = http.client.HTTPResponse(sock, method="POST")
    try:
        resp.begin()
        got = hashlib.sha256()
        total = 0
        while chunk := resp.read(1 << 20):
            got.update(chunk)
            total += len(chunk)
        thread.join(60)
        assert not errors, errors
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, total, sent.hexdigest(), \
            got.hexdigest()
    finally:
        resp.close()
        sock.close()


def _make_http_app(client, endpoint: str, files: dict[str, str | bytes], *, runtime: str = "provided.al2023",
                   handler: str = "bootstrap", env: dict[str, str] | None = None, memory: int = 1769,
                   timeout: int = 60, wait: bool = True) -> tuple[str, FunctionUrl]:
    name = unique_name("http")
    create_function(client, name, make_zip(files), handler=handler, wait=wait, Runtime=runtime, Role=ROLE,
                    MemorySize=memory, Timeout=timeout, Environment={"Variables": env or {}})
    resp = client.create_function_url_config(FunctionName=name, AuthType="NONE")
    return name, FunctionUrl(endpoint, resp["FunctionUrl"])


@pytest.fixture(scope="module")
def demo(lambda_client, endpoint):
    """The demo app as a provided.al2023 bootstrap on port 3001, health at /health."""
    name, url = _make_http_app(lambda_client, endpoint, {"bootstrap": DEMO},
                               env={"AWS_LWA_PORT": "3001", "AWS_LWA_READINESS_CHECK_PATH": "/health"})
    yield name, url
    lambda_client.delete_function(FunctionName=name)


@pytest.fixture
def make_app(lambda_client, endpoint):
    created: list[str] = []

    def make(files: dict[str, str | bytes], **kwargs) -> tuple[str, FunctionUrl]:
        name, url = _make_http_app(lambda_client, endpoint, files, **kwargs)
        created.append(name)
        return name, url

    yield make
    for name in created:
        with contextlib.suppress(Exception):
            lambda_client.delete_function(FunctionName=name)


def _server_peak_rss(lamina_server) -> int:
    with open(f"/proc/{lamina_server.pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def _wait_in_the_app(url: FunctionUrl, requests: int) -> None:
    """Return once the demo app runs `requests` requests besides the /stats that asks (polled, 20 s at most)."""
    for _ in range(400):
        if json.loads(url.get("/stats")[2])["in_flight"] >= requests + 1:
            return
        time.sleep(0.05)
    raise AssertionError(f"{requests} request(s) never reached the app")


def _header_values(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [v for k, v in headers if k == name]


# --------------------------------------------------------------------------------------------------
# The demo app: bodies, streaming, status, headers, query strings


@pytest.mark.parametrize("size", [0, 1024, 10 * 1024, 64 * 1024, 64 * 1024 + 1, 9 * MB])  # both sides of APP_BODY_MAX
def test_echo_is_byte_exact(demo, size):
    _, url = demo
    status, headers, total, sent, got = duplex(url, "/echo", size, chunked=False)
    assert status == 200 and total == size and got == sent
    assert headers.get("content-length") == str(size) and headers["content-type"] == "application/octet-stream"


def test_echo_100_mb_streams_both_ways(demo, lamina_server):
    """100 MB in, 100 MB out, chunked both ways, with no payload limit and without the server holding it."""
    _, url = demo
    before = _server_peak_rss(lamina_server)
    status, headers, total, sent, got = duplex(url, "/echo", 100 * MB, chunked=True, block=1 << 20)
    assert status == 200 and total == 100 * MB and got == sent
    assert headers.get("transfer-encoding") == "chunked"
    assert _server_peak_rss(lamina_server) - before < 40 * MB


def test_large_download_streams_without_the_server_holding_it(demo, lamina_server):
    """A GET (the hot path's proxy) of 64 MB: every byte, read slowly, and the server does not keep it."""
    _, url = demo
    before = _server_peak_rss(lamina_server)
    conn = url.send("GET", f"/bytes?size={64 * MB}")
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("content-length") == str(64 * MB)
    block = bytes(range(256)) * 4096
    total = 0
    while piece := resp.read(1 << 20):
        assert piece == block[: len(piece)]  # 1 MiB reads line up with the app's 1 MiB pattern
        total += len(piece)
        time.sleep(0.002)  # a slower reader than the app: back-pressure, not buffering
    conn.close()
    assert total == 64 * MB
    assert _server_peak_rss(lamina_server) - before < 40 * MB


def test_double_and_half_echo(demo):
    _, url = demo
    data = bytes(range(256)) * 1000
    for route, expect in (("/double-echo", len(data) * 2), ("/half-echo", len(data) // 2)):
        status, _, body = url.request("POST", route, body=data)
        assert status == 200 and len(body) == expect, route


def test_chunked_response_arrives_as_it_is_written(demo):
    _, url = demo
    gate = uuid.uuid4().hex
    conn = url.send("GET", f"/chunked-response?gate={gate}")
    try:
        resp = conn.getresponse()
        # The first chunk arrives while the app still waits for the gate, which this client opens only then.
        assert resp.read(len(FIRST_CHUNK)) == FIRST_CHUNK
        assert url.get(f"/open-gate?gate={gate}")[0] == 200
        assert resp.read() == b"FINAL PAYLOAD RESPONSE\n"
    finally:
        conn.close()


def test_odd_status_and_repeated_headers(demo):
    _, url = demo
    status, headers, body = url.get("/odd-status")
    assert status == 519 and body == b"I'm a teapot"
    status, headers, _ = url.get("/cookies")
    assert status == 200
    assert _header_values(headers, "set-cookie") == ["a=1; Path=/", "b=2; HttpOnly", "c=3; Max-Age=60"]
    assert _header_values(headers, "x-multi") == ["one", "two"]
    assert _header_values(headers, "x-amzn-requestid")


def test_query_strings_and_paths_pass_unchanged(demo):
    _, url = demo
    for target in ("/debug?x=1", "/debug?q=hello%20world&slash=%2F&plus=a+b", "/debug?a=1&a=2&a=3",
                   "/debug?a[]=1&a[]=2", "/debug", "/debug?", "/debug?flag", "/debug/../debug%2Fx?y=%E2%82%AC"):
        status, _, body = url.get(target)
        if target.startswith("/debug/.."):
            assert status == 404  # the path too goes as sent: no route matches it in the app
            continue
        assert status == 200, (target, body)
        doc = json.loads(body)
        assert doc["target"] == target.rstrip("?"), (target, doc["target"])


def test_request_headers_reach_the_app(demo):
    _, url = demo
    status, resp_headers, body = url.get("/headers", headers=[("X-Custom", "a"), ("X-Custom", "b"),
                                                              ("Cookie", "k=v; k2=v2"),
                                                              ("Connection", "keep-alive, X-Hop"),
                                                              ("X-Hop", "dropped"),
                                                              ("X-Amzn-Request-Context", "spoofed")])
    assert status == 200
    seen = json.loads(body)
    names = [k for k, _ in seen]
    assert [v for k, v in seen if k == "x-custom"] == ["a", "b"]
    assert [v for k, v in seen if k == "cookie"] == ["k=v; k2=v2"]
    assert "x-hop" not in names and "connection" not in names
    assert dict(seen)["host"] == url.host
    context = json.loads(dict(seen)["x-amzn-request-context"])
    assert context["requestId"] == _header_values(resp_headers, "x-amzn-requestid")[0]
    assert context["apiId"] == url.url_id and context["http"]["method"] == "GET"
    lambda_ctx = json.loads(dict(seen)["x-amzn-lambda-context"])
    assert lambda_ctx["request_id"] == context["requestId"] and lambda_ctx["deadline"] > time.time() * 1000
    assert dict(seen)["x-forwarded-for"] == "127.0.0.1"


def test_head_request(demo):
    _, url = demo
    status, headers, body = url.request("HEAD", "/ping")
    assert status == 200 and body == b"" and dict(headers)["content-length"] == "4"
    status, _, body = url.get("/ping")  # the keep-alive connection to the app is still in step
    assert status == 200 and body == b"pong"


def test_many_slow_requests_share_one_environment(demo):
    """Several slow requests run at once in one environment (its max concurrency is 10)."""
    _, url = demo
    url.get("/ping")
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: url.get("/delay?delay=1000"), range(6)))
    docs = [json.loads(body) for status, _, body in results if status == 200]
    assert len(docs) == 6, results
    assert len({d["env"] for d in docs}) == 1
    assert max(d["max_in_flight"] for d in docs) >= 6  # the app saw all six at once


def test_invoke_api_converts_like_the_web_adapter(demo, lambda_client):
    name, _ = demo
    event = {"version": "2.0", "routeKey": "$default", "rawPath": "/debug", "rawQueryString": "a=1&b=2",
             "headers": {"x-test": "yes", "content-type": "text/plain"}, "cookies": ["c=1"],
             "requestContext": {"http": {"method": "POST", "path": "/debug"}, "requestId": "r1"},
             "body": "aGVsbG8=", "isBase64Encoded": True}
    resp = lambda_client.invoke(FunctionName=name, Payload=json.dumps(event))
    out = json.loads(resp["Payload"].read())
    assert "FunctionError" not in resp, out
    assert out["statusCode"] == 200 and out["isBase64Encoded"] is False
    doc = json.loads(out["body"])
    assert doc["method"] == "POST" and doc["target"] == "/debug?a=1&b=2" and doc["body_len"] == 5
    assert [v for k, v in doc["headers"] if k == "cookie"] == ["c=1"]
    resp = lambda_client.invoke(FunctionName=name, Payload=json.dumps({"Records": [{"body": "m"}]}))
    out = json.loads(resp["Payload"].read())
    assert out == {"passthrough": {"Records": [{"body": "m"}]}, "content_type": "application/json"}


# --------------------------------------------------------------------------------------------------
# Environments: readiness, per-environment concurrency, crashes


def test_no_traffic_before_the_app_is_healthy(endpoint, make_app):
    name, url = make_app({"bootstrap": DEMO}, env={"AWS_LWA_PORT": "3001", "AWS_LWA_READINESS_CHECK_PATH": "/health",
                                                  "INIT_SLEEP_MS": "1200"})
    active_seen_at = time.time()
    status, _, body = url.get("/stats")
    stats = json.loads(body)
    assert status == 200 and stats["early"] == 0
    # Active only once healthy: the app's first 200 to /health came before this client saw the function Active.
    assert stats["ready_at"] is not None and stats["ready_at"] <= active_seen_at, (stats, active_seen_at)
    # A cold start while requests wait: none reaches the new environment before /health says so.
    assert recycle(endpoint, name) == 1
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: url.get("/stats"), range(3)))
    for status, _, body in results:
        assert status == 200, body
        assert json.loads(body)["early"] == 0 and json.loads(body)["env"] != stats["env"], body


def test_max_concurrency_per_environment(make_app):
    _, url = make_app({"bootstrap": DEMO}, env={"AWS_LWA_PORT": "3001", "AWS_LWA_READINESS_CHECK_PATH": "/health",
                                                "AWS_LAMBDA_MAX_CONCURRENCY": "2"})
    with concurrent.futures.ThreadPoolExecutor(5) as pool:
        results = list(pool.map(lambda _: url.get("/delay?delay=1000"), range(5)))
    docs = [json.loads(body) for status, _, body in results if status == 200]
    assert len(docs) == 5, results
    assert max(d["max_in_flight"] for d in docs) <= 2
    assert len({d["env"] for d in docs}) >= 2  # the queue waited for free slots and the scaler added environments


def test_client_leaving_mid_response_frees_the_slot(make_app):
    _, url = make_app({"bootstrap": DEMO}, env={"AWS_LWA_PORT": "3001", "AWS_LWA_READINESS_CHECK_PATH": "/health",
                                                "AWS_LAMBDA_MAX_CONCURRENCY": "1"})
    env = json.loads(url.get("/stats")[2])["env"]
    conn = url.send("GET", f"/chunked-response?gate={uuid.uuid4().hex}")  # a gate no one opens
    resp = conn.getresponse()
    assert resp.read(len(FIRST_CHUNK)) == FIRST_CHUNK
    conn.close()  # gone while the app still waits to write its last chunk
    status, _, body = url.get("/stats")
    stats = json.loads(body)
    # The one slot was free again at once: the same environment answers while the app still runs the
    # abandoned request (two in flight), rather than after it or in a new environment.
    assert status == 200 and (stats["env"], stats["in_flight"]) == (env, 2), stats


def test_lwa_compression(make_app):
    _, url = make_app({"bootstrap": DEMO}, env={"AWS_LWA_PORT": "3001", "AWS_LWA_READINESS_CHECK_PATH": "/health",
                                                "AWS_LWA_ENABLE_COMPRESSION": "true"})
    text = b"the same words again and again " * 400
    status, headers, body = url.request("POST", "/echo", text, headers=[("Content-Type", "text/plain"),
                                                                        ("Accept-Encoding", "br, gzip")])
    assert status == 200 and dict(headers).get("content-encoding") == "gzip"
    assert "content-length" not in dict(headers) and "accept-encoding" in _header_values(headers, "vary")
    assert len(body) < len(text) // 10 and gzip.decompress(body) == text
    # Not asked for, or not worth it (an image): as the app sent it.
    status, headers, body = url.request("POST", "/echo", text, headers=[("Content-Type", "text/plain")])
    assert "content-encoding" not in dict(headers) and body == text
    status, headers, body = url.request("POST", "/echo", text, headers=[("Content-Type", "image/png"),
                                                                        ("Accept-Encoding", "gzip")])
    assert "content-encoding" not in dict(headers) and body == text
    status, headers, body = url.request("POST", "/echo", text, headers=[("Content-Type", "text/plain"),
                                                                        ("Accept-Encoding", "gzip;q=0")])
    assert "content-encoding" not in dict(headers) and body == text
    # A streamed response still streams, piece by piece: the first chunk arrives, compressed, while the app
    # waits for the gate this client opens only then.
    gate = uuid.uuid4().hex
    conn = url.send("GET", f"/chunked-response?gate={gate}", headers=[("Accept-Encoding", "gzip")])
    try:
        resp = conn.getresponse()
        assert resp.getheader("content-encoding") == "gzip"
        inflate = zlib.decompressobj(31)
        text = b""
        while len(text) < len(FIRST_CHUNK):
            piece = resp.read1(65536)
            assert piece, text
            text += inflate.decompress(piece)
        assert text == FIRST_CHUNK
        assert url.get(f"/open-gate?gate={gate}")[0] == 200
        text += inflate.decompress(resp.read()) + inflate.flush()
    finally:
        conn.close()
    assert text == FIRST_CHUNK + b"FINAL PAYLOAD RESPONSE\n"


def test_app_crash_fails_its_requests_and_is_replaced(make_app):
    _, url = make_app({"bootstrap": DEMO}, env={"AWS_LWA_PORT": "3001", "AWS_LWA_READINESS_CHECK_PATH": "/health"})
    before = json.loads(url.get("/stats")[2])["env"]
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        slow = pool.submit(url.get, "/delay?delay=5000")
        _wait_in_the_app(url, 1)
        crash = pool.submit(url.get, "/crash?after_ms=200")
        assert crash.result()[0] == 502
        status, _, body = slow.result()
    assert status == 502 and b"Internal Server Error" in body
    status, _, body = url.get("/stats")
    assert status == 200 and json.loads(body)["env"] != before


def test_request_over_the_timeout_gets_504(make_app):
    _, url = make_app({"bootstrap": DEMO}, env={"AWS_LWA_PORT": "3001", "AWS_LWA_READINESS_CHECK_PATH": "/health"},
                      timeout=1)
    # The app would answer after ten minutes and this client waits one: only the 1 s timeout can answer.
    status, _, _ = url.get("/delay?delay=600000")
    assert status == 504
    assert url.get("/ping")[:1] == (200,)  # the environment keeps serving


def test_update_and_delete_let_requests_in_flight_finish(lambda_client, make_app):
    name, url = make_app({"bootstrap": DEMO}, env={"AWS_LWA_PORT": "3001", "AWS_LWA_READINESS_CHECK_PATH": "/health"})
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow = pool.submit(url.get, "/delay?delay=1500")
        _wait_in_the_app(url, 1)
        lambda_client.update_function_configuration(FunctionName=name, Environment={"Variables": {
            "AWS_LWA_PORT": "3002", "AWS_LWA_READINESS_CHECK_PATH": "/health"}})
        lambda_client.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAIT)
        assert url.get("/ping")[:1] == (200,)  # the new configuration serves while the old request runs
        first_env = json.loads(slow.result()[2])["env"]
        slow = pool.submit(url.get, "/delay?delay=1500")
        _wait_in_the_app(url, 1)
        lambda_client.delete_function(FunctionName=name)
        status, _, body = slow.result()
    assert status == 200 and json.loads(body)["env"] != first_env


def test_bad_configuration_is_reported_at_invoke(lambda_client, make_app):
    """As on AWS (where the Web Adapter is a layer that reads its settings at init): Active, every request fails."""
    name, url = make_app({"bootstrap": DEMO}, env={"AWS_LWA_READINESS_CHECK_PROTOCOL": "udp"}, wait=False)
    for _ in range(100):
        cfg = lambda_client.get_function_configuration(FunctionName=name)
        if cfg["State"] != "Pending":
            break
        time.sleep(0.05)
    assert cfg["State"] == "Active", cfg
    assert url.get("/ping")[0] == 502
    resp = lambda_client.invoke(FunctionName=name, Payload=b"{}")
    assert resp["FunctionError"] == "Unhandled"
    err = json.loads(resp["Payload"].read())
    assert err["errorType"] == "Runtime.InvalidConfiguration" and "AWS_LWA_READINESS_CHECK_PROTOCOL" in err[
        "errorMessage"], err


# --------------------------------------------------------------------------------------------------
# Real frameworks, packaged as for the Web Adapter


def test_flask_under_gunicorn(make_app):
    files = installed_files("flask", "werkzeug", "jinja2", "itsdangerous", "click", "blinker", "markupsafe",
                             "gunicorn", "packaging")
    files.update({"app.py": FLASK_APP, "run.sh": RUN_SH})
    _, url = make_app(files, runtime="python3.11", handler="run.sh",
                      env={"AWS_LAMBDA_EXEC_WRAPPER": "/opt/bootstrap", "PORT": "8000"})
    status, _, body = url.get("/?x=1&x=2")
    doc = json.loads(body)
    assert status == 200 and doc["server"] == "gunicorn" and doc["args"] == {"x": ["1", "2"]}
    data = random.Random(7).randbytes(3 * MB)
    status, headers, body = url.request("POST", "/echo", body=data, headers=[("Content-Type", "image/png")])
    assert status == 200 and body == data and dict(headers)["content-type"] == "image/png"
    status, headers, _ = url.get("/cookies")
    assert [c.split(";")[0] for c in _header_values(headers, "set-cookie")] == ["a=1", "b=2"]
    assert url.get("/teapot")[:1] == (418,)
    status, _, body = url.get("/stream")
    assert status == 200 and body.count(b"\n") == 1000


def test_asgi_under_uvicorn(make_app):
    files = installed_files("uvicorn", "h11", "click")
    files.update({"app.py": ASGI_APP, "bootstrap": UVICORN_BOOTSTRAP})
    _, url = make_app(files, env={"AWS_LWA_PORT": "8000", "AWS_LWA_READINESS_CHECK_PATH": "/healthz",
                                  "AWS_LWA_REMOVE_BASE_PATH": "/api"})
    status, headers, body = url.get("/api/items/a%20b?q=%2F&q=2")
    doc = json.loads(body)
    assert status == 200 and doc["server"] == "uvicorn"
    assert doc["raw_path"] == "/items/a%20b" and doc["query"] == "q=%2F&q=2"
    assert _header_values(headers, "set-cookie") == ["x=1", "y=2"]
    status, _, total, sent, got = duplex(url, "/api/echo", 5 * MB, chunked=False)
    assert status == 200 and total == 5 * MB and got == sent
