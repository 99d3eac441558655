"""The MicroVM endpoint proxy: HTTP/1.1 (streamed both ways, any size) and WebSocket to an instance.

A request is for a MicroVM when its Host is `<microvm-id>.lambda-microvm.<anything>` (the endpoint
GetMicrovm returns) or its path starts with `/lamina/v1/microvm/<microvm-id>/` (plain curl; the app
sees the rest of the path). Like function URLs, it runs as bare ASGI, routed by the front door (front_door.py)
before the REST APIs.

Every request needs `X-aws-proxy-auth` with a token from CreateMicrovmAuthToken for this instance
that allows the port asked for (`X-aws-proxy-port`, default 8080); otherwise 403. Browsers' WebSockets
can send them as subprotocols instead: `lambda-microvms`, `lambda-microvms.authentication.<token>`,
`lambda-microvms.port.<n>`. All `x-aws-proxy-*` headers and these subprotocols are stripped before
forwarding.

Only this inbound traffic counts as activity for the idle policy. A request that arrives before the
/run hook returned 200 is held until the instance is RUNNING (up to 60 s), as is one that finds it
SUSPENDING. A SUSPENDED instance with autoResumeEnabled is resumed (with its /resume hook) and then
gets the request, or the caller gets 502 if the resume fails; without autoResume the caller gets 409
ConflictException (call ResumeMicrovm). A TERMINATED instance answers 410.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque

import httptools
import orjson
from starlette.types import Receive, Scope, Send
from websockets.client import ClientProtocol
from websockets.exceptions import InvalidState
from websockets.frames import Frame, Opcode
from websockets.http11 import Response as WsResponse
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from lamina.gateway.http.upstream_head import add_forwarded, connection_listed, request_head
from lamina.httpevent.headers import HOP_BY_HOP
from lamina.microvm.engine import DEFAULT_PORT
from lamina.microvm.ids import ENDPOINT_MARK
from lamina.microvm.manager import Microvm, MicrovmManager, ProxyRefused
from lamina.microvm.tokens import TokenError

log = logging.getLogger("lamina.gateway")

PATH_PREFIX = b"/lamina/v1/microvm/"
HOST_MARK = b"." + ENDPOINT_MARK.encode() + b"."
PROXY_HEADER = b"x-aws-proxy-"
WS_PROTOCOL = "lambda-microvms"
WS_AUTH = WS_PROTOCOL + ".authentication."
WS_PORT = WS_PROTOCOL + ".port."
READ_SIZE = 256 * 1024
IDLE_CONNECTION_S = 30.0
MAX_IDLE_CONNECTIONS = 16
_NOT_FORWARDED = HOP_BY_HOP | {b"content-length", b"expect", b"host"}


def match(scope: Scope) -> tuple[str, bytes] | None:
    """(microvm id, the path the app sees) for a request to a MicroVM endpoint."""
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
    for name, value in scope["headers"]:
        if name == b"host":
            if HOST_MARK in value:
                return value.split(b".", 1)[0].decode("latin-1").lower(), raw_path.split(b"?", 1)[0]
            break
    if raw_path.startswith(PATH_PREFIX):
        mid, _, rest = raw_path[len(PATH_PREFIX):].partition(b"/")
        return mid.decode("latin-1").lower(), b"/" + rest.split(b"?", 1)[0]
    return None


class AppError(Exception):
    """The app could not be reached or broke the exchange."""


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


class _Upstream:
    """One keep-alive HTTP/1.1 connection into the instance."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0
        self.closed = False

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(Exception):
            self.writer.transport.abort()


class _Response:
    """httptools callbacks collecting one response; the body is pulled by the caller (back-pressure)."""

    def __init__(self, head_only: bool) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.head_only = head_only
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.complete = False
        self.keep_alive = False
        self.until_close = False
        self.body: deque[bytes] = deque()

    def on_message_begin(self) -> None:
        self.headers = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:
            return  # informational: the real response follows
        self.status = status
        self.head_done = True
        self.keep_alive = self.parser.should_keep_alive() and not self.head_only
        names = {n for n, _ in self.headers}
        self.until_close = (b"content-length" not in names and b"transfer-encoding" not in names
                            and status not in (204, 304) and not self.head_only)
        if self.head_only or status in (204, 304):
            self.complete = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.head_done:
            self.complete = True

    def feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            raise AppError("the app switched protocols on a plain HTTP request") from None
        except httptools.HttpParserError as exc:
            raise AppError(f"the app sent an invalid HTTP response: {exc}") from None


