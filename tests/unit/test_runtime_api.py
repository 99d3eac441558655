"""RuntimeApiServer (lamina.dispatch.runtime_api) driven over real HTTP with http.client.

The server runs on a uvloop loop in a background thread, as it does inside `lamina serve`; the test
thread plays the runtime and the extensions, and a fake host records the frames.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import pytest
import uvloop

from lamina.dispatch.runtime_api import MAX_PAYLOAD_BYTES, RuntimeApiServer
from lamina.runtime.wire import KIND_ERROR, KIND_INIT_ERROR, KIND_READY, KIND_RESULT, KIND_STREAM

pytestmark = pytest.mark.timeout(30)

NEXT = "/2018-06-01/runtime/invocation/next"
INIT_ERROR = "/2018-06-01/runtime/init/error"
REGISTER = "/2020-01-01/extension/register"
EVENT_NEXT = "/2020-01-01/extension/event/next"
ARN = "arn:aws:lambda:us-east-1:000000000000:function:fn"


def _response(rid: str) -> str:
    return f"/2018-06-01/runtime/invocation/{rid}/response"


def _error(rid: str) -> str:
    return f"/2018-06-01/runtime/invocation/{rid}/error"


class FakeHost:
    def __init__(self) -> None:
        self.frames: list[tuple[int, dict, bytes]] = []
        self._cond = threading.Condition()

    def on_frame(self, kind: int, header: dict, body: bytes) -> None:
        with self._cond:
            self.frames.append((kind, header, body))
            self._cond.notify_all()

    def wait(self, kind: int, timeout: float = 3.0) -> tuple[dict, bytes]:
        """The first not-yet-taken frame of this kind."""
        end = time.monotonic() + timeout
        with self._cond:
            while True:
                for i, (k, header, body) in enumerate(self.frames):
                    if k == kind:
                        del self.frames[i]
                        return header, body
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no frame of kind {kind}; have {self.frames}")
                self._cond.wait(left)

    def kinds(self) -> list[int]:
        with self._cond:
            return [k for k, _, _ in self.frames]


class Rapi:
    """The server under test plus helpers that talk to it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, server: RuntimeApiServer, host: FakeHost, port: int) -> None:
        self.loop = loop
        self.server = server
        self.host = host
        self.port = port
        self.pool = ThreadPoolExecutor(8)

    def conn(self, timeout: float = 5.0) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def call(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
             conn: http.client.HTTPConnection | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
        own = conn is None
        conn = conn or self.conn()
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.headers, resp.read()
        finally:
            if own:
                conn.close()

    def call_async(self, method: str, path: str, **kwargs) -> Future:
        return self.pool.submit(self.call, method, path, **kwargs)

    def on_loop(self, fn, *args) -> None:
        done: Future = Future()

        def run() -> None:
            try:
                done.set_result(fn(*args))
            except BaseException as exc:
                done.set_exception(exc)

        self.loop.call_soon_threadsafe(run)
        done.result(timeout=5)

    def deliver(self, rid: str, payload: bytes = b"{}", **extra) -> None:
        header = {"id": rid, "deadline_ms": int(time.time() * 1000) + 30000, "arn": ARN, **extra}
        self.on_loop(self.server.deliver, header, payload)

    def ready(self) -> Future:
        """Park the runtime's first /next and wait for READY."""
        fut = self.call_async("GET", NEXT)
        self.host.wait(KIND_READY)
        return fut

    def invoke(self, rid: str, payload: bytes = b"{}") -> tuple[int, http.client.HTTPMessage, bytes]:
        fut = self.call_async("GET", NEXT)
        self.deliver(rid, payload)
        return fut.result(timeout=5)


@pytest.fixture
def rapi() -> Iterator[Rapi]:
    loop = uvloop.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    host = FakeHost()
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = RuntimeApiServer(host, sock, function_name="fn", function_version="$LATEST", handler="app.handler")
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(timeout=5)
    r = Rapi(loop, server, host, port)
    try:
        yield r
    finally:
        loop.call_soon_threadsafe(server.close)
        r.pool.shutdown(wait=False, cancel_futures=True)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()


def test_rapi_ready_on_first_next_then_deliver_headers(rapi: Rapi) -> None:
    fut = rapi.call_async("GET", NEXT)
    rapi.host.wait(KIND_READY)
    assert not fut.done()  # a long-poll: nothing to hand out yet
    rapi.deliver("req-1", b'{"a": 1}', trace_id="Root=1-abc;Parent=def;Sampled=1",
                 client_context={"custom": {"k": "v"}}, tenant_id="blue")
    status, headers, body = fut.result(timeout=5)
    assert status == 200
    assert body == b'{"a": 1}'
    assert headers["Lambda-Runtime-Aws-Request-Id"] == "req-1"
    assert int(headers["Lambda-Runtime-Deadline-Ms"]) > time.time() * 1000
    assert headers["Lambda-Runtime-Invoked-Function-Arn"] == ARN
    assert headers["Lambda-Runtime-Trace-Id"] == "Root=1-abc;Parent=def;Sampled=1"
    assert json.loads(headers["Lambda-Runtime-Client-Context"]) == {"custom": {"k": "v"}}
    assert headers["Lambda-Runtime-Aws-Tenant-Id"] == "blue"
    assert "Lambda-Runtime-Cognito-Identity" not in headers
    assert headers["Content-Type"] == "application/json"
    assert int(headers["Content-Length"]) == len(body)
    assert rapi.host.kinds() == []  # READY only once


def test_rapi_invocation_waits_for_next_and_optional_headers_absent(rapi: Rapi) -> None:
    conn = rapi.conn()  # kept open: a runtime that hangs up before answering is offered its invocation again
    first = rapi.pool.submit(rapi.call, "GET", NEXT, conn=conn)
    rapi.host.wait(KIND_READY)
    rapi.deliver("req-a")  # answers the parked /next
    rapi.deliver("req-b")  # kept until the next /next
    assert first.result(timeout=5)[1]["Lambda-Runtime-Aws-Request-Id"] == "req-a"
    status, headers, _ = rapi.call("GET", NEXT, conn=conn)
    assert status == 200
    assert headers["Lambda-Runtime-Aws-Request-Id"] == "req-b"
    assert "Lambda-Runtime-Trace-Id" not in headers
    assert "Lambda-Runtime-Client-Context" not in headers
    assert headers["Content-Type"] == "application/json"


def test_rapi_response_and_invalid_request_id(rapi: Rapi) -> None:
    rapi.ready()
    rapi.deliver("req-1")
    status, _, body = rapi.call("POST", _response("req-1"), b'{"ok": true}')
    assert (status, json.loads(body)) == (202, {"status": "OK"})
    assert rapi.host.wait(KIND_RESULT) == ({"id": "req-1"}, b'{"ok": true}')
    invalid = {"errorMessage": "Invalid request ID", "errorType": "InvalidRequestID"}
    for rid in ("req-1", "nope"):  # already answered, unknown
        status, _, body = rapi.call("POST", _response(rid), b"{}")
        assert (status, json.loads(body)) == (400, invalid)
        status, _, body = rapi.call("POST", _error(rid), b"{}")
        assert (status, json.loads(body)) == (400, invalid)
    assert rapi.host.kinds() == []


def test_rapi_keep_alive_one_connection_many_invocations(rapi: Rapi) -> None:
    conn = rapi.conn()
    fut = rapi.pool.submit(rapi.call, "GET", NEXT, conn=conn)
    rapi.host.wait(KIND_READY)
    for i in range(20):
        rapi.deliver(f"r{i}", b'{"i": %d}' % i)
        status, headers, body = fut.result(timeout=5)
        assert status == 200 and headers["Lambda-Runtime-Aws-Request-Id"] == f"r{i}"
        assert rapi.call("POST", _response(f"r{i}"), body, conn=conn)[0] == 202
        assert rapi.host.wait(KIND_RESULT) == ({"id": f"r{i}"}, body)
        fut = rapi.pool.submit(rapi.call, "GET", NEXT, conn=conn)
    conn.close()


def test_rapi_error_type_from_header_body_or_default(rapi: Rapi) -> None:
    rapi.ready()
    body = json.dumps({"errorMessage": "boom", "errorType": "ValueError", "stackTrace": []}).encode()

    rapi.deliver("e1")
    status, _, resp = rapi.call("POST", _error("e1"), body, {"Lambda-Runtime-Function-Error-Type": "Runtime.Custom"})
    assert (status, json.loads(resp)) == (202, {"status": "OK"})
    assert rapi.host.wait(KIND_ERROR) == ({"id": "e1", "error_type": "Runtime.Custom"}, body)

    rapi.invoke("e2")
    assert rapi.call("POST", _error("e2"), body)[0] == 202  # awslambdaric 4.x: no header
    assert rapi.host.wait(KIND_ERROR) == ({"id": "e2", "error_type": "ValueError"}, body)

    rapi.invoke("e3")
    assert rapi.call("POST", _error("e3"), b"it broke")[0] == 202
    header, err = rapi.host.wait(KIND_ERROR)
    assert header == {"id": "e3", "error_type": "Unhandled"}
    assert json.loads(err) == {"errorMessage": "it broke", "errorType": "Unhandled"}

    rapi.invoke("e4")
    status = rapi.call("POST", _error("e4"), b'["not", "an object"]', {"Lambda-Runtime-Function-Error-Type": "X"})[0]
    assert status == 202
    header, err = rapi.host.wait(KIND_ERROR)
    assert header == {"id": "e4", "error_type": "X"}
    assert json.loads(err) == {"errorMessage": '["not", "an object"]', "errorType": "X"}


def test_rapi_init_error_inserts_error_type(rapi: Rapi) -> None:
    body = {"errorMessage": "Unable to import module 'app'", "requestId": "", "stackTrace": []}
    status, _, resp = rapi.call("POST", INIT_ERROR, json.dumps(body).encode(),
                                {"Lambda-Runtime-Function-Error-Type": "Runtime.ImportModuleError"})
    assert (status, json.loads(resp)) == (202, {"status": "OK"})
    header, err = rapi.host.wait(KIND_INIT_ERROR)
    assert header == {}
    assert json.loads(err) == {**body, "errorType": "Runtime.ImportModuleError"}

    assert rapi.call("POST", INIT_ERROR, b'{"errorMessage": "x", "errorType": "Boom"}')[0] == 202
    assert json.loads(rapi.host.wait(KIND_INIT_ERROR)[1]) == {"errorMessage": "x", "errorType": "Boom"}
    assert rapi.call("POST", INIT_ERROR, b"")[0] == 202
    assert json.loads(rapi.host.wait(KIND_INIT_ERROR)[1]) == {"errorMessage": "", "errorType": "Unhandled"}


def test_rapi_response_too_large_is_413_and_fails_invocation(rapi: Rapi) -> None:
    rapi.ready()
    rapi.deliver("big")
    conn = rapi.conn()
    status, _, body = rapi.call("POST", _response("big"), b"x" * (MAX_PAYLOAD_BYTES + 1), conn=conn)
    assert status == 413
    assert json.loads(body) == {"errorMessage": "Exceeded maximum allowed payload size (6291556 bytes).",
                                "errorType": "RequestEntityTooLarge"}
    header, err = rapi.host.wait(KIND_ERROR)
    assert header == {"id": "big", "error_type": "Function.ResponseSizeTooLarge"}
    assert json.loads(err)["errorType"] == "Function.ResponseSizeTooLarge"
    assert "6291556" in json.loads(err)["errorMessage"]
    # The connection survives (the body was drained) and the id is spent.
    assert rapi.call("POST", _response("big"), b"{}", conn=conn)[0] == 400
    conn.close()

    # Exactly at the limit is fine, and so is a chunked body.
    rapi.invoke("edge")
    assert rapi.call("POST", _response("edge"), b"y" * MAX_PAYLOAD_BYTES)[0] == 202
    assert len(rapi.host.wait(KIND_RESULT)[1]) == MAX_PAYLOAD_BYTES


def test_rapi_chunked_bodies(rapi: Rapi) -> None:
    rapi.ready()
    rapi.deliver("c1")
    conn = rapi.conn()
    conn.request("POST", _response("c1"), body=iter([b'{"par', b'ts": ', b"[1, 2]}"]), encode_chunked=True,
                 headers={"Transfer-Encoding": "chunked"})
    resp = conn.getresponse()
    assert (resp.status, resp.read()) == (202, b'{"status":"OK"}')
    assert rapi.host.wait(KIND_RESULT) == ({"id": "c1"}, b'{"parts": [1, 2]}')

    rapi.invoke("c2")
    chunk = b"z" * (1 << 20)
    conn.request("POST", _response("c2"), body=iter([chunk] * 7), encode_chunked=True,
                 headers={"Transfer-Encoding": "chunked"})
    resp = conn.getresponse()
    assert resp.status == 413 and json.loads(resp.read())["errorType"] == "RequestEntityTooLarge"
    assert rapi.host.wait(KIND_ERROR)[0] == {"id": "c2", "error_type": "Function.ResponseSizeTooLarge"}
    conn.close()


def test_rapi_streaming_trailer_error(rapi: Rapi) -> None:
    rapi.ready()
    rapi.deliver("s1")
    with socket.create_connection(("127.0.0.1", rapi.port), timeout=5) as s:
        s.sendall(b"POST " + _response("s1").encode() + b" HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                  b"Lambda-Runtime-Function-Response-Mode: streaming\r\n"
                  b"Trailer: Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body\r\n\r\n"
                  b"5\r\nhello\r\n0\r\nLambda-Runtime-Function-Error-Type: Stream.Failed\r\n"
                  b"Lambda-Runtime-Function-Error-Body: eyJlcnJvck1lc3NhZ2UiOiAieCJ9\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 202 ")
    header, body = rapi.host.wait(KIND_ERROR)
    assert header == {"id": "s1", "error_type": "Stream.Failed"}
    assert json.loads(body) == {"errorMessage": "x"}


def _streaming(rid: str, rapi: Rapi) -> socket.socket:
    """A connection that has started streaming rid's response: the head and a first piece, b"hello"."""
    s = socket.create_connection(("127.0.0.1", rapi.port), timeout=5)
    s.sendall(b"POST " + _response(rid).encode() + b" HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
              b"Lambda-Runtime-Function-Response-Mode: streaming\r\n\r\n5\r\nhello\r\n")
    return s


def test_rapi_streamed_response_passes_pieces_on_as_they_come(rapi: Rapi) -> None:
    rapi.ready()
    rapi.deliver("s2")
    with _streaming("s2", rapi) as s:
        assert rapi.host.wait(KIND_STREAM) == ({"id": "s2"}, b"hello")  # before the rest is even sent
        s.sendall(b"6\r\n world\r\n0\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 202 ")
    assert rapi.host.wait(KIND_STREAM) == ({"id": "s2"}, b" world")
    assert rapi.host.wait(KIND_RESULT) == ({"id": "s2"}, b"")  # the pieces were the response


def test_rapi_stream_cut_short_by_a_hang_up_ends_the_invocation(rapi: Rapi) -> None:
    rapi.ready()
    rapi.deliver("s3")
    with _streaming("s3", rapi):
        rapi.host.wait(KIND_STREAM)
    header, body = rapi.host.wait(KIND_ERROR)  # not offered again: part of it is out already
    assert header == {"id": "s3", "error_type": "Runtime.TruncatedResponse"}
    assert json.loads(body)["errorType"] == "Runtime.TruncatedResponse"


def test_rapi_disconnect_while_polling_keeps_invocation(rapi: Rapi) -> None:
    s = socket.create_connection(("127.0.0.1", rapi.port), timeout=5)
    s.sendall(f"GET {NEXT} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    rapi.host.wait(KIND_READY)
    s.close()
    time.sleep(0.1)  # let the server see the hang-up
    rapi.deliver("kept")
    status, headers, _ = rapi.call("GET", NEXT)
    assert status == 200 and headers["Lambda-Runtime-Aws-Request-Id"] == "kept"


def test_rapi_invocation_offered_again_after_runtime_hangs_up(rapi: Rapi) -> None:
    # Like a `curl` bootstrap: every call on a fresh connection that closes right after.
    rapi.ready()
    rapi.deliver("once")
    time.sleep(0.1)
    status, headers, _ = rapi.call("GET", NEXT)  # gets it again: the first connection is gone
    assert headers["Lambda-Runtime-Aws-Request-Id"] == "once"
    assert rapi.call("POST", _response("once"), b"1")[0] == 202
    assert rapi.host.wait(KIND_RESULT) == ({"id": "once"}, b"1")
    fut = rapi.call_async("GET", NEXT)
    time.sleep(0.1)
    assert not fut.done()  # answered: not offered again
    rapi.deliver("two")
    assert fut.result(timeout=5)[1]["Lambda-Runtime-Aws-Request-Id"] == "two"


def test_rapi_pipelined_requests_answered_in_order(rapi: Rapi) -> None:
    rapi.ready()
    rapi.deliver("p1")
    with socket.create_connection(("127.0.0.1", rapi.port), timeout=5) as s:
        s.sendall(b"POST " + _response("p1").encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok"
                  + f"GET {NEXT} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
                  + b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.1)
        rapi.deliver("p2")
        data = b""
        while data.count(b"HTTP/1.1 ") < 3:
            chunk = s.recv(65536)
            assert chunk, data
            data += chunk
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", data)
    assert statuses == [b"202", b"200", b"404"]
    assert b"Lambda-Runtime-Aws-Request-Id: p2" in data


def test_rapi_unknown_paths_404_and_bad_request_400(rapi: Rapi) -> None:
    for method, path in (("GET", "/"), ("POST", NEXT), ("GET", _response("x")), ("GET", "/2018-06-01/runtime/x"),
                         ("GET", "/2018-06-01/runtime/restore/next")):
        status, headers, body = rapi.call(method, path)
        assert status == 404 and headers["Content-Type"] == "application/json", (method, path)
        assert "errorType" in json.loads(body)
    with socket.create_connection(("127.0.0.1", rapi.port), timeout=5) as s:
        s.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 400 ")
        assert s.recv(4096) == b""  # closed


def test_rapi_close_drops_connections_and_is_idempotent(rapi: Rapi) -> None:
    fut = rapi.ready()
    rapi.on_loop(rapi.server.close)
    with pytest.raises((http.client.HTTPException, OSError)):
        fut.result(timeout=5)
    rapi.on_loop(rapi.server.close)
    rapi.on_loop(rapi.server.deliver, {"id": "late", "deadline_ms": 0, "arn": ARN}, b"{}")  # ignored
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", rapi.port), timeout=1).close()


def _register(rapi: Rapi, name: str, events: list[str]) -> tuple[int, http.client.HTTPMessage, bytes]:
    return rapi.call("POST", REGISTER, json.dumps({"events": events}).encode(), {"Lambda-Extension-Name": name})


def test_rapi_extensions_register_invoke_shutdown(rapi: Rapi) -> None:
    status, headers, body = _register(rapi, "ext1", ["INVOKE", "SHUTDOWN"])
    assert status == 200
    assert json.loads(body) == {"functionName": "fn", "functionVersion": "$LATEST", "handler": "app.handler"}
    ext_id = headers["Lambda-Extension-Identifier"]
    assert ext_id
    assert _register(rapi, "ext1", ["INVOKE"])[0] == 403  # name taken
    assert _register(rapi, "ext2", ["BOGUS"])[0] == 403
    ext_hdr = {"Lambda-Extension-Identifier": ext_id}

    runtime = rapi.call_async("GET", NEXT)
    time.sleep(0.1)
    assert KIND_READY not in rapi.host.kinds()  # the extension has not finished its init yet
    ext = rapi.call_async("GET", EVENT_NEXT, headers=ext_hdr)
    rapi.host.wait(KIND_READY)

    rapi.deliver("inv-1", trace_id="Root=1-xyz")
    status, headers, _ = runtime.result(timeout=5)
    assert headers["Lambda-Runtime-Aws-Request-Id"] == "inv-1"
    status, headers, body = ext.result(timeout=5)
    assert status == 200 and headers["Lambda-Extension-Event-Identifier"]
    event = json.loads(body)
    assert event["eventType"] == "INVOKE" and event["requestId"] == "inv-1"
    assert event["invokedFunctionArn"] == ARN and event["deadlineMs"] > time.time() * 1000
    assert event["tracing"] == {"type": "X-Amzn-Trace-Id", "value": "Root=1-xyz"}

    assert rapi.call("POST", _response("inv-1"), b"{}")[0] == 202
    rapi.host.wait(KIND_RESULT)
    # The next invocation waits until the extension is done with the previous event.
    runtime = rapi.call_async("GET", NEXT)
    rapi.deliver("inv-2")
    time.sleep(0.15)
    assert not runtime.done()
    ext = rapi.call_async("GET", EVENT_NEXT, headers=ext_hdr)
    assert runtime.result(timeout=5)[1]["Lambda-Runtime-Aws-Request-Id"] == "inv-2"
    assert json.loads(ext.result(timeout=5)[2])["requestId"] == "inv-2"
    assert rapi.call("POST", _response("inv-2"), b"{}")[0] == 202

    ext = rapi.call_async("GET", EVENT_NEXT, headers=ext_hdr)
    time.sleep(0.1)
    rapi.on_loop(rapi.server.shutdown)
    status, _, body = ext.result(timeout=5)
    event = json.loads(body)
    assert status == 200 and event["eventType"] == "SHUTDOWN" and event["shutdownReason"] == "spindown"
    assert event["deadlineMs"] > time.time() * 1000
    rapi.on_loop(rapi.server.shutdown)  # idempotent


def test_rapi_shutdown_only_extension_gets_no_invoke(rapi: Rapi) -> None:
    ext_id = _register(rapi, "watcher", ["SHUTDOWN"])[1]["Lambda-Extension-Identifier"]
    ext = rapi.call_async("GET", EVENT_NEXT, headers={"Lambda-Extension-Identifier": ext_id})
    rapi.ready()
    pending_next = None
    for rid in ("a", "b"):
        rapi.deliver(rid)
        if pending_next is not None:  # the runtime must have the invocation before it can answer it
            assert pending_next.result(timeout=5)[1]["Lambda-Runtime-Aws-Request-Id"] == rid
        assert rapi.call("POST", _response(rid), b"{}")[0] == 202
        pending_next = rapi.call_async("GET", NEXT)
    assert not ext.done()
    rapi.on_loop(rapi.server.shutdown)
    assert json.loads(ext.result(timeout=5)[2])["eventType"] == "SHUTDOWN"


def test_rapi_register_after_runtime_next_forbidden(rapi: Rapi) -> None:
    rapi.ready()
    status, headers, body = _register(rapi, "late", ["INVOKE"])
    assert status == 403
    assert json.loads(body)["errorType"] == "Extension.RegistrationClosed"
    assert "Lambda-Extension-Identifier" not in headers


def test_rapi_extension_errors_and_bad_identifier(rapi: Rapi) -> None:
    assert rapi.call("GET", EVENT_NEXT)[0] == 403
    status, _, body = rapi.call("GET", EVENT_NEXT, headers={"Lambda-Extension-Identifier": "nope"})
    assert status == 403 and json.loads(body)["errorType"] == "Extension.UnknownExtensionIdentifier"
    assert rapi.call("POST", REGISTER, b"{}")[0] == 403  # no name
    ext_id = _register(rapi, "crashy", ["INVOKE"])[1]["Lambda-Extension-Identifier"]
    status, _, _ = rapi.call("POST", "/2020-01-01/extension/init/error", b'{"errorMessage": "no config"}',
                             {"Lambda-Extension-Identifier": ext_id,
                              "Lambda-Extension-Function-Error-Type": "Extension.ConfigInvalid"})
    assert status == 202
    header, body = rapi.host.wait(KIND_INIT_ERROR)
    assert header == {"extension": "crashy"}
    assert json.loads(body) == {"errorMessage": "no config", "errorType": "Extension.ConfigInvalid"}
    assert rapi.call("POST", "/2020-01-01/extension/exit/error", b"",
                     {"Lambda-Extension-Identifier": ext_id})[0] == 202
    assert json.loads(rapi.host.wait(KIND_INIT_ERROR)[1])["errorType"] == "Unhandled"


def test_rapi_expect_100_continue(rapi: Rapi) -> None:
    # curl sends this for bodies over 1 MB and otherwise waits a second before sending the body.
    rapi.ready()
    rapi.deliver("x1")
    with socket.create_connection(("127.0.0.1", rapi.port), timeout=5) as s:
        s.sendall(b"POST " + _response("x1").encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        assert s.recv(4096) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(b"true")
        assert s.recv(4096).startswith(b"HTTP/1.1 202 ")
    assert rapi.host.wait(KIND_RESULT) == ({"id": "x1"}, b"true")


def test_rapi_oversized_headers_rejected(rapi: Rapi) -> None:
    with socket.create_connection(("127.0.0.1", rapi.port), timeout=5) as s:
        s.sendall(f"GET {NEXT} HTTP/1.1\r\nHost: x\r\nX-Junk: {'j' * 70000}\r\n\r\n".encode())
        assert s.recv(4096).startswith(b"HTTP/1.1 431 ")
    assert rapi.host.kinds() == []  # never counted as the runtime's /next
