"""The hot-path protocol's routing (gateway/http/fast_http.py), against a fake transport: Invoke requests are served
from the parser callbacks without reaching the ASGI app, everything else reaches the app, pipelined requests
answer in order, errors in the head answer before the body, and a body over the limit is refused."""

from __future__ import annotations

import asyncio

import pytest
import uvicorn
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.server import ServerState

from lamina.dispatch.invocation import InvokeResult, Throttled
from lamina.functions.errors import AwsError
from lamina.functions.invoke import Head, InvokeHandler, Prepared
from lamina.gateway.http.fast_http import protocol_for


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.data = b""
        self.closed = False
        self.protocol: asyncio.BaseProtocol | None = None

    def write(self, data: bytes) -> None:
        self.data += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"sockname": ("127.0.0.1", 8800), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol


class StubInvoke:
    """The InvokeHandler steps fast_http calls, recording what it was asked; results are completed by hand."""

    def __init__(self) -> None:
        self.pending: list = []
        self.bodies: list[bytes] = []

    def head(self, method, path, headers, query, raw_name, *args):
        if raw_name == "missing":
            raise AwsError("ResourceNotFoundException", "Function not found: missing")
        self.headers = headers
        kind = headers.get("x-amz-invocation-type", "RequestResponse")
        return Head(None, None, None, headers, kind, "None", None, 64, "Invoke")  # type: ignore[arg-type]

    def accept_event(self, head: Head, payload: bytes, request_id: str, done) -> None:
        self.bodies.append(payload)
        self.pending.append(done)

    def body(self, head: Head, payload: bytes) -> Prepared:
        self.bodies.append(payload)
        return Prepared(None, None, None, payload, head.headers, "RequestResponse", "None", None)  # type: ignore[arg-type]

    def start(self, p: Prepared, request_id: str, on_done=None):
        self.pending.append(on_done)
        return object()

    respond = staticmethod(InvokeHandler.respond)


class StubApp:
    def __init__(self) -> None:
        self.invoke = StubInvoke()
        self.gateway = None
        self.calls: list[str] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        self.calls.append(scope["path"])
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})


def _protocol(app: StubApp, **options):
    options.setdefault("proxy_headers", False)
    config = uvicorn.Config(app, http=protocol_for(app), lifespan="off", **options)  # type: ignore[arg-type]
    config.load()
    proto = config.http_protocol_class(config=config, server_state=ServerState(), app_state={})
    transport = FakeTransport()
    proto.connection_made(transport)
    return proto, transport