class MicrovmProxy:
    def __init__(self, manager: MicrovmManager) -> None:
        self.mgr = manager
        self.pool: dict[tuple[str, int], list[_Upstream]] = {}
        manager.on_terminated.append(self._forget)

    def _forget(self, microvm_id: str) -> None:
        for key in [k for k in self.pool if k[0] == microvm_id]:
            for conn in self.pool.pop(key):
                conn.close()

    # -- common -----------------------------------------------------------------------------------

    def _authorize(self, mid: str, headers: list[tuple[bytes, bytes]], subprotocols: list[str]) -> int:
        """The target port, after checking the token; ProxyRefused(403/400) otherwise."""
        token_raw = _header(headers, b"x-aws-proxy-auth")
        token = token_raw.decode("latin-1") if token_raw is not None else None
        port_raw = _header(headers, b"x-aws-proxy-port")
        port_text = port_raw.decode("latin-1") if port_raw is not None else None
        for proto in subprotocols:
            if proto.startswith(WS_AUTH) and token is None:
                token = proto[len(WS_AUTH):]
            elif proto.startswith(WS_PORT) and port_text is None:
                port_text = proto[len(WS_PORT):]
        port = DEFAULT_PORT
        if port_text is not None:
            try:
                port = int(port_text)
            except ValueError:
                port = 0
            if not 1 <= port <= 65535:
                raise ProxyRefused(400, "ValidationException",
                                   f"X-aws-proxy-port {port_text!r} is not a port (1-65535).")
        try:
            self.mgr.tokens.verify(token, mid, port)
        except TokenError as exc:
            raise ProxyRefused(403, "AccessDeniedException", str(exc)) from None
        return port

    async def _connect(self, mvm: Microvm, port: int) -> tuple[_Upstream, bool]:
        idle = self.pool.get((mvm.microvm_id, port))
        now = time.monotonic()
        while idle:
            up = idle.pop()
            if not up.closed and now - up.idle_since < IDLE_CONNECTION_S and not up.reader.at_eof():
                return up, True
            up.close()
        assert mvm.handle is not None
        try:
            reader, writer = await asyncio.wait_for(mvm.handle.open_connection(port), 10.0)
        except (OSError, TimeoutError) as exc:
            hint = _port_hint(mvm, port)
            raise AppError(f"nothing accepts connections on port {port} in the MicroVM ({exc}){hint}") from None
        return _Upstream(reader, writer), False

    def _put_back(self, mvm: Microvm, port: int, up: _Upstream) -> None:
        if mvm.state not in ("RUNNING", "SUSPENDING", "SUSPENDED"):
            up.close()
            return
        idle = self.pool.setdefault((mvm.microvm_id, port), [])
        if len(idle) >= MAX_IDLE_CONNECTIONS:
            up.close()
            return
        up.idle_since = time.monotonic()
        idle.append(up)

    # -- HTTP -------------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send, mid: str, path: bytes) -> None:
        if scope["type"] == "websocket":
            await self.websocket(scope, receive, send, mid, path)
            return
        started = [False]
        try:
            port = self._authorize(mid, scope["headers"], [])
            mvm = await self.mgr.enter(mid)
            try:
                await self._exchange(scope, receive, send, mvm, port, path, started)
            finally:
                self.mgr.leave(mvm)
        except ProxyRefused as exc:
            await _error(send, exc.status, exc.code, exc.message)
        except AppError as exc:
            log.info("microvm %s: %s %s: %s", mid, scope["method"], path.decode("latin-1"), exc)
            if not started[0]:
                await _error(send, 502, "BadGateway", f"The MicroVM did not answer: {exc}")
        except Exception:
            log.exception("proxying to microvm %s failed", mid)
            if not started[0]:
                await _error(send, 502, "BadGateway", "Internal error in the MicroVM proxy.")

    def _head(self, scope: Scope, path: bytes) -> tuple[bytes, bool, bool]:
        """(request head, has a body, body is chunked)."""
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        listed = connection_listed(headers)
        length = _header(headers, b"content-length")
        chunked = b"chunked" in (_header(headers, b"transfer-encoding") or b"").lower()
        host = _header(headers, b"host") or b"localhost"
        out = [(b"host", host)]
        forwarded_for = None
        for name, value in headers:
            if name in _NOT_FORWARDED or name in listed or name.startswith(PROXY_HEADER):
                continue
            if name == b"x-forwarded-for":
                forwarded_for = value
                continue
            out.append((name, value))
        client = scope.get("client") or ("127.0.0.1", 0)
        add_forwarded(out, forwarded_for, client[0], scope.get("scheme", "http"))
        head, has_body = request_head(scope["method"], path, scope.get("query_string") or b"", out, length, chunked)
        return head, has_body, chunked

    async def _exchange(self, scope: Scope, receive: Receive, send: Send, mvm: Microvm, port: int,
                        path: bytes, started: list[bool]) -> None:
        head, has_body, chunked = self._head(scope, path)
        head_only = scope["method"] == "HEAD"
        up, reused = await self._connect(mvm, port)
        resp = _Response(head_only)
        state = {"sent": False, "gone": False}
        pump: asyncio.Task | None = None

        def start_pump() -> asyncio.Task:
            return asyncio.get_running_loop().create_task(
                _pump(receive, up, state, has_body, chunked, lambda: self.mgr.touch(mvm)))

        if not has_body:
            state["sent"] = True  # the head is the whole request
        try:
            for attempt in range(2):
                try:
                    up.writer.write(head)
                    if pump is None:
                        # Forwards the body, and watches for the client going away (a long poll, a stream).
                        pump = start_pump()
                    await _read_head(up, resp)
                    break
                except (AppError, ConnectionError) as exc:
                    up.close()
                    if attempt == 0 and reused and not has_body and not state["gone"]:
                        # A pooled connection the app had closed meanwhile: once more on a new one.
                        up, reused = await self._connect(mvm, port)
                        resp = _Response(head_only)
                        if pump is not None:
                            pump.cancel()
                            pump = None
                        continue
                    raise AppError(str(exc)) from None
            listed = {t.strip().lower() for n, val in resp.headers if n == b"connection" for t in val.split(b",")}
            out = [(k, val) for k, val in resp.headers if k not in HOP_BY_HOP and k not in listed]
            if any(k == b"transfer-encoding" for k, _ in resp.headers):
                out = [(k, val) for k, val in out if k != b"content-length"]
            await send({"type": "http.response.start", "status": resp.status, "headers": out})
            started[0] = True
            while True:
                chunk = b""
                while resp.body and len(chunk) < 65536:
                    chunk += resp.body.popleft()
                if resp.complete and not resp.body:
                    await send({"type": "http.response.body", "body": chunk})
                    break
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    continue
                data = await up.reader.read(READ_SIZE)
                if not data:
                    if resp.until_close:
                        resp.keep_alive = False
                        await send({"type": "http.response.body", "body": b""})
                        break
                    raise AppError("the app closed the connection in the middle of its response")
                resp.feed(data)
                self.mgr.touch(mvm)
            if resp.keep_alive and state["sent"] and not up.closed:
                self._put_back(mvm, port, up)
            else:
                up.close()
        except BaseException:
            up.close()
            raise
        finally:
            if pump is not None:
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pump

    # -- WebSocket --------------------------------------------------------------------------------

    async def websocket(self, scope: Scope, receive: Receive, send: Send, mid: str, path: bytes) -> None:
        offered: list[str] = list(scope.get("subprotocols") or [])
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        try:
            port = self._authorize(mid, scope["headers"], offered)
            mvm = await self.mgr.enter(mid)
        except ProxyRefused as exc:
            log.info("microvm %s: websocket refused: %s", mid, exc.message)
            await _ws_deny(send, exc.status, exc.code, exc.message, scope)
            return
        try:
            await self._ws_session(scope, receive, send, mvm, port, path, offered)
        finally:
            self.mgr.leave(mvm)

    async def _ws_session(self, scope: Scope, receive: Receive, send: Send, mvm: Microvm, port: int,
                          path: bytes, offered: list[str]) -> None:
        app_protocols = [p for p in offered if p != WS_PROTOCOL and not p.startswith(WS_PROTOCOL + ".")]
        query: bytes = scope.get("query_string") or b""
        host = (_header(scope["headers"], b"host") or b"localhost").decode("latin-1")
        target = (path + (b"?" + query if query else b"")).decode("latin-1")
        proto = ClientProtocol(parse_uri(f"ws://{host}{target}"),
                               subprotocols=[Subprotocol(p) for p in app_protocols] or None, max_size=None)
        request = proto.connect()
        for name, value in scope["headers"]:
            if name in (b"cookie", b"authorization", b"origin", b"user-agent") or name.startswith(b"x-") \
                    and not name.startswith(PROXY_HEADER):
                request.headers[name.decode("latin-1")] = value.decode("latin-1")
        try:
            assert mvm.handle is not None
            reader, writer = await asyncio.wait_for(mvm.handle.open_connection(port), 10.0)
        except (OSError, TimeoutError) as exc:
            reason = f"nothing accepts connections on port {port} ({exc}){_port_hint(mvm, port)}"
            await _ws_deny(send, 502, "BadGateway", reason, scope)
            return
        up = _Upstream(reader, writer)
        try:
            proto.send_request(request)
            _flush(proto, writer)
            response: WsResponse | None = None
            pending: list[Frame] = []
            while response is None:
                data = await reader.read(READ_SIZE)
                if not data:
                    proto.receive_eof()
                else:
                    proto.receive_data(data)
                for event in proto.events_received():
                    if isinstance(event, WsResponse):
                        response = event
                    elif isinstance(event, Frame):
                        pending.append(event)
                if proto.handshake_exc is not None:
                    status = response.status_code if response is not None else 502
                    await _ws_deny(send, 502 if status == 101 else status, "BadGateway",
                                   f"the app refused the WebSocket: {proto.handshake_exc}", scope)
                    return
                if not data and response is None:
                    await _ws_deny(send, 502, "BadGateway", "the app closed the connection", scope)
                    return
            chosen = proto.subprotocol or (WS_PROTOCOL if WS_PROTOCOL in offered else None)
            await send({"type": "websocket.accept", "subprotocol": chosen})
            to_client = asyncio.get_running_loop().create_task(
                self._ws_from_app(proto, reader, writer, send, pending, mvm))
            try:
                await self._ws_from_client(proto, writer, receive, to_client, mvm)
            finally:
                to_client.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await to_client
        finally:
            up.close()

    async def _ws_from_client(self, proto: ClientProtocol, writer: asyncio.StreamWriter, receive: Receive,
                              to_client: asyncio.Task, mvm: Microvm) -> None:
        recv_task: asyncio.Task | None = None
        while True:
            recv_task = asyncio.ensure_future(receive())
            done, _ = await asyncio.wait({recv_task, to_client}, return_when=asyncio.FIRST_COMPLETED)
            if recv_task not in done:
                recv_task.cancel()
                return  # the app side ended
            message = recv_task.result()
            self.mgr.touch(mvm)
            try:
                if message["type"] == "websocket.receive":
                    if message.get("text") is not None:
                        proto.send_text(message["text"].encode())
                    elif message.get("bytes") is not None:
                        proto.send_binary(message["bytes"])
                elif message["type"] == "websocket.disconnect":
                    with contextlib.suppress(InvalidState):
                        proto.send_close(message.get("code", 1000) if message.get("code") not in (1005, 1006)
                                         else 1000)
                    _flush(proto, writer)
                    return
            except InvalidState:
                return
            _flush(proto, writer)
            with contextlib.suppress(ConnectionError):
                await writer.drain()

    async def _ws_from_app(self, proto: ClientProtocol, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                           send: Send, pending: list[Frame], mvm: Microvm) -> None:
        parts: list[bytes | bytearray | memoryview] = []  # a frame's data (websockets' BytesLike)
        kind: Opcode | None = None
        events: list = list(pending)
        while True:
            for frame in events:
                if not isinstance(frame, Frame):
                    continue
                if frame.opcode in (Opcode.TEXT, Opcode.BINARY):
                    kind, parts = frame.opcode, [frame.data]
                elif frame.opcode == Opcode.CONT:
                    parts.append(frame.data)
                elif frame.opcode == Opcode.CLOSE:
                    code = proto.close_rcvd.code if proto.close_rcvd is not None else 1000
                    reason = proto.close_rcvd.reason if proto.close_rcvd is not None else ""
                    _flush(proto, writer)
                    await send({"type": "websocket.close", "code": code, "reason": reason})
                    return
                else:
                    continue
                if frame.fin and kind is not None:
                    data = b"".join(parts)
                    if kind == Opcode.TEXT:
                        await send({"type": "websocket.send", "text": data.decode()})
                    else:
                        await send({"type": "websocket.send", "bytes": data})
                    kind, parts = None, []
                    self.mgr.touch(mvm)
            _flush(proto, writer)
            data = await reader.read(READ_SIZE)
            if not data:
                proto.receive_eof()
                await send({"type": "websocket.close", "code": 1006 if proto.close_rcvd is None else 1000})
                return
            proto.receive_data(data)
            events = proto.events_received()


