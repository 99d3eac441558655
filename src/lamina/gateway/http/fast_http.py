"""The HTTP front door's hot path: Invoke and function-URL requests answered from the parser's callbacks.

uvicorn's httptools protocol, subclassed (passed to uvicorn as `Config(http=...)`). When a request's head
is complete and it is a synchronous-path request this module knows — `POST .../invocations` (Invoke) or a
function URL of a handler function — it is served without an ASGI scope, task, receive/send messages or
middleware: the body is collected in on_body, the invocation is submitted in on_message_complete, and the
response is written by the invocation's on_done callback, in the same loop iteration that delivered the
result. The steps themselves (validation, payload 2.0, error shapes, CORS) are the ones the ASGI handlers
use (api/invoke.py, gateway/http/function_urls.py), so both paths answer alike. A RESPONSE_STREAM URL's
response that a custom runtime streams goes out chunked as it comes (_UrlStream; the ASGI handler streams it
too). A function URL of an HTTP-app function, when the request's body is small (none, or a Content-Length up
to APP_BODY_MAX), runs the same proxy as the ASGI handler (FunctionUrlGateway.proxy) as a task, with a receive
and send on this connection (_AppExchange).

Everything else goes through uvicorn's own RequestResponseCycle to the ASGI app (front_door.py), unchanged: the
REST APIs, streaming invokes, HTTP-app requests with a larger or chunked body (streamed to the app), WebSocket
upgrades, requests with `Expect: 100-continue`, requests pipelined behind an unfinished one, and anything that
is not origin-form.
Graceful shutdown works as for ASGI requests: a hot-path request in flight holds its connection open until
its response is written (uvicorn waits for connections), with keep-alive turned off.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING
from urllib.parse import unquote

from starlette.types import Message
from uvicorn.middleware.proxy_headers import _TrustedHosts
from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)

from lamina.auth import errors as auth_errors
from lamina.auth.sigv4 import Pending, SignatureError
from lamina.dispatch import ids
from lamina.dispatch.invocation import InvokeResult, Throttled
from lamina.functions import invoke as invoke_path
from lamina.functions.errors import AwsError
from lamina.functions.invoke import Head, InvokeHandler, Prepared, submit, throttled
from lamina.functions.names import acting_account
from lamina.gateway.http import microvm_proxy
from lamina.gateway.http.function_urls import (
    LIMIT,
    STREAM_CHUNK,
    FunctionUrlGateway,
    UrlHead,
    match_parts,
    message_response,
    too_large_response,
)
from lamina.httpevent.response import HttpResponse, StreamStart, bodiless

if TYPE_CHECKING:
    from lamina.functions.urls import FunctionUrl
    from lamina.gateway.http.front_door import AccountDoor, FrontDoor

log = logging.getLogger("lamina.gateway")

_INVOKE_PREFIX = invoke_path.PREFIX.encode()
_INVOKE_SUFFIX = invoke_path.SUFFIX.encode()
_URL_MARKS = (b".lambda-url.", b"/lamina/v1/url/")
_MICROVM_HOST, _MICROVM_PATH = microvm_proxy.HOST_MARK, microvm_proxy.PATH_PREFIX
# HTTP-app requests with a body up to this size are proxied from the hot path, once the body is in (_AppExchange).
APP_BODY_MAX = 64 * 1024
_ACCEPTED_LINE = STATUS_LINE[202]
_SERVER_ERROR = (b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain; charset=utf-8\r\n"
                 b"content-length: 21\r\nconnection: close\r\n\r\nInternal Server Error")


class _Cycle:
    """One hot-path request in flight. Stands in for uvicorn's RequestResponseCycle in the attributes the
    protocol reads from its current cycle (response_complete, keep_alive, disconnected, message_event)."""

    __slots__ = ("proto", "method", "headers", "query", "request_id", "keep_alive", "response_complete",
                 "disconnected", "parts", "size", "limit", "head", "url_head", "stream", "app",
                 "waiter", "signed", "path", "deferred", "door", "gateway")

    def __init__(self, proto: LaminaHttpProtocol, method: str, headers: list[tuple[bytes, bytes]], query: bytes,
                 keep_alive: bool, request_id: str) -> None:
        self.proto = proto
        self.method = method
        self.headers = headers
        self.query = query
        self.request_id = request_id
        self.keep_alive = keep_alive
        self.response_complete = False
        self.disconnected = False
        self.parts: list[bytes] = []
        self.size = 0
        self.limit = 0
        self.head: Head | None = None              # Invoke
        self.url_head: UrlHead | None = None       # function URL
        self.stream: _UrlStream | None = None      # a RESPONSE_STREAM function URL's response
        self.app: _AppExchange | None = None       # an HTTP-app function's request, proxied
        self.waiter: asyncio.Future | None = None  # _AppExchange.receive, waiting for the client to go away
        self.signed: Pending | None = None         # Invoke with keys configured: the signature to check
        self.path = b""
        self.deferred: AwsError | None = None      # Invoke's error, answered once the signature is known good
        self.door: AccountDoor | None = None       # Invoke of an account other than the server's own
        self.gateway: FunctionUrlGateway | None = None  # function URL: the gateway of the URL's account

    @property
    def message_event(self) -> _Cycle:
        return self  # connection_lost() calls message_event.set()

    def set(self) -> None:
        # The client went away (uvicorn's connection_lost), or the response is complete.
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __call__(self, error: BaseException | None) -> None:
        """An Event invoke's answer from the async queue (InvokeHandler.accept_event's `done`): the cycle itself
        is the callback, no partial per request. The usual answer, a 202 to a client still there, is written here
        (what _event_done does, in fewer calls: once per accepted event); anything else by _event_done."""
        proto = self.proto
        if error is None and not (self.response_complete or self.disconnected):
            transport = proto.transport
            if not transport.is_closing():
                self.response_complete = True
                try:
                    cls = type(proto)
                    defaults = cls._defaults if cls._defaults_for is proto.server_state.default_headers \
                        else proto._default_headers()
                    transport.write(b"%b%bx-amzn-requestid: %b\r\ncontent-length: 0\r\n%b\r\n" % (
                        _ACCEPTED_LINE, defaults, self.request_id.encode(),
                        b"" if self.keep_alive else b"connection: close\r\n"))
                    proto._sent(self)
                except Exception:
                    log.exception("hot-path response failed")
                    proto._fail(self)
                return
        proto._event_done(self, error)


class _UrlStream:
    """The response of a RESPONSE_STREAM function URL while a custom runtime streams it (Invocation.stream): held
    until its head is known (httpevent.response.StreamStart), then written out piece by piece (chunked) as it
    comes. When only the whole response can tell (JSON without a prelude), or there is to be no body (HEAD, 204,
    304), it is kept and answered at the end like a buffered one."""

    __slots__ = ("proto", "cycle", "url", "kept", "sending")

    def __init__(self, proto: LaminaHttpProtocol, cycle: _Cycle, url: FunctionUrl) -> None:
        self.proto = proto
        self.cycle = cycle
        self.url = url
        self.kept = StreamStart()
        self.sending = False       # the head is out: pieces go straight to the client

    def piece(self, data: bytes) -> None:
        if self.sending:
            self.proto._write_chunk(self.cycle, data)
            return
        kept = self.kept
        if not kept.feed(data):
            return
        head = kept.head
        assert head is not None  # feed() said the head is known
        if not self.proto._stream_head(self.cycle, self.url, head):
            kept.keep_whole()
            return
        self.sending = True
        rest = kept.rest()
        if rest:
            self.proto._write_chunk(self.cycle, rest)

    def payload(self) -> bytes:
        return self.kept.payload()


class _AppExchange:
    """An HTTP-app function's request with at most a small body (APP_BODY_MAX, Content-Length), proxied from the hot
    path once it has arrived whole: FunctionUrlGateway.proxy runs as a task with an ASGI receive and send written
    against this connection rather than uvicorn's request cycle (no scope, middleware or app routing per request),
    and the response head goes out together with the first piece of the body when that is already there (one
    write, not two)."""

    __slots__ = ("proto", "cycle", "body", "received", "started", "pending", "flush", "chunked", "bodiless")

    def __init__(self, proto: LaminaHttpProtocol, cycle: _Cycle) -> None:
        self.proto = proto
        self.cycle = cycle
        self.body = b""
        self.received = False
        self.started = False       # the response head is written, or waits in `pending` to be
        self.pending = b""         # the head, until the first piece of body (or the next loop turn)
        self.flush: asyncio.Handle | None = None
        self.chunked = False
        self.bodiless = False

    async def receive(self) -> Message:
        cycle = self.cycle
        if not self.received:
            self.received = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        if not (cycle.disconnected or cycle.response_complete):
            cycle.waiter = asyncio.get_running_loop().create_future()
            await cycle.waiter
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        proto, cycle = self.proto, self.cycle
        if proto.flow.write_paused and not cycle.disconnected:
            await proto.flow.drain()  # back-pressure: the client reads slower than the app writes
        if cycle.disconnected or cycle.response_complete:
            return
        if message["type"] == "http.response.start":
            self.pending = self._head(message["status"], message.get("headers", []))
            self.started = True
            self.flush = proto.loop.call_soon(self._flush)
            return
        body = message.get("body", b"")
        more = message.get("more_body", False)
        if self.bodiless:
            body = b""
        elif body and self.chunked:
            body = b"%x\r\n%b\r\n" % (len(body), body)
        if not more and self.chunked:
            body += b"0\r\n\r\n"
        flush = self.flush
        if flush is not None:  # the head waits in `pending`: it goes out with this piece, in one write
            flush.cancel()
            self.flush = None
            body = self.pending + body
            self.pending = b""
        if body:
            proto.transport.write(body)
        if not more and proto._claim(cycle):
            proto._sent(cycle)
            cycle.set()

    def _flush(self) -> None:
        """The head alone, when no body followed it at once (the app is still producing it)."""
        self.flush = None
        if self.pending and not (self.cycle.disconnected or self.cycle.response_complete):
            self.proto.transport.write(self.pending)
        self.pending = b""

    def _head(self, status: int, headers: list[tuple[bytes, bytes]]) -> bytes:
        """The response head as uvicorn would write it; a header it would refuse fails the request (a 502, as
        the proxy answers any response from the app it cannot pass on)."""
        cycle = self.cycle
        out = [STATUS_LINE[status], self.proto._default_headers()]
        length = False
        for name, value in headers:
            if HEADER_RE.search(name) or HEADER_VALUE_RE.search(value):
                raise ValueError(f"invalid response header {name!r}")
            name = name.lower()
            if name == b"content-length":
                length = True
            elif name == b"connection" and b"close" in value.lower():
                cycle.keep_alive = False
                continue
            out += (name, b": ", value, b"\r\n")
        self.bodiless = cycle.method == "HEAD" or status in (204, 304)
        if not length and not self.bodiless:
            self.chunked = True
            out.append(b"transfer-encoding: chunked\r\n")
        if not cycle.keep_alive:
            out.append(b"connection: close\r\n")
        out.append(b"\r\n")
        return b"".join(out)


class LaminaHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with Lamina's hot path in front of the ASGI app (see the module docstring).
    Subclassed per server by protocol_for(app), which sets `lamina`."""

    lamina: FrontDoor
    # uvicorn declares its current cycle as a RequestResponseCycle, but holds None until the first request (its
    # own __init__ ignores that); a hot-path request's cycle is a _Cycle, standing in for uvicorn's.
    cycle: RequestResponseCycle | _Cycle | None  # type: ignore[assignment]
    # uvicorn's own check of who may send X-Forwarded-* (its proxy-headers middleware's), so that the hot path and
    # the ASGI path read them alike (_peer). A private name, as is much of what this class uses of uvicorn's:
    # pyproject.toml holds uvicorn to the range tested (tests/unit/test_hot_path_protocol.py compares the paths).
    _trusted: _TrustedHosts | None = None
    # When this idle keep-alive connection is to be closed (loop time); 0.0 while a request is arriving or in
    # flight. See _keep_alive_check.
    _idle_deadline = 0.0
    # server_state.default_headers as bytes, and the list they were made from (see _default_headers).
    _defaults = b""
    _defaults_for: object = None

    # ------------------------------------------------------------------ keep-alive timeout

    # uvicorn arms a fresh call_later after every response and cancels it when the next request's bytes arrive:
    # a timer created and cancelled per request. Here one timer per connection re-arms itself: a response sets
    # the deadline (and arms the timer only if none is armed), arriving bytes clear it; when the timer fires it
    # closes a connection idle past the deadline, re-arms for a later deadline, or stops while a request is under
    # way (the next response arms it again). Same behaviour, no timer per request.

    def _unset_keepalive_if_required(self) -> None:
        self._idle_deadline = 0.0

    def on_response_complete(self) -> None:
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            self._idle_deadline = 0.0
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
            return
        self._idle_deadline = self.loop.time() + self.timeout_keep_alive
        if self.timeout_keep_alive_task is None:
            self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self._keep_alive_check)

    def _keep_alive_check(self) -> None:
        self.timeout_keep_alive_task = None
        deadline = self._idle_deadline
        if not deadline:
            return  # a request is under way
        left = deadline - self.loop.time()
        if left > 0:
            self.timeout_keep_alive_task = self.loop.call_later(left, self._keep_alive_check)
            return
        self.timeout_keep_alive_handler()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = None

    # ------------------------------------------------------------------ parser callbacks

    def on_message_begin(self) -> None:
        # uvicorn builds the request's ASGI scope here; a hot-path request never needs one, so it is built
        # in on_headers_complete only for a request that goes to the ASGI app.
        self.url = b""
        self.expect_100_continue = False
        self.headers = []
        # No scope until _asgi_scope builds one; uvicorn's HTTPScope annotation leaves out the None its own
        # __init__ stores too.
        self.scope = None  # type: ignore[assignment]

    def _asgi_scope(self) -> None:
        url, headers, expect = self.url, self.headers, self.expect_100_continue
        super().on_message_begin()
        self.url, self.headers, self.expect_100_continue = url, headers, expect
        self.scope["headers"] = headers

    def on_headers_complete(self) -> None:
        cycle = self.cycle
        if (cycle is None or cycle.response_complete) and not self.expect_100_continue:
            try:
                if self._hot_start():
                    return
            except Exception:
                log.exception("hot-path request failed")
                self._fail()
                return
        self._asgi_scope()
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        cycle = self.cycle
        if type(cycle) is not _Cycle:
            super().on_body(body)
            return
        if cycle.response_complete:
            return  # answered early (an error before the body): the rest is read and dropped
        cycle.size += len(body)
        if cycle.size > cycle.limit:
            cycle.parts = []
            if cycle.head is not None or cycle.deferred is not None:
                operation = cycle.head.operation if cycle.head is not None else "Invoke"
                err = AwsError("RequestTooLargeException",
                               f"Request must be smaller than {cycle.limit} bytes for the {operation} operation")
                self._send_error(cycle, err)
            else:
                self._url_response(cycle, too_large_response(cycle.request_id), False)
            return
        cycle.parts.append(body)

    def on_message_complete(self) -> None:
        cycle = self.cycle
        if type(cycle) is not _Cycle:
            super().on_message_complete()
            return
        if cycle.response_complete:
            return
        parts = cycle.parts
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        cycle.parts = []
        try:
            if cycle.head is not None or cycle.deferred is not None:
                self._invoke_body(cycle, cycle.head, body)
                return
            url_head = cycle.url_head
            assert url_head is not None  # a hot-path request is an Invoke or a function URL's
            if cycle.app is not None:
                cycle.app.body = body
                task = self.loop.create_task(self._app_proxy(cycle, url_head, cycle.app))
                self.tasks.add(task)  # uvicorn's shutdown waits for these, as for its own request tasks
                task.add_done_callback(self.tasks.discard)
            else:
                self._url_body(cycle, url_head, body)
        except Exception:
            log.exception("hot-path request failed")
            self._fail(cycle)

    # ------------------------------------------------------------------ routing

    def _hot_start(self) -> bool:
        """Serve this request on the hot path if it is one; False leaves it to the ASGI app."""
        url = self.url
        if url[:1] != b"/" or self.parser.should_upgrade():
            return False
        path, _, query = url.partition(b"?")
        headers = self.headers
        method = self.parser.get_method()
        host = b""
        for name, value in headers:
            if name == b"host":
                host = value  # the first one, as the routers read it
                break
        if (_MICROVM_HOST in host or path.startswith(_MICROVM_PATH)) and self._routed_first(method, path, query,
                                                                                           headers):
            return False
        if method == b"POST" and path.startswith(_INVOKE_PREFIX) and path.endswith(_INVOKE_SUFFIX):
            raw_name = invoke_path.match(path.decode("latin-1"))
            if raw_name is None:
                return False
            cycle = self._new_cycle("POST", query)
            auth = getattr(self.lamina, "auth", None)  # a stand-in front door (tests) may have none
            if auth is not None:  # keys configured: the signature's head first, before anything about the function
                try:
                    cycle.signed = auth.verifier.head(headers, query)
                except SignatureError as err:
                    self._write(cycle, *auth_errors.render(err, headers), checked=True)
                    return True
                cycle.path = path
            handler = self.lamina.invoke
            if not getattr(self.lamina, "single", True):  # accounts: the invoke handler of the function's account
                door = cycle.door = self.lamina.invoke_door(cycle.signed, raw_name)
                handler = door.invoke
            try:
                if cycle.door is None:
                    invoke_head = handler.head("POST", "", _amz_headers(headers), query, raw_name)
                else:
                    with acting_account(cycle.door.account):
                        invoke_head = handler.head("POST", "", _amz_headers(headers), query, raw_name)
            except AwsError as err:
                if auth is None:
                    self._send_error(cycle, err)
                    return True
                cycle.deferred = err  # a wrong signature must not learn whether the function exists
                cycle.limit = invoke_path.SYNC_LIMIT
                return True
            cycle.head = invoke_head
            cycle.limit = invoke_head.limit
            return True
        gateway = self.lamina.gateway
        if gateway is None:
            return False
        url_host: str | None  # the Host's name when routed by host
        if _URL_MARKS[0] in host:
            matched = match_parts(path, headers)  # routed by host (the rarer form): its parsing
            if matched is None:
                return False
            url_id, fn_path, url_host = matched
        elif path.startswith(_URL_MARKS[1]):
            url_id_raw, _, rest = path[len(_URL_MARKS[1]) :].partition(b"/")
            url_id, fn_path, url_host = url_id_raw.decode("latin-1"), b"/" + rest, None
        else:
            return False
        method_name = method.decode("ascii")
        request_id = ids.request_id()
        if not getattr(self.lamina, "single", True):
            gateway = self.lamina.url_gateway(url_id)   # the gateway of the account that has it
            assert gateway is not None
        url_obj = gateway.urls.by_id.get(url_id)
        if url_obj is not None and url_obj.auth_type == "AWS_IAM":
            return False  # signed URL requests are verified over the whole body by the ASGI handler
        try:
            url_head = gateway.head(method_name, headers, url_obj, fn_path, url_host, request_id)
        except AwsError as err:
            url_head = message_response(err.status, err.message, request_id)
        if isinstance(url_head, HttpResponse):
            cycle = self._new_cycle(method_name, query, request_id)
            FunctionUrlGateway.finish(url_obj, url_head, method_name, headers)
            self._send_url(cycle, url_head, False, url_obj is None or not url_obj.cors)
            return True
        if url_head.pool is not None and url_head.pool.http_app is not None:
            if not _small_body(headers):
                return False  # a larger body streams to the app through the ASGI handler (http_apps.py)
            cycle = self._new_cycle(method_name, query, request_id)
            cycle.url_head = url_head
            cycle.gateway = gateway
            cycle.app = _AppExchange(self, cycle)
            cycle.limit = APP_BODY_MAX
            return True
        cycle = self._new_cycle(method_name, query, request_id)
        cycle.url_head = url_head
        cycle.gateway = gateway
        cycle.limit = LIMIT
        return True

    def _routed_first(self, method: bytes, path: bytes, query: bytes, headers: list[tuple[bytes, bytes]]) -> bool:
        """Whether the ASGI app routes this request somewhere before Invoke and function URLs (the MicroVM
        endpoint proxy takes any path on its hosts and its own path prefix: the caller checked that the request
        has one of these, what match() needs)."""
        if getattr(self.lamina, "microvm_proxy", None) is None:
            return False
        scope = {"type": "http", "method": method.decode("ascii"), "raw_path": path, "path": path.decode("latin-1"),
                 "query_string": query, "headers": headers}
        return microvm_proxy.match(scope) is not None

    def _new_cycle(self, method: str, query: bytes, request_id: str | None = None) -> _Cycle:
        keep_alive = self.parser.should_keep_alive() and self.parser.get_http_version() != "1.0"
        cycle = _Cycle(self, method, self.headers, query, keep_alive, request_id or ids.request_id())
        self.cycle = cycle
        return cycle

    # ------------------------------------------------------------------ Invoke

    def _invoke_body(self, cycle: _Cycle, head: Head | None, body: bytes) -> None:
        handler: InvokeHandler = self.lamina.invoke
        auth = getattr(self.lamina, "auth", None)  # a stand-in front door (tests) may have none
        if auth is not None:
            try:
                caller = auth.verify(cycle.signed, "POST", cycle.path, cycle.query, cycle.headers, body)
            except SignatureError as err:
                self._write(cycle, *auth_errors.render(err, cycle.headers), checked=True)
                return
            if caller.policy is not None:   # its key's or role's identity policy: may it invoke this?
                refused_by = auth.identity_refusal(caller, "POST", unquote(cycle.path.decode("latin-1")),
                                                   cycle.query, cycle.headers, body, "lambda")
                if refused_by is not None:
                    status, error_headers, error_body = refused_by
                    self._write(cycle, status, error_headers, error_body, checked=True)
                    return
            # A caller of another account than the function's: decided before anything about the function shows.
            if caller.account != auth.owner or cycle.door is not None:
                raw_name = invoke_path.match(cycle.path.decode("latin-1")) or ""
                account, refused = auth.invoke_account(caller, raw_name, cycle.query)
                if refused is not None:
                    self._send_error(cycle, refused)
                    return
                door = cycle.door
                if door is None or door.account != account:
                    self._send_error(cycle, AwsError("AccessDeniedException", "", 403))
                    return
                with acting_account(account):
                    self._invoke_run(cycle, head, body, door.invoke)
                return
        self._invoke_run(cycle, head, body, handler)

    def _invoke_run(self, cycle: _Cycle, head: Head | None, body: bytes, handler: InvokeHandler) -> None:
        if head is None:   # Invoke's own error (deferred only with keys), kept until the signature was known good
            self._send_error(cycle, cycle.deferred or AwsError("ServiceException", "Invoke without a head"))
            return
        try:
            if head.invocation_type == "Event":
                handler.accept_event(head, body, cycle.request_id, cycle)   # body() and start() in one
                return
            p = handler.body(head, body)
            started = handler.start(p, cycle.request_id, lambda outcome: self._invoke_done(cycle, p, outcome))
        except AwsError as err:
            self._send_error(cycle, err)
            return
        if isinstance(started, tuple):
            self._send_invoke(cycle, *started)

    def _event_done(self, cycle: _Cycle, error: BaseException | None) -> None:
        """An Event invoke is committed to the async queue (202, InvokeHandler.respond's answer), or could not be."""
        try:
            if error is None:
                if self._claim(cycle):
                    self.transport.write(b"%b%bx-amzn-requestid: %b\r\ncontent-length: 0\r\n%b\r\n" % (
                        _ACCEPTED_LINE, self._default_headers(), cycle.request_id.encode(),
                        b"" if cycle.keep_alive else b"connection: close\r\n"))
                    self._sent(cycle)
            else:
                self._send_error(cycle, error if isinstance(error, AwsError)
                                 else AwsError("ServiceException", f"Internal error: {error}"))
        except Exception:
            log.exception("hot-path response failed")
            self._fail(cycle)

    def _invoke_done(self, cycle: _Cycle, p: Prepared, outcome: InvokeResult | BaseException) -> None:
        try:
            if isinstance(outcome, InvokeResult):
                self._send_invoke(cycle, *InvokeHandler.respond(p, outcome))
            elif isinstance(outcome, Throttled):
                self._send_error(cycle, throttled(outcome))
            else:
                self._send_error(cycle, AwsError("ServiceException", f"Internal error: {outcome}"))
        except Exception:
            log.exception("hot-path response failed")
            self._fail(cycle)

    def _send_invoke(self, cycle: _Cycle, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        headers.append((b"x-amzn-requestid", cycle.request_id.encode()))
        headers.append((b"content-length", str(len(body)).encode()))
        self._write(cycle, status, headers, body, checked=True)

    def _send_error(self, cycle: _Cycle, err: AwsError) -> None:
        status, headers, body = err.render(cycle.request_id)
        self._write(cycle, status, headers, body, checked=True)

    # ------------------------------------------------------------------ function URLs

    def _url_body(self, cycle: _Cycle, head: UrlHead, body: bytes) -> None:
        gateway = cycle.gateway
        assert gateway is not None  # it made the UrlHead (_hot_start)
        client, server, scheme = self._peer(cycle.headers)
        try:
            inv = gateway.invocation(head, cycle.method, cycle.query, cycle.headers, body, client, server, scheme,
                                     self.parser.get_http_version())
            if isinstance(inv, HttpResponse):
                self._url_response(cycle, inv, False)
                return
            inv.on_done = lambda outcome: self._url_done(cycle, head, outcome)
            url = head.url
            if url.invoke_mode == "RESPONSE_STREAM":
                cycle.stream = _UrlStream(self, cycle, url)
                inv.stream = cycle.stream.piece  # what a custom runtime streams goes out as it comes
            # BUFFERED, no CORS to apply: a Python runtime may send the response mapped (see _url_done).
            inv.http = cycle.stream is None and not url.cors
            submit(gateway.dispatcher, head.target.key, inv)
        except AwsError as err:
            self._url_response(cycle, message_response(err.status, err.message, cycle.request_id), False)

    async def _app_proxy(self, cycle: _Cycle, head: UrlHead, exchange: _AppExchange) -> None:
        """Proxy an HTTP-app request (see _AppExchange), answering errors as the ASGI handler does."""
        gateway = cycle.gateway
        assert gateway is not None  # it made the UrlHead (_hot_start)
        client, server_port, scheme = self._peer(cycle.headers)
        scope = {"method": cycle.method, "headers": cycle.headers, "query_string": cycle.query,
                 "client": (client, 0), "server": ("", server_port), "scheme": scheme,
                 "http_version": self.parser.get_http_version()}
        try:
            error = await gateway.proxy(head, scope, exchange.receive, exchange.send)
        except AwsError as err:
            error = message_response(err.status, err.message, cycle.request_id)
        except Exception:
            log.exception("proxying an HTTP-app request failed")
            error = message_response(500, "Internal Server Error", cycle.request_id)
        if exchange.flush is not None:
            exchange.flush.cancel()
            exchange._flush()
        if error is not None and not exchange.started:
            self._url_response(cycle, error, False)
        elif not cycle.response_complete:
            # The response stopped part way (the app failed or timed out): a cut connection says so.
            cycle.response_complete = True
            cycle.set()
            self.transport.close()

    def _url_done(self, cycle: _Cycle, head: UrlHead, outcome: InvokeResult | BaseException) -> None:
        try:
            stream = cycle.stream
            if stream is not None:
                if stream.sending:  # the head and some of the body are out: end the stream
                    self._stream_end(cycle, outcome.__class__ is InvokeResult and outcome.error_type is None)
                    return
                if outcome.__class__ is InvokeResult and outcome.streamed:  # answered whole after all
                    outcome = InvokeResult(stream.payload(), outcome.error_type, outcome.log,
                                           outcome.executed_version)
            if outcome.__class__ is InvokeResult and outcome.http is not None and outcome.error_type is None \
                    and len(outcome.body) <= LIMIT:
                self._write_block(cycle, outcome.http[0], outcome.http[1], outcome.body)
                return
            if isinstance(outcome, InvokeResult):
                response, streamed = FunctionUrlGateway.respond(head, outcome)
            elif isinstance(outcome, Throttled):
                err = throttled(outcome)
                response, streamed = message_response(err.status, err.message, cycle.request_id), False
            else:
                response, streamed = message_response(500, "Internal Server Error", cycle.request_id), False
            self._url_response(cycle, response, streamed)
        except Exception:
            log.exception("hot-path response failed")
            self._fail(cycle)

    def _url_response(self, cycle: _Cycle, response: HttpResponse, streamed: bool) -> None:
        url = cycle.url_head.url if cycle.url_head else None
        FunctionUrlGateway.finish(url, response, cycle.method, cycle.headers)
        self._send_url(cycle, response, streamed, url is None or not url.cors)

    def _send_url(self, cycle: _Cycle, response: HttpResponse, streamed: bool, checked: bool) -> None:
        """As FunctionUrlGateway._send does through uvicorn: Content-Length, or chunked when streamed. `checked`:
        no header needs uvicorn's check — the function's were checked as httpevent/response.py mapped them (the same
        characters refused), the rest are Lamina's; a URL's CORS headers are checked here."""
        body = response.body
        status = response.status
        if status in (204, 304) or 100 <= status < 200:
            body = b""
        headers = response.headers
        if not streamed:
            headers.append((b"content-length", str(len(body)).encode()))
            self._write(cycle, status, headers, body, checked)
        elif cycle.method == "HEAD" or status in (204, 304):
            self._write(cycle, status, headers, b"", checked)
        else:
            pieces = [b"%x\r\n%b\r\n" % (len(body[i : i + STREAM_CHUNK]), body[i : i + STREAM_CHUNK])
                      for i in range(0, len(body), STREAM_CHUNK)]
            pieces.append(b"0\r\n\r\n")
            headers.append((b"transfer-encoding", b"chunked"))
            self._write(cycle, status, headers, b"".join(pieces), checked)

    def _peer(self, headers: list[tuple[bytes, bytes]]) -> tuple[str, int, str]:
        """(client address, server port, scheme) as uvicorn's proxy-headers middleware would give them to the
        ASGI app (X-Forwarded-For / -Proto from a trusted client)."""
        client = self.client[0] if self.client else "127.0.0.1"
        server_port = self.server[1] if self.server and self.server[1] else self.config.port
        scheme: str = self.scheme or "http"  # X-Forwarded-Proto may also give "ws" or "wss"
        if self.config.proxy_headers and _forwarded(headers):
            trusted = type(self)._trusted
            if trusted is None:
                trusted = type(self)._trusted = _TrustedHosts(self.config.forwarded_allow_ips)
            if client in trusted:
                forwarded_for = [v for k, v in headers if k == b"x-forwarded-for"]
                proto = next((v for k, v in reversed(headers) if k == b"x-forwarded-proto"), None)
                if proto is not None and proto.decode("latin1").strip() in ("http", "https", "ws", "wss"):
                    scheme = proto.decode("latin1").strip()
                if forwarded_for:
                    host, _port = trusted.get_trusted_client_address(b", ".join(forwarded_for).decode("latin1"))
                    if host:
                        client = host
        return client, server_port, scheme

    # ------------------------------------------------------------------ writing

    def _write(self, cycle: _Cycle, status: int, headers: list[tuple[bytes, bytes]], body: bytes,
               checked: bool = False) -> None:
        """Write the whole response in one go and finish the cycle as uvicorn's would. `checked`: headers
        Lamina made itself (Invoke's), which need no validation; a function URL's come from the function."""
        if not self._claim(cycle):
            return
        transport = self.transport
        out = self._head(cycle, status, headers, checked)
        if out is None:
            # uvicorn refuses such a header with a 500 and a closed connection: so do we.
            transport.write(_SERVER_ERROR)
            transport.close()
            return
        if cycle.method != "HEAD":
            out.append(body)
        transport.write(b"".join(out))
        self._sent(cycle)

    def _head(self, cycle: _Cycle, status: int, headers: list[tuple[bytes, bytes]], checked: bool
              ) -> list[bytes] | None:
        """A response head's pieces (status line to the blank line); None if a header is one uvicorn refuses.
        `checked`: the headers need no validation (see _write)."""
        out = [STATUS_LINE[status], self._default_headers()]
        for name, value in headers:
            if not checked and (HEADER_RE.search(name) or HEADER_VALUE_RE.search(value)):
                log.error("hot-path response has an invalid header %r", name)
                return None
            out += (name, b": ", value, b"\r\n")
        if not cycle.keep_alive:
            out.append(b"connection: close\r\n")
        out.append(b"\r\n")
        return out

    def _write_block(self, cycle: _Cycle, status: int, block: bytes, body: bytes) -> None:
        """_write for a response whose headers are one checked block already (a runtime-mapped function-URL
        response, see InvokeResult.http), with Lamina's own request id and length."""
        if not self._claim(cycle):
            return
        if status in (204, 304) or status < 200 or cycle.method == "HEAD":
            length = 0 if status in (204, 304) or status < 200 else len(body)
            body = b""
        else:
            length = len(body)
        self.transport.write(b"%b%b%bx-amzn-requestid: %b\r\ncontent-length: %d\r\n%b\r\n%b" % (
            STATUS_LINE[status], self._default_headers(), block, cycle.request_id.encode(), length,
            b"" if cycle.keep_alive else b"connection: close\r\n", body))
        self._sent(cycle)

    def _stream_head(self, cycle: _Cycle, url: FunctionUrl, response: HttpResponse) -> bool:
        """Write the head of a streamed function-URL response (chunked); False if it is not to be streamed (no
        body to send, the client is gone, a header cannot be sent): then it is answered whole at the end."""
        if bodiless(cycle.method, response.status) or cycle.response_complete or cycle.disconnected \
                or self.transport.is_closing():
            return False
        FunctionUrlGateway.finish(url, response, cycle.method, cycle.headers)
        response.headers += ((b"x-amzn-requestid", cycle.request_id.encode()), (b"transfer-encoding", b"chunked"))
        # The function's headers were checked as stream_head mapped them; a URL's CORS headers are checked here.
        out = self._head(cycle, response.status, response.headers, not url.cors)
        if out is None:
            return False
        self.transport.write(b"".join(out))
        return True

    def _write_chunk(self, cycle: _Cycle, data: bytes) -> None:
        if not (cycle.response_complete or cycle.disconnected or self.transport.is_closing()):
            self.transport.write(b"%x\r\n%b\r\n" % (len(data), data))

    def _stream_end(self, cycle: _Cycle, ok: bool) -> None:
        """The end of a streamed response: the last chunk, or (the function failed part way) a closed connection,
        so that the client cannot take what it got for the whole response."""
        if not self._claim(cycle):
            return
        if ok:
            self.transport.write(b"0\r\n\r\n")
            self._sent(cycle)
        else:
            self.transport.close()

    def _claim(self, cycle: _Cycle) -> bool:
        """Mark the cycle answered; whether its response is still to be written (not answered already, the
        client still there)."""
        if cycle.response_complete:
            return False
        cycle.response_complete = True
        return not (cycle.disconnected or self.transport.is_closing())

    def _sent(self, cycle: _Cycle) -> None:
        """A response is written: close or keep alive, as uvicorn's cycle would."""
        if not cycle.keep_alive:
            self.transport.close()
        self.on_response_complete()

    def _default_headers(self) -> bytes:
        """uvicorn's default headers (server, date) as bytes: the server replaces the list once a second."""
        cls = type(self)
        current = self.server_state.default_headers
        if cls._defaults_for is not current:
            cls._defaults = b"".join(b"%b: %b\r\n" % (name, value) for name, value in current)
            cls._defaults_for = current
        return cls._defaults

    def _fail(self, cycle: _Cycle | None = None) -> None:
        """An unexpected error: 500 and close, as uvicorn does when an ASGI app raises."""
        if cycle is not None:
            if cycle.response_complete:
                return
            cycle.response_complete = True
        if not self.transport.is_closing():
            self.transport.write(_SERVER_ERROR)
            self.transport.close()


def _small_body(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether a request's body is announced, with no Transfer-Encoding, as at most APP_BODY_MAX bytes (or none)."""
    for name, value in headers:
        if name == b"transfer-encoding":
            return False
        if name == b"content-length":
            value = value.strip()
            if not value.isdigit() or len(value) > 9 or int(value) > APP_BODY_MAX:
                return False
    return True


def _forwarded(headers: list[tuple[bytes, bytes]]) -> bool:  # a loop, not any(): no generator per request
    for name, _ in headers:  # noqa: SIM110
        if name == b"x-forwarded-for" or name == b"x-forwarded-proto":
            return True
    return False


def _amz_headers(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """The request's X-Amz-* and X-Amzn-* headers, decoded: all that Invoke reads of them (InvokeHandler.head, body,
    Prepared); a header named twice keeps its last value, as a dict of all of them would."""
    out = {}
    for name, value in headers:
        if name[:5] == b"x-amz":
            out[name.decode("latin-1")] = value.decode("latin-1")
    return out


def protocol_for(app: FrontDoor) -> type[LaminaHttpProtocol]:
    """The protocol class uvicorn should use for this app (`uvicorn.Config(http=protocol_for(app))`)."""
    return type("LaminaHttpProtocol", (LaminaHttpProtocol,), {"lamina": app})
