"""Function-URL requests to HTTP-app functions: proxied to the app as raw HTTP/1.1 (dispatch/http_app/).

No payload 2.0 event, no base64 and no 6 MB limit: the request waits in the function's queue for a
slot on any ready environment (a Lease), then its head and body go to the app over one of that
environment's keep-alive connections while the response streams back, both directions at once and
with back-pressure (uvicorn pauses the client when the app reads slowly, and the app connection
pauses when the client does). Status, headers (repeated ones too, Set-Cookie) and body pass through;
hop-by-hop headers are dropped and the framing is Lamina's own on each side. Like the Lambda Web
Adapter, the app also gets `x-amzn-request-context` (the function URL's request context; a client's
own value is dropped) and `x-amzn-lambda-context`.

With AWS_LWA_ENABLE_COMPRESSION=true (buffered mode, as LWA) a response goes out gzipped, as it streams (each
piece flushed), when the client accepts gzip and the app did not encode it itself: not for images (SVG aside),
gRPC, server-sent events, HEAD requests, bodiless statuses, or a Content-Length under 32 bytes (LWA's
tower-http defaults). Content-Length is then dropped and `Vary: accept-encoding` added.

Failures: an app that cannot be reached or breaks the connection before answering gives 502, one
that exceeds the function's timeout 504; after the response has started the client connection is
cut, which is how HTTP says the body is incomplete. The client going away closes the app connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import orjson
from starlette.types import Receive, Scope, Send

from lamina.dispatch import ids
from lamina.dispatch.http_app.client import AppConnection, AppError
from lamina.dispatch.http_app.environment import Lease, SlotRequest
from lamina.dispatch.http_app.pool import HttpAppPool
from lamina.dispatch.invocation import InvokeResult
from lamina.functions.invoke import run_sync
from lamina.gateway.http.upstream_head import add_forwarded, connection_listed, request_head
from lamina.httpevent.event import clf_time
from lamina.httpevent.headers import HOP_BY_HOP
from lamina.httpevent.response import HttpResponse

if TYPE_CHECKING:
    from lamina.dispatch.dispatcher import Dispatcher

log = logging.getLogger("lamina.gateway")

_NOT_FORWARDED = HOP_BY_HOP | {b"content-length", b"expect", b"x-amzn-request-context", b"x-amzn-lambda-context",
                               b"x-forwarded-proto", b"x-forwarded-port"}

Decorate = Callable[[int, list[tuple[bytes, bytes]]], list[tuple[bytes, bytes]]]


def _message(status: int, message: str, request_id: str) -> HttpResponse:
    return HttpResponse(status, [(b"content-type", b"application/json"), (b"x-amzn-requestid", request_id.encode())],
                        orjson.dumps({"Message": message}))


class _State:
    __slots__ = ("conn", "started", "request_sent", "client_gone")

    def __init__(self) -> None:
        self.conn: AppConnection | None = None
        self.started = False          # the response head went to the client
        self.request_sent = False     # the whole request body went to the app
        self.client_gone = False


class HttpAppProxy:
    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher

    async def serve(self, scope: Scope, receive: Receive, send: Send, *, pool: HttpAppPool, key: str,
                    path: bytes, url_id: str, domain: str, arn: str, request_id: str,
                    decorate: Decorate) -> HttpResponse | None:
        """Proxy one request; returns an error response still to be sent, or None when it answered."""
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        trace_id = next((v.decode("latin-1") for k, v in headers if k == b"x-amzn-trace-id"), None)
        inv = SlotRequest(request_id, b"", arn, sync=True,
                          trace_id=trace_id or ids.trace_id())
        # Waits for a free slot (429 when throttled): a SlotRequest resolves to a Lease, or to the InvokeResult of
        # a function that cannot run.
        granted: Lease | InvokeResult = await run_sync(self.dispatcher, key, inv)
        if not isinstance(granted, Lease):
            # The function cannot run (its init failed, or it was deleted meanwhile).
            log.info("function URL request for %s not served: %s", pool.spec.name, granted.body[:300])
            return _message(502, "Internal Server Error", request_id)
        lease = granted
        state = _State()
        try:
            async with asyncio.timeout(pool.spec.timeout_s):
                return await self._exchange(scope, receive, send, pool, lease, state, path, url_id, domain,
                                            inv.trace_id or "", request_id, decorate)
        except TimeoutError:
            lease.env.note(f"request {request_id} took longer than the function's timeout "
                           f"({pool.spec.timeout_s} s); its connection to the app was closed")
            return None if state.started else _message(504, "Gateway Timeout", request_id)
        except Exception:
            log.exception("proxying a function URL request to %s failed", pool.spec.name)
            return None if state.started else _message(502, "Internal Server Error", request_id)
        finally:
            lease.release()

    def _request_head(self, scope: Scope, pool: HttpAppPool, lease: Lease, path: bytes, url_id: str,
                      domain: str, trace_id: str, request_id: str) -> tuple[bytes, bool, bool]:
        """(request head, has a body, body is chunked)."""
        app = pool.http_app
        method: str = scope["method"]
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        listed = connection_listed(headers)
        auth_source = app.authorization_source.encode()
        if auth_source and not any(k == auth_source for k, _ in headers):
            auth_source = b""
        length: bytes | None = None
        chunked = False
        forwarded_for = None
        user_agent = b""
        out = []
        for name, value in headers:
            if name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            if name in _NOT_FORWARDED or name in listed:
                continue
            if name == b"x-forwarded-for":
                forwarded_for = value
                continue
            if name == b"user-agent":
                user_agent = value
            if auth_source:
                if name == b"authorization":
                    continue
                if name == auth_source:
                    name = b"authorization"
            out.append((name, value))
        client = scope.get("client") or ("127.0.0.1", 0)
        server = scope.get("server") or ("127.0.0.1", 0)
        add_forwarded(out, forwarded_for, client[0], scope.get("scheme", "http"))
        out.append((b"x-forwarded-port", str(server[1]).encode()))
        if not any(k == b"x-amzn-trace-id" for k, _ in out):
            out.append((b"x-amzn-trace-id", trace_id.encode()))
        if not any(k == b"host" for k, _ in out):
            out.append((b"host", domain.encode()))
        if app.base_path and (path == app.base_path.encode() or path.startswith(app.base_path.encode() + b"/")):
            path = path[len(app.base_path):] or b"/"
        now = time.time()
        context = {"accountId": "anonymous", "apiId": url_id, "domainName": domain, "domainPrefix": url_id,
                   "http": {"method": method, "path": path.decode("latin-1"),
                            "protocol": f"HTTP/{scope.get('http_version', '1.1')}", "sourceIp": client[0],
                            "userAgent": user_agent.decode("latin-1")},
                   "requestId": request_id, "routeKey": "$default", "stage": "$default", "time": clf_time(now),
                   "timeEpoch": int(now * 1000)}
        out.append((b"x-amzn-request-context", orjson.dumps(context)))
        out.append((b"x-amzn-lambda-context", lease.env.lambda_context(
            request_id, lease.inv.invoked_arn, trace_id, int((now + pool.spec.timeout_s) * 1000))))
        head, has_body = request_head(method, path, scope.get("query_string") or b"", out, length, chunked)
        return head, has_body, chunked

    async def _exchange(self, scope: Scope, receive: Receive, send: Send, pool: HttpAppPool, lease: Lease,
                        state: _State, path: bytes, url_id: str, domain: str, trace_id: str, request_id: str,
                        decorate: Decorate) -> HttpResponse | None:
        head, has_body, chunked = self._request_head(scope, pool, lease, path, url_id, domain, trace_id, request_id)
        head_only = scope["method"] == "HEAD"
        pump: asyncio.Task | None = None
        resp = None
        reused = False
        try:
            for attempt in range(2):
                try:
                    conn, reused = await lease.connect()
                    state.conn = conn
                    resp = conn.begin(head, head_only)
                    if pump is None:
                        pump = asyncio.get_running_loop().create_task(_pump(receive, state, has_body, chunked))
                    await resp.head()
                    break
                except AppError as exc:
                    if (attempt == 0 and reused and not has_body and resp is not None and not resp.received
                            and not state.client_gone):
                        continue  # a pooled connection the app had just closed: once more on a new one
                    if state.client_gone:
                        return None
                    lease.env.note(f"request {request_id}: {exc}")
                    return _message(502, "Internal Server Error", request_id)
            assert resp is not None  # the loop ends (break) once the response head is in
            listed = connection_listed(resp.headers)
            out = [(k, v) for k, v in resp.headers if k not in HOP_BY_HOP and k not in listed]
            if any(k == b"transfer-encoding" for k, _ in resp.headers):
                out = [(k, v) for k, v in out if k != b"content-length"]
            out.append((b"x-amzn-requestid", request_id.encode()))
            gzip = None
            if pool.http_app.compression and not head_only and _gzip_wanted(scope["headers"], resp.status, out):
                out = [(k, v) for k, v in out if k != b"content-length"]
                out += ((b"content-encoding", b"gzip"), (b"vary", b"accept-encoding"))
                gzip = zlib.compressobj(6, zlib.DEFLATED, 31)  # wbits 31: the gzip format
            out = decorate(resp.status, out)
            await send({"type": "http.response.start", "status": resp.status, "headers": out})
            state.started = True
            try:
                while (chunk := await resp.next_chunk()) is not None:
                    if gzip is not None:  # flushed per piece, so that a streamed response still streams
                        chunk = gzip.compress(chunk) + gzip.flush(zlib.Z_SYNC_FLUSH)
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except AppError as exc:
                if not state.client_gone:
                    lease.env.note(f"request {request_id}: {exc}; the client's connection was cut")
                return None  # the response stays incomplete: the server closes the client connection
            await send({"type": "http.response.body", "body": gzip.flush() if gzip is not None else b""})
            lease.done_with(conn, resp.keep_alive and state.request_sent and not conn.closed)
            state.conn = None
            return None
        finally:
            if pump is not None:
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pump


_NOT_GZIPPED = (b"image/", b"application/grpc", b"text/event-stream")


def _gzip_wanted(request_headers: list[tuple[bytes, bytes]], status: int,
                 response_headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether AWS_LWA_ENABLE_COMPRESSION gzips this response (LWA's tower-http defaults; see the module doc)."""
    if status < 200 or status in (204, 304) or not _accepts_gzip(request_headers):
        return False
    for name, value in response_headers:
        if name == b"content-encoding":
            return False
        if name == b"content-length" and value.strip().isdigit() and int(value) < 32:
            return False
        if name == b"content-type":
            ctype = value.split(b";", 1)[0].strip().lower()
            if ctype.startswith(_NOT_GZIPPED) and ctype != b"image/svg+xml":
                return False
    return True


def _accepts_gzip(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name != b"accept-encoding":
            continue
        for item in value.lower().split(b","):
            coding, _, params = item.partition(b";")
            if coding.strip() in (b"gzip", b"x-gzip"):
                q = params.strip()
                return not (q.startswith(b"q=") and q[2:].strip().rstrip(b"0").rstrip(b".") in (b"", b"0"))
    return False


async def _pump(receive: Receive, state: _State, has_body: bool, chunked: bool) -> None:
    """The client's body to the app as it arrives; then watch for the client going away."""
    try:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            body = message.get("body", b"")
            if body and has_body and state.conn is not None:
                await state.conn.write(b"%x\r\n%s\r\n" % (len(body), body) if chunked else body)
            if not message.get("more_body", False):
                if chunked and state.conn is not None:
                    await state.conn.write(b"0\r\n\r\n")
                state.request_sent = True
                while (await receive())["type"] != "http.disconnect":
                    pass
                break
    except AppError:
        return  # the app closed the connection: the response side reports it
    state.client_gone = True
    if state.conn is not None:
        state.conn.close()
