"""The HTTP hot path (gateway/http/fast_http.py) at the connection level: keep-alive and pipelining mixed with
requests the ASGI app serves, HTTP/1.0, Expect: 100-continue, early errors while a body is still coming,
chunked bodies, HEAD, clients that go away mid-invocation, and a graceful stop with a request in flight."""

from __future__ import annotations

import base64
import json
import re
import signal
import socket
import threading
import time

import pytest

from helpers import create_function, unique_name

ECHO = """\
import json, time

def handler(event, context):
    if isinstance(event, dict) and event.get("sleep"):
        time.sleep(event["sleep"])
    if isinstance(event, dict) and event.get("version") == "2.0":
        return {"statusCode": 200, "headers": {"x-seen-method": event["requestContext"]["http"]["method"]},
                "body": json.dumps({"path": event["rawPath"], "body": event.get("body"),
                                    "query": event["rawQueryString"]})}
    return {"echo": event}
"""

URL_RE = re.compile(r"^https?://([a-z0-9]+)\.")


class Conn:
    """One raw HTTP/1.1 connection: write bytes, read whole responses in order."""

    def __init__(self, endpoint: str, timeout: float = 30) -> None:
        host, port = endpoint.split("://", 1)[1].rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.file = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self, head_request: bool = False) -> tuple[int, dict[str, str], bytes]:
        status_line = self.file.readline()
        assert status_line.startswith(b"HTTP/1.1 "), status_line
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while (line := self.file.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if head_request or status in (204, 304):
            return status, headers, b""
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while True:
                size = int(self.file.readline().strip(), 16)
                chunk = self.file.read(size + 2)[:size]
                if size == 0:
                    break
                body += chunk
            return status, headers, body
        return status, headers, self.file.read(int(headers.get("content-length", "0")))

    def closed_by_server(self) -> bool:
        self.sock.settimeout(5)
        return self.file.read(1) == b""

    def close(self) -> None:
        self.file.close()
        self.sock.close()

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def invoke_request(name: str, payload: bytes, extra: str = "", version: str = "1.1") -> bytes:
    return (f"POST /2015-03-31/functions/{name}/invocations HTTP/{version}\r\nHost: 127.0.0.1\r\n"
            f"Content-Length: {len(payload)}\r\n{extra}\r\n").encode() + payload


def url_request(url_id: str, method: str, path: str, body: bytes = b"", extra: str = "") -> bytes:
    length = f"Content-Length: {len(body)}\r\n" if body or method in ("POST", "PUT") else ""
    return (f"{method} /lamina/v1/url/{url_id}{path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{length}{extra}\r\n"
            ).encode() + body


@pytest.fixture(scope="module")
def echo(lambda_client):
    """(function name, url id) of a handler function with a NONE-auth function URL."""
    name = unique_name("hot")
    create_function(lambda_client, name, {"app.py": ECHO})
    url = lambda_client.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"]
    m = URL_RE.match(url)
    assert m, url
    yield name, m.group(1)
    lambda_client.delete_function(FunctionName=name)


def test_keep_alive_mixes_hot_path_and_control_plane(endpoint, echo):
    name, url_id = echo
    with Conn(endpoint) as c:
        for i in range(3):
            c.send(invoke_request(name, json.dumps({"i": i}).encode()))
            status, headers, body = c.read()
            assert status == 200, body
            assert json.loads(body) == {"echo": {"i": i}}
            assert headers["x-amz-executed-version"] == "$LATEST" and headers["x-amzn-requestid"]
            c.send(f"GET /2015-03-31/functions/{name} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            status, _, body = c.read()
            assert status == 200 and json.loads(body)["Configuration"]["FunctionName"] == name
            c.send(url_request(url_id, "GET", f"/p{i}?q={i}"))
            status, headers, body = c.read()
            assert status == 200 and json.loads(body) == {"path": f"/p{i}", "body": None, "query": f"q={i}"}
            assert headers["x-seen-method"] == "GET"


def test_pipelined_requests_answer_in_order(endpoint, echo):
    name, url_id = echo
    with Conn(endpoint) as c:
        # A slow invoke first, then a control-plane request and two fast ones, all in one write.
        c.send(invoke_request(name, b'{"sleep": 0.3, "n": 1}')
               + f"GET /2015-03-31/functions/{name}/configuration HTTP/1.1\r\nHost: x\r\n\r\n".encode()
               + invoke_request(name, b'{"n": 3}')
               + url_request(url_id, "POST", "/four", b"body-4", "Content-Type: text/plain\r\n"))
        status, _, body = c.read()
        assert status == 200 and json.loads(body)["echo"]["n"] == 1
        status, _, body = c.read()
        assert status == 200 and json.loads(body)["FunctionName"] == name
        status, _, body = c.read()
        assert status == 200 and json.loads(body) == {"echo": {"n": 3}}
        status, _, body = c.read()
        assert status == 200 and json.loads(body) == {"path": "/four", "body": "body-4", "query": ""}


def test_http_10_gets_connection_close(endpoint, echo):
    name, _ = echo
    with Conn(endpoint) as c:
        c.send(invoke_request(name, b'{"a": 1}', version="1.0"))
        status, headers, body = c.read()
        assert status == 200 and json.loads(body) == {"echo": {"a": 1}}
        assert headers.get("connection") == "close"
        assert c.closed_by_server()


def test_expect_100_continue(endpoint, echo):
    name, _ = echo
    with Conn(endpoint) as c:
        payload = b'{"e": 100}'
        c.send(f"POST /2015-03-31/functions/{name}/invocations HTTP/1.1\r\nHost: x\r\n"
               f"Content-Length: {len(payload)}\r\nExpect: 100-continue\r\n\r\n".encode())
        assert c.file.readline().startswith(b"HTTP/1.1 100")
        assert c.file.readline() == b"\r\n"
        c.send(payload)
        status, _, body = c.read()
        assert status == 200 and json.loads(body) == {"echo": {"e": 100}}


def test_chunked_request_body(endpoint, echo):
    name, url_id = echo
    with Conn(endpoint) as c:
        c.send(f"POST /2015-03-31/functions/{name}/invocations HTTP/1.1\r\nHost: x\r\n"
               "Transfer-Encoding: chunked\r\n\r\n5\r\n{\"k\":\r\n4\r\n 42}\r\n0\r\n\r\n".encode())
        status, _, body = c.read()
        assert status == 200 and json.loads(body) == {"echo": {"k": 42}}
        c.send(f"PUT /lamina/v1/url/{url_id}/c HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
               "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n".encode())
        status, headers, body = c.read()
        assert status == 200 and json.loads(body)["body"] == "abcdef" and headers["x-seen-method"] == "PUT"


def test_error_before_the_body_keeps_the_connection(endpoint, echo):
    """An unknown function is refused as soon as the head is read; the body that follows is read and dropped
    and the connection serves the next request."""
    name, _ = echo
    with Conn(endpoint) as c:
        payload = b'{"x": "' + b"y" * 200_000 + b'"}'
        c.send(f"POST /2015-03-31/functions/no-such-{unique_name()}/invocations HTTP/1.1\r\nHost: x\r\n"
               f"Content-Length: {len(payload)}\r\n\r\n".encode())
        status, headers, body = c.read()
        assert status == 404 and headers["x-amzn-errortype"] == "ResourceNotFoundException", body
        c.send(payload)
        c.send(invoke_request(name, b'{"after": true}'))
        status, _, body = c.read()
        assert status == 200 and json.loads(body) == {"echo": {"after": True}}


def test_invalid_json_and_log_tail(endpoint, echo):
    name, _ = echo
    with Conn(endpoint) as c:
        c.send(invoke_request(name, b"{not json"))
        status, headers, body = c.read()
        assert status == 400 and headers["x-amzn-errortype"] == "InvalidRequestContentException"
        c.send(invoke_request(name, b'{"t": 1}', "X-Amz-Log-Type: Tail\r\n"))
        status, headers, body = c.read()
        assert status == 200
        tail = base64.b64decode(headers["x-amz-log-result"]).decode()
        assert "START RequestId:" in tail and "REPORT RequestId:" in tail
        c.send(invoke_request(name, b'{"t": 2}', "X-Amz-Invocation-Type: DryRun\r\n"))
        status, headers, body = c.read()
        assert status == 204 and body == b""
        c.send(invoke_request(name, b'{"t": 3}', "X-Amz-Invocation-Type: Event\r\n"))
        status, headers, body = c.read()
        assert status == 202 and body == b"" and headers["content-length"] == "0"


def test_head_request_on_a_function_url(endpoint, echo):
    _, url_id = echo
    with Conn(endpoint) as c:
        c.send(url_request(url_id, "HEAD", "/h"))
        status, headers, _ = c.read(head_request=True)
        assert status == 200 and headers["x-seen-method"] == "HEAD" and int(headers["content-length"]) > 0
        c.send(url_request(url_id, "GET", "/after-head"))
        status, _, body = c.read()
        assert status == 200 and json.loads(body)["path"] == "/after-head"


def test_client_gone_mid_invocation(endpoint, echo, lambda_client):
    name, url_id = echo
    for request in (invoke_request(name, b'{"sleep": 0.5}'), url_request(url_id, "GET", "/gone")):
        c = Conn(endpoint)
        c.send(request)
        c.close()
    time.sleep(0.8)
    resp = lambda_client.invoke(FunctionName=name, Payload=b'{"still": "serving"}')
    assert json.loads(resp["Payload"].read()) == {"echo": {"still": "serving"}}


def test_graceful_stop_answers_the_request_in_flight(lamina_factory):
    server = lamina_factory()
    client = server.client()
    name = unique_name("stop")
    create_function(client, name, {"app.py": ECHO})
    c = Conn(server.endpoint)
    result: dict = {}

    def call() -> None:
        c.send(invoke_request(name, b'{"sleep": 1.0, "last": 1}'))
        result["response"] = c.read()

    t = threading.Thread(target=call)
    t.start()
    time.sleep(0.4)
    assert t.is_alive(), f"the 1 s invoke was answered before SIGTERM: {result}"
    server.proc.send_signal(signal.SIGTERM)
    t.join(20)
    status, headers, body = result["response"]
    assert status == 200 and json.loads(body) == {"echo": {"sleep": 1.0, "last": 1}}
    assert headers.get("connection") == "close"
    assert server.proc.wait(30) == 0
    c.close()
