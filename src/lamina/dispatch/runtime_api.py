"""The Lambda Runtime API (2018-06-01) and a minimal Extensions API (2020-01-01) for one environment.

A custom runtime (`provided.al2023`: any `bootstrap`, or `python -m awslambdaric app.handler`) talks
HTTP/1.1 to 127.0.0.1:9001 inside its sandbox. Lamina creates that listening socket in the sandbox's
network namespace and hands it to `RuntimeApiServer`, which serves it on the server's event loop and
translates HTTP into the same (kind, header, body) frames the Python runtime sends on its channel
(see lamina.runtime.wire): READY, RESULT, ERROR, INIT_ERROR. The environment pushes work
with `deliver()`, the counterpart of an INVOKE frame.

This is a hot path (one request per invocation in each direction), so it is a bare asyncio.Protocol
with httptools, not a framework. Semantics follow AWS (and the runtime interface emulator):
- `/invocation/next` long-polls; the runtime's first `/next` closes extension registration and,
  once every registered extension has called `/extension/event/next`, means READY.
- An invocation reaches the runtime only when every extension has finished with the previous event
  ("an invoke ends when the runtime and all extensions have called next"); its INVOKE event goes to
  the extensions at the same moment.
- A runtime that drops its connection before answering does not lose the invocation: it is handed
  out again on the next `/next` (answers for it stay valid).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import socket
import time
import uuid
from collections import deque
from typing import Protocol
from urllib.parse import unquote

import httptools

from lamina.runtime.wire import KIND_ERROR, KIND_INIT_ERROR, KIND_READY, KIND_RESULT, KIND_STREAM

__all__ = ["MAX_PAYLOAD_BYTES", "RuntimeApiHost", "RuntimeApiServer"]

log = logging.getLogger(__name__)

# AWS's limit for a synchronous response (and what its 413 message quotes).
MAX_PAYLOAD_BYTES = 6291556
# Request line + headers; larger is an abuse from inside the sandbox, not a Lambda client.
MAX_HEADER_BYTES = 64 * 1024
MAX_EXTENSIONS = 10
# Stop reading a connection that pipelines this many requests behind a long-poll.
MAX_QUEUED_REQUESTS = 8
# Time an extension gets between SHUTDOWN and being killed (AWS: 2 s with external extensions).
SHUTDOWN_GRACE_MS = 2000

_RUNTIME_INVOCATION = b"/2018-06-01/runtime/invocation/"
_RUNTIME_INIT_ERROR = b"/2018-06-01/runtime/init/error"
_EXT_REGISTER = b"/2020-01-01/extension/register"
_EXT_NEXT = b"/2020-01-01/extension/event/next"
_EXT_INIT_ERROR = b"/2020-01-01/extension/init/error"
_EXT_EXIT_ERROR = b"/2020-01-01/extension/exit/error"

_EXT_EVENTS = frozenset({"INVOKE", "SHUTDOWN"})

_REASONS = {
    100: b"Continue",
    200: b"OK",
    202: b"Accepted",
    400: b"Bad Request",
    403: b"Forbidden",
    404: b"Not Found",
    413: b"Request Entity Too Large",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
}

_ACCEPTED = b'{"status":"OK"}'
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class RuntimeApiHost(Protocol):
    def on_frame(self, kind: int, header: dict, body: bytes) -> None: ...


def _json(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _err(error_type: str, message: str) -> bytes:
    return _json({"errorMessage": message, "errorType": error_type})


def _hv(value: object) -> bytes:
    # Header values come partly from callers (trace id, tenant id): never let them split the header block.
    text = value if isinstance(value, str) else str(value)
    return text.replace("\r", "").replace("\n", "").encode("utf-8", "replace")


def _header(name: bytes, value: object) -> bytes:
    return name + b": " + _hv(value) + b"\r\n"


class _Request:
    __slots__ = ("method", "url", "headers", "chunks", "size", "keep_alive", "streamed")

    def __init__(self) -> None:
        self.method = b""
        self.url = b""
        self.headers: dict[str, str] = {}
        self.chunks: list[bytes] = []
        self.size = 0
        self.keep_alive = True
        # A streamed response (Lambda-Runtime-Function-Response-Mode: streaming) being passed on as it
        # arrives: the invocation's id. Its body is not kept, and AWS's streaming limit applies (environment.py).
        self.streamed: str | None = None

    @property
    def too_large(self) -> bool:
        return self.size > MAX_PAYLOAD_BYTES and self.streamed is None

    def body(self) -> bytes:
        return b"".join(self.chunks)


class _Invocation:
    __slots__ = ("id", "payload", "head", "header", "announced", "sent", "sent_to")

    def __init__(self, rid: str, payload: bytes, head: bytes, header: dict) -> None:
        self.id = rid
        self.payload = payload
        self.head = head  # the /next response's extra header lines, built once
        self.header = header
        self.announced = False  # INVOKE event queued to the extensions
        self.sent = False  # handed to the runtime at least once
        self.sent_to: _Conn | None = None


class _Extension:
    __slots__ = ("id", "name", "events", "queue", "waiter", "called_next", "ready")

    def __init__(self, name: str, events: set[str]) -> None:
        self.id = str(uuid.uuid4())
        self.name = name
        self.events = events
        self.queue: deque[bytes] = deque()
        self.waiter: _Conn | None = None
        self.called_next = False  # has called event/next at least once (READY needs it)
        self.ready = False  # waiting for its next event, i.e. done with the previous one


class _Conn(asyncio.Protocol):
    """One HTTP/1.1 connection: parses requests and answers them strictly in order."""

    def __init__(self, server: RuntimeApiServer) -> None:
        self._server = server
        self._parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self._req: _Request | None = None
        self._queue: deque[_Request] = deque()
        self._header_bytes = 0
        self._header_overflow = False
        self._processing = False
        self._paused = False
        self._scheduled = False
        self.parked: _Request | None = None  # a long-poll awaiting its answer
        self.closed = False

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._server._conns.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._queue.clear()
        self._server._conns.discard(self)
        req = self._req
        if req is not None and req.streamed is not None:
            self._server._stream_broken(req.streamed)
        self._server._conn_lost(self)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # Nothing here speaks another protocol: answer what came, then hang up.
            for req in self._queue:
                req.keep_alive = False
            self._process()
            return
        except Exception as exc:
            # Answer what was complete before the garbage, then give up on the connection.
            self._process()
            if self._header_overflow:
                self._fatal(431, _err("RequestHeaderFieldsTooLarge", "Request headers too large"))
            else:
                self._fatal(400, _err("InvalidRequestFormat", f"Malformed HTTP request: {exc}"))
            return
        self._process()

    # -- httptools callbacks

    def on_message_begin(self) -> None:
        self._req = _Request()
        self._header_bytes = 0

    # The callbacks below run between on_message_begin and on_message_complete: a request is being read.

    def on_url(self, url: bytes) -> None:
        self._count_header(len(url))
        req = self._req
        assert req is not None
        req.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_header(len(name) + len(value))
        req = self._req
        assert req is not None
        req.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        req = self._req
        assert req is not None
        req.method = self._parser.get_method()
        # curl (the C runtime clients) waits up to 1 s for this before sending a large body.
        if (req.headers.get("expect", "").lower() == "100-continue" and self.parked is None
                and not self._queue and self.transport is not None):
            self.transport.write(_CONTINUE)
        if (req.method == b"POST" and self.parked is None and not self._queue
                and req.headers.get("lambda-runtime-function-response-mode", "").lower() == "streaming"):
            # Not behind another request of this connection: its pieces can go on as they come.
            req.streamed = self._server._stream_start(req.url)

    def on_body(self, data: bytes) -> None:
        req = self._req
        assert req is not None
        req.size += len(data)
        if req.streamed is not None:
            self._server._stream_piece(req.streamed, data)
        elif req.size <= MAX_PAYLOAD_BYTES:
            req.chunks.append(data)
        elif req.chunks:
            req.chunks = []  # over the limit: drain the rest without keeping it

    def on_message_complete(self) -> None:
        req = self._req
        assert req is not None
        self._req = None
        req.keep_alive = self._parser.should_keep_alive()
        self._queue.append(req)
        if len(self._queue) >= MAX_QUEUED_REQUESTS and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def _count_header(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > MAX_HEADER_BYTES:
            self._header_overflow = True
            raise ValueError("request headers too large")

    # -- processing

    def _process(self) -> None:
        if self._processing:
            return
        self._processing = True
        try:
            while self._queue and self.parked is None and not self.closed:
                req = self._queue.popleft()
                try:
                    self._server._handle(self, req)
                except Exception:
                    log.exception("runtime API: error handling %s %s", req.method, req.url)
                    if self.parked is req:
                        self.parked = None
                    self._fatal(500, _err("InternalError", "Internal error"))
        finally:
            self._processing = False
        if self._paused and len(self._queue) < MAX_QUEUED_REQUESTS // 2 and not self.closed \
                and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()

    def _scheduled_process(self) -> None:
        self._scheduled = False
        self._process()

    def park(self, req: _Request) -> None:
        self.parked = req

    def respond(self, req: _Request, status: int, body: bytes, extra: bytes = b"") -> None:
        if self.closed or self.transport is None:
            return
        keep = req.keep_alive and not self._server._closed
        head = b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s%s\r\n" % (
            status, _REASONS.get(status, b"Unknown"), len(body), extra, b"" if keep else b"Connection: close\r\n")
        if len(body) < 16384:
            self.transport.write(head + body)
        else:
            self.transport.writelines((head, body))  # no copy of a multi-MB payload
        if not keep:
            self.closed = True
            self.transport.close()

    def answer(self, status: int, body: bytes, extra: bytes = b"") -> None:
        """Answer the parked long-poll; requests pipelined behind it run on the next loop turn."""
        req = self.parked
        if req is None:
            return
        self.parked = None
        self.respond(req, status, body, extra)
        if self._queue and not self._scheduled and not self.closed:
            # Not inline: the server may be in the middle of its own bookkeeping when it answers.
            loop = self._server._loop
            assert loop is not None  # the server was started: it serves this connection
            self._scheduled = True
            loop.call_soon(self._scheduled_process)

    def _fatal(self, status: int, body: bytes) -> None:
        if self.closed or self.transport is None:
            return
        self._queue.clear()
        if self.parked is None:
            req = _Request()
            req.keep_alive = False
            self.respond(req, status, body)
        self.closed = True
        self.transport.close()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class RuntimeApiServer:
    """Serves one environment's Runtime API on an already-listening socket."""

    def __init__(self, host: RuntimeApiHost, sock: socket.socket, *, function_name: str, function_version: str,
                 handler: str) -> None:
        self._host = host
        self._sock = sock
        self._register_body = _json({"functionName": function_name, "functionVersion": function_version,
                                     "handler": handler})
        self._server: asyncio.AbstractServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conns: set[_Conn] = set()
        self._closed = False
        self._registration_open = True  # until the runtime's first /next
        self._ready_sent = False
        self._runtime_waiters: deque[_Conn] = deque()
        self._pending: deque[_Invocation] = deque()  # delivered, waiting for a /next
        self._invocations: dict[str, _Invocation] = {}  # delivered and not answered yet
        self._extensions: dict[str, _Extension] = {}  # by identifier

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._server = await self._loop.create_server(lambda: _Conn(self), sock=self._sock)

    # -- the environment's side

    def deliver(self, header: dict, payload: bytes) -> None:
        """Queue one invocation; the runtime gets it on its (current or next) /next."""
        if self._closed:
            return
        rid = str(header["id"])
        inv = _Invocation(rid, payload, self._next_head(rid, header, len(payload)), header)
        self._invocations[rid] = inv
        self._pending.append(inv)
        self._pump()

    def shutdown(self) -> None:
        """SHUTDOWN to the extensions waiting for it, then close()."""
        if self._closed:
            return
        event = _json({"eventType": "SHUTDOWN", "shutdownReason": "spindown",
                       "deadlineMs": int(time.time() * 1000) + SHUTDOWN_GRACE_MS})
        for ext in self._extensions.values():
            if "SHUTDOWN" in ext.events:
                ext.queue.append(event)
                self._feed_extension(ext)
        self.close()

    def close(self) -> None:
        """Stop listening and close every connection (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._server is not None:
            self._server.close()  # closes (or detaches) the listening socket too
        else:
            self._sock.close()
        for conn in list(self._conns):
            conn.abort()  # transport.close(): what is already written still goes out
        self._conns.clear()
        self._runtime_waiters.clear()
        self._pending.clear()
        self._invocations.clear()
        for ext in self._extensions.values():
            ext.waiter = None
            ext.queue.clear()

    # -- internals

    def _frame(self, kind: int, header: dict, body: bytes) -> None:
        # A host bug must not take the runtime's connection down with it.
        try:
            self._host.on_frame(kind, header, body)
        except Exception:
            log.exception("runtime API: host.on_frame(%d) failed", kind)

    @staticmethod
    def _next_head(rid: str, header: dict, size: int) -> bytes:
        parts = [_header(b"Lambda-Runtime-Aws-Request-Id", rid),
                 _header(b"Lambda-Runtime-Deadline-Ms", int(header.get("deadline_ms") or 0)),
                 _header(b"Lambda-Runtime-Invoked-Function-Arn", header.get("arn") or "")]
        if header.get("trace_id"):
            parts.append(_header(b"Lambda-Runtime-Trace-Id", header["trace_id"]))
        if header.get("client_context") is not None:
            parts.append(_header(b"Lambda-Runtime-Client-Context", json.dumps(header["client_context"])))
        if header.get("cognito_identity") is not None:
            parts.append(_header(b"Lambda-Runtime-Cognito-Identity", json.dumps(header["cognito_identity"])))
        if header.get("tenant_id"):
            parts.append(_header(b"Lambda-Runtime-Aws-Tenant-Id", header["tenant_id"]))
        return b"".join(parts)

    def _pump(self) -> None:
        """Hand pending invocations to waiting runtime connections, when the extensions allow it."""
        while self._pending and self._runtime_waiters and not self._closed:
            inv = self._pending[0]
            if not inv.announced:
                if not all(ext.ready for ext in self._extensions.values()):
                    return  # an extension is still busy with the previous event
                inv.announced = True
                self._announce(inv)
            conn = self._runtime_waiters.popleft()
            if conn.closed or conn.parked is None:
                continue
            self._pending.popleft()
            inv.sent = True
            inv.sent_to = conn
            conn.answer(200, inv.payload, inv.head)

    def _announce(self, inv: _Invocation) -> None:
        subscribers = [ext for ext in self._extensions.values() if "INVOKE" in ext.events]
        if not subscribers:
            return
        h = inv.header
        event = _json({"eventType": "INVOKE", "deadlineMs": int(h.get("deadline_ms") or 0), "requestId": inv.id,
                       "invokedFunctionArn": h.get("arn") or "",
                       "tracing": {"type": "X-Amzn-Trace-Id", "value": h.get("trace_id") or ""}})
        for ext in subscribers:
            ext.queue.append(event)
            ext.ready = False
            self._feed_extension(ext)

    def _feed_extension(self, ext: _Extension) -> None:
        conn = ext.waiter
        if not ext.queue or conn is None or conn.closed or conn.parked is None:
            return
        ext.waiter = None
        conn.answer(200, ext.queue.popleft(), _header(b"Lambda-Extension-Event-Identifier", uuid.uuid4()))

    def _maybe_ready(self) -> None:
        if self._ready_sent or self._registration_open:
            return
        if all(ext.called_next for ext in self._extensions.values()):
            self._ready_sent = True
            self._frame(KIND_READY, {}, b"")

    def _conn_lost(self, conn: _Conn) -> None:
        if self._closed:
            return
        with contextlib.suppress(ValueError):
            self._runtime_waiters.remove(conn)
        for ext in self._extensions.values():
            if ext.waiter is conn:
                ext.waiter = None  # still counts as having called next; queued events wait for it
        # We cannot tell whether the runtime read an invocation written just as it hung up: offer it again.
        requeue = [inv for inv in self._invocations.values() if inv.sent_to is conn]
        for inv in reversed(requeue):
            inv.sent_to = None
            if inv not in self._pending:
                self._pending.appendleft(inv)
        if requeue:
            self._pump()

    def _stream_start(self, url: bytes) -> str | None:
        """The invocation id, if url is the response of one the runtime has (then it can be streamed)."""
        try:
            path = httptools.parse_url(url).path or b""
        except httptools.HttpParserInvalidURLError:
            return None
        if not path.startswith(_RUNTIME_INVOCATION) or not path.endswith(b"/response"):
            return None
        rid = unquote(path[len(_RUNTIME_INVOCATION) : -len(b"/response")].decode("latin-1"))
        inv = self._invocations.get(rid)
        return rid if inv is not None and inv.sent and "/" not in rid else None

    def _stream_piece(self, rid: str, data: bytes) -> None:
        if rid in self._invocations and data:
            self._frame(KIND_STREAM, {"id": rid}, data)

    def _stream_broken(self, rid: str) -> None:
        """The runtime hung up in the middle of streaming a response: part of it is out, so the invocation cannot
        be offered again; it ends with an error."""
        if self._take_invocation(rid) is not None:
            self._frame(KIND_ERROR, {"id": rid, "error_type": "Runtime.TruncatedResponse"},
                        _err("Runtime.TruncatedResponse", "The runtime closed its connection before the end of "
                             "the response it was streaming."))

    def _take_invocation(self, rid: str) -> _Invocation | None:
        inv = self._invocations.get(rid)
        if inv is None or not inv.sent:
            return None
        del self._invocations[rid]
        with contextlib.suppress(ValueError):
            self._pending.remove(inv)  # it may have been queued again after a disconnect
        return inv

    # -- routing

    def _handle(self, conn: _Conn, req: _Request) -> None:
        if self._closed:
            conn.abort()
            return
        try:
            path = httptools.parse_url(req.url).path or b""
        except httptools.HttpParserInvalidURLError:
            conn.respond(req, 400, _err("InvalidRequestFormat", "Invalid URL"))
            return
        method = req.method
        if path.startswith(_RUNTIME_INVOCATION):
            rest = path[len(_RUNTIME_INVOCATION):]
            if rest == b"next":
                if method == b"GET":
                    self._runtime_next(conn, req)
                    return
            else:
                rid, sep, action = rest.rpartition(b"/")
                if sep and rid and b"/" not in rid and method == b"POST":
                    if action == b"response":
                        self._invocation_response(conn, req, unquote(rid.decode("latin-1")))
                        return
                    if action == b"error":
                        self._invocation_error(conn, req, unquote(rid.decode("latin-1")))
                        return
        elif method == b"POST" and path == _RUNTIME_INIT_ERROR:
            self._init_error(conn, req, "lambda-runtime-function-error-type", {})
            return
        elif method == b"POST" and path == _EXT_REGISTER:
            self._ext_register(conn, req)
            return
        elif method == b"GET" and path == _EXT_NEXT:
            self._ext_next(conn, req)
            return
        elif method == b"POST" and path in (_EXT_INIT_ERROR, _EXT_EXIT_ERROR):
            ext = self._extension_of(conn, req)
            if ext is not None:
                self._init_error(conn, req, "lambda-extension-function-error-type", {"extension": ext.name})
            return
        conn.respond(req, 404, _err("UnknownEndpoint",
                                    f"No such endpoint: {method.decode('latin-1')} {path.decode('latin-1')}"))

    # -- Runtime API

    def _runtime_next(self, conn: _Conn, req: _Request) -> None:
        self._registration_open = False
        conn.park(req)
        self._runtime_waiters.append(conn)
        self._maybe_ready()
        self._pump()

    def _invocation_response(self, conn: _Conn, req: _Request, rid: str) -> None:
        inv = self._take_invocation(rid)
        if inv is None:
            conn.respond(req, 400, _err("InvalidRequestID", "Invalid request ID"))
            return
        if req.too_large:
            self._too_large(conn, req, rid)
            return
        error_type = req.headers.get("lambda-runtime-function-error-type")
        if error_type:
            # A streamed response that failed midway reports it in trailers (which arrive as headers here).
            conn.respond(req, 202, _ACCEPTED)
            raw = req.headers.get("lambda-runtime-function-error-body", "")
            try:
                body = base64.b64decode(raw, validate=True) if raw else b""
            except (binascii.Error, ValueError):
                body = raw.encode("latin-1", "replace")
            body, error_type = _error_body(body, error_type)
            self._frame(KIND_ERROR, {"id": rid, "error_type": error_type}, body)
            return
        conn.respond(req, 202, _ACCEPTED)
        self._frame(KIND_RESULT, {"id": rid}, b"" if req.streamed is not None else req.body())

    def _invocation_error(self, conn: _Conn, req: _Request, rid: str) -> None:
        inv = self._take_invocation(rid)
        if inv is None:
            conn.respond(req, 400, _err("InvalidRequestID", "Invalid request ID"))
            return
        if req.too_large:
            self._too_large(conn, req, rid)
            return
        body, error_type = _error_body(req.body(), req.headers.get("lambda-runtime-function-error-type"))
        conn.respond(req, 202, _ACCEPTED)
        self._frame(KIND_ERROR, {"id": rid, "error_type": error_type}, body)

    def _too_large(self, conn: _Conn, req: _Request, rid: str) -> None:
        conn.respond(req, 413, _err("RequestEntityTooLarge",
                                    f"Exceeded maximum allowed payload size ({MAX_PAYLOAD_BYTES} bytes)."))
        body = _err("Function.ResponseSizeTooLarge",
                    f"Response payload size ({req.size} bytes) exceeded maximum allowed payload size "
                    f"({MAX_PAYLOAD_BYTES} bytes).")
        self._frame(KIND_ERROR, {"id": rid, "error_type": "Function.ResponseSizeTooLarge"}, body)

    def _init_error(self, conn: _Conn, req: _Request, type_header: str, frame_header: dict) -> None:
        if req.too_large:
            conn.respond(req, 413, _err("RequestEntityTooLarge",
                                        f"Exceeded maximum allowed payload size ({MAX_PAYLOAD_BYTES} bytes)."))
            error_type = req.headers.get(type_header) or "Unhandled"
            body = _err(error_type, f"Init error report too large ({req.size} bytes)")
        else:
            conn.respond(req, 202, _ACCEPTED)
            body, error_type = _error_body(req.body(), req.headers.get(type_header), insert_type=True)
        self._frame(KIND_INIT_ERROR, frame_header, body)

    # -- Extensions API

    def _ext_register(self, conn: _Conn, req: _Request) -> None:
        name = req.headers.get("lambda-extension-name", "")
        if not name:
            conn.respond(req, 403, _err("Extension.InvalidExtensionName", "Empty extension name"))
            return
        try:
            data = json.loads(req.body() or b"{}")
            events = data.get("events") or []
            if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
                raise ValueError("events must be a list of strings")
            if data.get("configurationKeys"):
                raise ValueError("configurationKeys are deprecated; use environment variables instead")
        except (ValueError, AttributeError) as exc:
            conn.respond(req, 403, _err("InvalidRequestFormat", str(exc)))
            return
        bad = [e for e in events if e not in _EXT_EVENTS]
        if bad:
            conn.respond(req, 403, _err("Extension.InvalidEventType", f"{bad[0]}: unknown event type"))
            return
        if not self._registration_open:
            conn.respond(req, 403, _err("Extension.RegistrationClosed", "Extension registration closed already"))
            return
        if any(ext.name == name for ext in self._extensions.values()):
            conn.respond(req, 403, _err("Extension.InvalidExtensionState",
                                        "Extension with this name already registered"))
            return
        if len(self._extensions) >= MAX_EXTENSIONS:
            conn.respond(req, 403, _err("Extension.TooManyExtensions", f"Extension limit ({MAX_EXTENSIONS}) reached"))
            return
        ext = _Extension(name, set(events))
        self._extensions[ext.id] = ext
        conn.respond(req, 200, self._register_body, _header(b"Lambda-Extension-Identifier", ext.id))

    def _extension_of(self, conn: _Conn, req: _Request) -> _Extension | None:
        ext_id = req.headers.get("lambda-extension-identifier", "")
        if not ext_id:
            conn.respond(req, 403, _err("Extension.MissingHeader", "Missing Lambda-Extension-Identifier header"))
            return None
        ext = self._extensions.get(ext_id)
        if ext is None:
            conn.respond(req, 403, _err("Extension.UnknownExtensionIdentifier", f"Unknown extension {ext_id}"))
        return ext

    def _ext_next(self, conn: _Conn, req: _Request) -> None:
        ext = self._extension_of(conn, req)
        if ext is None:
            return
        ext.called_next = True
        old = ext.waiter
        if old is not None and old is not conn and not old.closed and old.parked is not None:
            old.answer(403, _err("Extension.InvalidExtensionState", "Superseded by a newer event/next call"))
        if ext.queue:
            ext.waiter = None
            ext.ready = False  # it now works on this event
            conn.respond(req, 200, ext.queue.popleft(), _header(b"Lambda-Extension-Event-Identifier", uuid.uuid4()))
            return
        ext.ready = True
        ext.waiter = conn
        conn.park(req)
        self._maybe_ready()
        self._pump()


def _error_body(raw: bytes, header_type: str | None, *, insert_type: bool = False) -> tuple[bytes, str]:
    """(body, errorType) for an error report: header type, else the body's errorType, else Unhandled.

    A body that is not a JSON object becomes {"errorMessage": <text>, "errorType": T} so the caller
    always gets the AWS shape.
    """
    try:
        data = json.loads(raw) if raw else None
    except ValueError:
        data = None
    if isinstance(data, dict):
        body_type = data.get("errorType")
        error_type = header_type or (body_type if isinstance(body_type, str) and body_type else "Unhandled")
        if insert_type and not (isinstance(body_type, str) and body_type):
            data["errorType"] = error_type
            return _json(data), error_type
        return raw, error_type
    error_type = header_type or "Unhandled"
    return _err(error_type, raw.decode("utf-8", "replace")), error_type