def _flush(proto: ClientProtocol, writer: asyncio.StreamWriter) -> None:
    for chunk in proto.data_to_send():
        if chunk:
            writer.write(chunk)
        else:
            with contextlib.suppress(OSError, RuntimeError):
                writer.write_eof()


async def _read_head(up: _Upstream, resp: _Response) -> None:
    while not resp.head_done:
        data = await up.reader.read(READ_SIZE)
        if not data:
            raise AppError("the app closed the connection before it answered")
        resp.feed(data)


async def _pump(receive: Receive, up: _Upstream, state: dict, has_body: bool, chunked: bool, touch) -> None:
    """The client's body to the app as it arrives; then watch for the client going away."""
    try:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            body = message.get("body", b"")
            if body and has_body:
                up.writer.write(b"%x\r\n%s\r\n" % (len(body), body) if chunked else body)
                await up.writer.drain()
                touch()
            if not message.get("more_body", False):
                if chunked:
                    up.writer.write(b"0\r\n\r\n")
                state["sent"] = True
                while (await receive())["type"] != "http.disconnect":
                    pass
                break
    except (ConnectionError, RuntimeError):
        return
    state["gone"] = True
    up.close()


def _port_hint(mvm: Microvm, port: int) -> str:
    # The usual cause: the app listens on its EXPOSEd port (5000) and the request went to the default 8080.
    built = mvm.version.built if mvm.version is not None else None
    others = [p for p in (built.config.expose if built is not None else []) if p != port]
    if not others:
        return ""
    return (f"; the image EXPOSEs {', '.join(map(str, others))}: send the header X-aws-proxy-port: {others[0]} "
            f"(lamina microvm request ID / --port {others[0]}) with a token that allows that port")


async def _error(send: Send, status: int, code: str, message: str,
                 request_id: str | None = None) -> None:
    request_id = request_id or str(uuid.uuid4())
    body = orjson.dumps({"message": message})
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"x-amzn-errortype", code.encode()),
                            (b"x-amzn-requestid", request_id.encode()),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _ws_deny(send: Send, status: int, code: str, message: str, scope: Scope) -> None:
    """Refuse the WebSocket handshake with an HTTP status (the ASGI denial extension when the server has it)."""
    if "websocket.http.response" in (scope.get("extensions") or {}):
        body = orjson.dumps({"message": message})
        await send({"type": "websocket.http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"x-amzn-errortype", code.encode()),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1008})