def _invoke(name: str, body: bytes) -> bytes:
    return (f"POST /2015-03-31/functions/{name}/invocations HTTP/1.1\r\nHost: x\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_invoke_is_served_without_the_asgi_app() -> None:
    async def run() -> None:
        app = StubApp()
        proto, transport = _protocol(app)
        proto.data_received(_invoke("fn", b'{"a": 1}'))
        await _settle()
        assert app.invoke.bodies == [b'{"a": 1}'] and app.calls == [] and transport.data == b""
        app.invoke.pending.pop()(InvokeResult(b'{"r": 2}', None, "", "7"))
        assert transport.data.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"x-amz-executed-version: 7\r\n" in transport.data and transport.data.endswith(b'\r\n\r\n{"r": 2}')
        assert not transport.closed
        proto.data_received(b"GET /2015-03-31/functions HTTP/1.1\r\nHost: x\r\n\r\n")
        await _settle()
        assert app.calls == ["/2015-03-31/functions"] and transport.data.endswith(b"\r\n\r\nok")

    asyncio.run(run())


def test_event_invoke_answers_202_once_accepted_and_reads_only_amz_headers() -> None:
    async def run() -> None:
        app = StubApp()
        proto, transport = _protocol(app)
        body = b'{"a": 1}'
        proto.data_received(b"POST /2015-03-31/functions/fn/invocations HTTP/1.1\r\nHost: x\r\n"
                            b"X-Amz-Invocation-Type: Event\r\nX-Amzn-Trace-Id: Root=1-2-3\r\nUser-Agent: t\r\n"
                            b"X-Amz-Invocation-Type: Event\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body))
        await _settle()
        assert app.invoke.headers == {"x-amz-invocation-type": "Event", "x-amzn-trace-id": "Root=1-2-3"}
        assert app.invoke.bodies == [body] and transport.data == b""
        app.invoke.pending.pop()(None)   # committed: the 202 goes out
        assert transport.data.startswith(b"HTTP/1.1 202 Accepted\r\n") and b"content-length: 0\r\n" in transport.data
        assert b"x-amzn-requestid: " in transport.data and not transport.closed
        transport.data = b""
        proto.data_received(_event(b"{}"))
        await _settle()
        app.invoke.pending.pop()(AwsError("ServiceException", "The event could not be queued: disk", 500))
        assert transport.data.startswith(b"HTTP/1.1 500 ") and b"could not be queued" in transport.data

    asyncio.run(run())


def _event(body: bytes) -> bytes:
    return (b"POST /2015-03-31/functions/fn/invocations HTTP/1.1\r\nHost: x\r\nX-Amz-Invocation-Type: Event\r\n"
            b"Content-Length: %d\r\n\r\n%b" % (len(body), body))


def test_pipelined_control_request_waits_for_the_invoke() -> None:
    async def run() -> None:
        app = StubApp()
        proto, transport = _protocol(app)
        proto.data_received(_invoke("fn", b"{}") + b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n")
        await _settle()
        assert app.calls == [] and transport.data == b""
        app.invoke.pending.pop()(Throttled("ReservedFunctionConcurrentInvocationLimitExceeded"))
        await _settle()
        first, _, rest = transport.data.partition(b"HTTP/1.1 200")
        assert first.startswith(b"HTTP/1.1 429 ") and b"x-amzn-errortype: TooManyRequestsException" in first
        assert b"retry-after: 1" in first and app.calls == ["/other"] and rest.endswith(b"ok")

    asyncio.run(run())


def test_head_errors_answer_before_the_body_and_limits_hold() -> None:
    async def run() -> None:
        app = StubApp()
        proto, transport = _protocol(app)
        proto.data_received(b"POST /2015-03-31/functions/missing/invocations HTTP/1.1\r\nHost: x\r\n"
                            b"Content-Length: 10\r\n\r\n")
        assert transport.data.startswith(b"HTTP/1.1 404 ")
        proto.data_received(b"0123456789")  # the body that follows is dropped
        assert app.invoke.bodies == []
        transport.data = b""
        proto.data_received(_invoke("fn", b"x" * 65))  # the stub's limit is 64
        assert transport.data.startswith(b"HTTP/1.1 413 ") and b"RequestTooLargeException" in transport.data
        assert app.invoke.bodies == [] and app.calls == []

    asyncio.run(run())


def test_upgrade_and_expect_continue_go_to_the_asgi_app() -> None:
    async def run() -> None:
        app = StubApp()
        proto, transport = _protocol(app)
        proto.data_received(b"POST /2015-03-31/functions/fn/invocations HTTP/1.1\r\nHost: x\r\n"
                            b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\n")
        await _settle()
        proto.data_received(b"{}")
        await _settle()
        assert app.calls == ["/2015-03-31/functions/fn/invocations"] and app.invoke.bodies == []

    asyncio.run(run())


def test_disconnect_before_the_result_writes_nothing() -> None:
    async def run() -> None:
        app = StubApp()
        proto, transport = _protocol(app)
        proto.data_received(_invoke("fn", b"{}"))
        proto.connection_lost(None)
        app.invoke.pending.pop()(InvokeResult(b"{}"))
        assert transport.data == b""

    asyncio.run(run())


def test_microvm_endpoint_requests_go_to_the_asgi_app() -> None:
    """The MicroVM endpoint proxy takes any path on its hosts, an Invoke path included."""
    from lamina.gateway.http import microvm_proxy

    async def run() -> None:
        app = StubApp()
        app.microvm_proxy = object()  # type: ignore[attr-defined]
        proto, transport = _protocol(app)
        host = b"abc." + microvm_proxy.HOST_MARK[1:] + b"example"
        proto.data_received(b"POST /2015-03-31/functions/fn/invocations HTTP/1.1\r\nHost: " + host
                            + b"\r\nContent-Length: 2\r\n\r\n{}")
        await _settle()
        assert app.calls == ["/2015-03-31/functions/fn/invocations"] and app.invoke.bodies == []
        proto.data_received(_invoke("fn", b"{}"))  # the same request on Lamina's own host: the hot path
        await _settle()
        assert app.invoke.bodies == [b"{}"] and len(app.calls) == 1

    asyncio.run(run())


async def _asgi_peer(trusted: str, headers: list[tuple[bytes, bytes]]) -> tuple[str, str]:
    """(client host, scheme) as uvicorn's proxy-headers middleware gives them to the ASGI app (the transport's peer
    is 127.0.0.1)."""
    seen: dict = {}

    async def app(scope, receive, send) -> None:
        seen.update(scope)

    scope = {"type": "http", "client": ("127.0.0.1", 50000), "scheme": "http", "headers": headers}
    await ProxyHeadersMiddleware(app, trusted)(scope, None, None)  # type: ignore[arg-type]
    return seen["client"][0], seen["scheme"]


@pytest.mark.parametrize(("trusted", "forwarded_for", "proto"), [
    ("127.0.0.1", b"203.0.113.7", b"https"),
    ("127.0.0.1", b"203.0.113.7, 10.0.0.2", None),           # the right-most untrusted hop
    ("127.0.0.1,10.0.0.0/8", b"203.0.113.7, 10.0.0.2", b"http"),
    ("10.0.0.1", b"203.0.113.7", b"https"),                  # the peer is not trusted: nothing taken
    ("*", b"[2001:db8::1]:443, 10.0.0.2", b"wss"),
    ("127.0.0.1", None, b"bogus"),
])
def test_hot_path_reads_forwarded_headers_as_the_asgi_path_does(trusted: str, forwarded_for: bytes | None,
                                                                 proto: bytes | None) -> None:
    """fast_http's _peer uses uvicorn's trusted-hosts check (a private name, pinned by pyproject's uvicorn range):
    it must give a function URL the client and scheme that uvicorn's middleware gives the ASGI handler."""
    headers = [(b"host", b"x")]
    if forwarded_for is not None:
        headers.append((b"x-forwarded-for", forwarded_for))
    if proto is not None:
        headers.append((b"x-forwarded-proto", proto))

    async def run() -> None:
        proto_, _ = _protocol(StubApp(), proxy_headers=True, forwarded_allow_ips=trusted)
        client, _port, scheme = proto_._peer(headers)
        assert (client, scheme) == await _asgi_peer(trusted, headers)

    asyncio.run(run())
