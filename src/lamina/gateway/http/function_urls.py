"""The function URL gateway: plain HTTP requests in, payload 2.0 invocations through the dispatcher
(HTTP-app functions: the request itself, proxied to the function's web server by http_apps.py).

A request is a function-URL request when its Host is `<url-id>.lambda-url.<anything>` or its path
starts with `/lamina/v1/url/<url-id>/` (the function then sees the rest of the path). Like Invoke,
this runs as a bare ASGI callable, routed by the front door (front_door.py) before the REST APIs, and
never touches the database: the URL configurations are functions/urls.py's, read from memory.

AuthType AWS_IAM URLs take only SigV4-signed requests (request_auth.py) from callers the function's resource policy
allows (or of its own account); anything else is 403 Forbidden. They are always served here, never by the hot path.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson
from starlette.types import Message, Receive, Scope, Send

from lamina.auth.sigv4 import SignatureError
from lamina.dispatch import ids
from lamina.dispatch.http_app.pool import HttpAppPool
from lamina.dispatch.invocation import Invocation, InvokeResult
from lamina.functions.errors import AwsError
from lamina.functions.invoke import StreamedRun, check_tenant, ensure_invokable, run_sync
from lamina.functions.names import FunctionRef
from lamina.functions.registry import LATEST, is_per_tenant
from lamina.functions.rest import read_body
from lamina.functions.validation import tenant_id as tenant_id_header
from lamina.gateway.http.http_apps import Decorate, HttpAppProxy
from lamina.httpevent.event import build_event
from lamina.httpevent.response import BadResponse, HttpResponse, StreamStart, bodiless, map_response, stream_response

if TYPE_CHECKING:
    from lamina.dispatch.pool import FunctionPool
    from lamina.functions.registry import Function, FunctionService
    from lamina.functions.urls import FunctionUrl, FunctionUrlService
    from lamina.gateway.http.request_auth import RequestAuth

log = logging.getLogger("lamina.gateway")

PATH_PREFIX = b"/lamina/v1/url/"
HOST_MARK = b".lambda-url."
LIMIT = 6 * 1024 * 1024
_PROTOCOLS = {"1.1": "HTTP/1.1", "1.0": "HTTP/1.0"}
STREAM_CHUNK = 64 * 1024


def match(scope: Scope) -> tuple[str, bytes, str | None] | None:
    """(url id, the path the function sees, the Host's name if routed by host) for a function-URL request."""
    return match_parts(scope.get("raw_path") or scope["path"].encode(), scope["headers"])


def match_parts(raw_path: bytes, headers: list[tuple[bytes, bytes]]) -> tuple[str, bytes, str | None] | None:
    """match() from the raw path (no query) and the lower-cased header list."""
    for name, value in headers:
        if name == b"host":
            if HOST_MARK in value:
                host = value.rsplit(b":", 1)[0] if value.count(b":") == 1 else value
                return host.split(b".", 1)[0].decode("latin-1").lower(), raw_path, host.decode("latin-1").lower()
            break
    if raw_path.startswith(PATH_PREFIX):
        url_id, _, rest = raw_path[len(PATH_PREFIX):].partition(b"/")
        return url_id.decode("latin-1"), b"/" + rest, None
    return None


def message_response(status: int, message: str, request_id: str) -> HttpResponse:
    """A function URL's own answer (not the function's): AWS's {"Message"} JSON with the request id."""
    return HttpResponse(status, [(b"content-type", b"application/json"), (b"x-amzn-requestid", request_id.encode())],
                        orjson.dumps({"Message": message}))


@dataclass(slots=True, eq=False)
class UrlHead:
    """A function-URL request whose head is checked: the URL, the version it runs and its request details."""

    url: FunctionUrl
    fn: Function
    target: Function
    pool: FunctionPool | None         # the version's pool (an HTTP app's pool proxies instead)
    tenant_id: str | None
    path: bytes                       # the path the function sees
    host: str | None                  # the Host's name if routed by host
    request_id: str


class FunctionUrlGateway:
    """Function URLs as a bare ASGI callable, built from synchronous steps (head, invocation, respond,
    finish) that the HTTP hot path (gateway/http/fast_http.py) also calls directly from its parser callbacks."""

    def __init__(self, urls: FunctionUrlService, functions: FunctionService) -> None:
        self.urls = urls
        self.functions = functions
        self.dispatcher = functions.dispatcher
        self.settings = urls.settings
        self.http_apps = HttpAppProxy(self.dispatcher)
        # Strings the hot path would otherwise format per request.
        self._arns: dict[tuple[str, str | None], str] = {}  # (function, qualifier) -> ARN
        self._domains: dict[str, str] = {}                   # url id -> its domain name
        self.auth: RequestAuth | None = None                  # set by the front door; None: AWS_IAM URLs refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send, url_id: str, path: bytes,
                       host: str | None) -> None:
        request_id = ids.request_id()
        url = self.urls.by_id.get(url_id)
        try:
            if url is not None and url.auth_type == "AWS_IAM":
                receive = await self._signed(scope, receive, url, request_id)
            response, streamed = await self._handle(scope, receive, send, url, path, host, request_id)
        except AwsError as err:
            response, streamed = message_response(err.status, err.message, request_id), False
        except Exception:
            log.exception("function URL request failed")
            response, streamed = message_response(500, "Internal Server Error", request_id), False
        if response is None:
            return  # proxied to an HTTP app, which answered
        self.finish(url, response, scope["method"], scope["headers"])
        await self._send(send, response, streamed)

    async def _signed(self, scope: Scope, receive: Receive, url: FunctionUrl, request_id: str) -> Receive:
        """An AWS_IAM URL's request: SigV4-verified (with no keys configured, any signed request) and allowed by the
        function's resource policy for a caller of another account; the receive to read its body with, or AwsError
        403 Forbidden, as AWS answers (no detail)."""
        auth = self.auth
        forbidden = AwsError("AccessDeniedException", "Forbidden", 403)
        if auth is None:
            raise forbidden
        headers, query = scope["headers"], scope.get("query_string", b"")
        if auth.open:
            if _find(headers, b"authorization") is None and b"X-Amz-Signature=" not in query:
                raise forbidden
            return receive
        try:
            pending = auth.verifier.head(headers, query)
        except SignatureError:
            raise forbidden from None
        body = await read_body(receive, LIMIT)
        if body is None:
            raise AwsError("RequestTooLargeException", "Request Entity Too Large", 413)
        try:
            caller = auth.verify(pending, scope["method"], scope.get("raw_path") or scope["path"].encode(), query,
                                 headers, body)
        except SignatureError:
            raise forbidden from None
        if auth.may_invoke(caller, self.settings.account_id, url.function_name, url.qualifier or None,
                           via_url=True) is not None or not auth.url_identity_allows(caller, self.settings.account_id,
                                                                                     url.function_name):
            raise forbidden
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        return replay

    async def _handle(self, scope: Scope, receive: Receive, send: Send, url: FunctionUrl | None, path: bytes,
                      host: str | None, request_id: str) -> tuple[HttpResponse | None, bool]:
        head = self.head(scope["method"], scope["headers"], url, path, host, request_id, signed=True)
        if isinstance(head, HttpResponse):
            return head, False
        if head.pool is not None and head.pool.http_app is not None:
            return await self.proxy(head, scope, receive, send), False
        body = await read_body(receive, LIMIT)
        if body is None:
            return too_large_response(request_id), False
        client = scope.get("client") or ("127.0.0.1", 0)
        server = scope.get("server") or ("127.0.0.1", self.settings.port)
        inv = self.invocation(head, scope["method"], scope.get("query_string", b""), scope["headers"], body,
                              client[0], server[1], scope.get("scheme", "http"), scope.get("http_version", "1.1"))
        if isinstance(inv, HttpResponse):
            return inv, False
        if head.url.invoke_mode == "RESPONSE_STREAM":
            return await self._streamed(scope, send, head, inv)
        result = await run_sync(self.dispatcher, head.target.key, inv)
        return self.respond(head, result)

    async def proxy(self, head: UrlHead, scope: Scope, receive: Receive, send: Send) -> HttpResponse | None:
        """An HTTP app's request: to its web server as is (http_apps.py), no payload 2.0; returns an error response
        still to be sent, or None when it answered. Also run from the HTTP hot path (fast_http._AppExchange)."""
        ensure_invokable(head.target, self.dispatcher)
        pool = head.pool
        assert isinstance(pool, HttpAppPool)  # the callers checked that it is an HTTP app's (pool.http_app)
        return await self.http_apps.serve(
            scope, receive, send, pool=pool, key=head.target.key, path=head.path,
            url_id=head.url.url_id, domain=self.domain(head), arn=self.arn(head.url), request_id=head.request_id,
            decorate=_cors_decorator(scope, head.url))

    async def _streamed(self, scope: Scope, send: Send, head: UrlHead, inv: Invocation
                        ) -> tuple[HttpResponse | None, bool]:
        """A RESPONSE_STREAM invocation: what a custom runtime streams goes out as it comes once its head is known
        (httpevent.response.StreamStart; None: answered); anything else is answered whole, as respond() maps it."""
        run = StreamedRun(self.dispatcher, head.target.key, inv)
        kept = StreamStart()
        sending = False
        try:
            async for piece in run:
                if sending:
                    await send({"type": "http.response.body", "body": piece, "more_body": True})
                    continue
                if not kept.feed(piece):
                    continue
                response = kept.head
                assert response is not None  # feed() said the head is known
                if bodiless(scope["method"], response.status):
                    kept.keep_whole()  # no body to stream
                    continue
                response.headers.append((b"x-amzn-requestid", head.request_id.encode()))
                self.finish(head.url, response, scope["method"], scope["headers"])
                await send({"type": "http.response.start", "status": response.status, "headers": response.headers})
                sending = True
                rest = kept.rest()
                if rest:
                    await send({"type": "http.response.body", "body": rest, "more_body": True})
            result = run.result()
        finally:
            run.cancel()  # our caller went away (shutdown), if it is still running
        if sending:
            if result.error_type is None:
                await send({"type": "http.response.body", "body": b""})
            # else: the response stays incomplete, and the server cuts the connection (the function failed part way)
            return None, False
        if result.streamed:
            result = InvokeResult(kept.payload(), result.error_type, result.log, result.executed_version)
        return self.respond(head, result)

    def head(self, method: str, headers: list[tuple[bytes, bytes]], url: FunctionUrl | None, path: bytes,
             host: str | None, request_id: str, signed: bool = False) -> UrlHead | HttpResponse:
        """Everything checked before the body arrives: a response already, or the request to run; raises
        AwsError (answered as {"Message"} with its status). `signed`: an AWS_IAM URL's request passed _signed."""
        if url is None:
            return message_response(404, "Not Found", request_id)
        if url.auth_type == "AWS_IAM" and not signed:
            return message_response(403, "Forbidden", request_id)
        if url.cors and _is_preflight(method, headers):
            # The URL answers CORS preflights itself when it has a CORS configuration, as on AWS.
            return HttpResponse(200, [(b"x-amzn-requestid", request_id.encode())], b"")
        qualifier = url.qualifier or None
        fn = self.functions.functions.get(url.function_name)
        if fn is None or not (qualifier is None or qualifier in fn.versions or qualifier in fn.aliases
                              or qualifier == LATEST):
            fn = self.functions.get(FunctionRef(url.function_name), qualifier)  # its not-found error
        target = self.functions.pick(fn, qualifier)  # an alias's URL: its version, or a weighted pick
        # PER_TENANT functions: the caller names its tenant with X-Amz-Tenant-Id, as on Invoke.
        tenant_id = tenant_id_header(_find(headers, b"x-amz-tenant-id"))
        check_tenant(target, tenant_id)
        pool = self.dispatcher.pools.get(target.key)
        if pool is not None and pool.http_app is not None and is_per_tenant(target.config):
            raise AwsError("InvalidParameterValueException", "Lamina does not serve HTTP-app functions with tenant "
                           "isolation through function URLs.")
        return UrlHead(url, fn, target, pool, tenant_id, path, host, request_id)

    def invocation(self, head: UrlHead, method: str, query: bytes, headers: list[tuple[bytes, bytes]], body: bytes,
                   client_ip: str, server_port: int, scheme: str, http_version: str) -> Invocation | HttpResponse:
        """The payload 2.0 invocation for a handler function (not submitted yet), or the response that refuses it."""
        url = head.url
        extra = {"x-forwarded-for": client_ip, "x-forwarded-proto": scheme, "x-forwarded-port": str(server_port)}
        trace_id = _find(headers, b"x-amzn-trace-id")
        if trace_id is None:
            trace_id = extra["x-amzn-trace-id"] = ids.trace_id()
        domain = self.domain(head)
        event = build_event(method, head.path.decode("latin-1"), query.decode("latin-1"), headers, body, client_ip,
                            _PROTOCOLS.get(http_version) or f"HTTP/{http_version}", extra, url.url_id, domain,
                            "anonymous", head.request_id)
        payload = orjson.dumps(event)
        if len(payload) > LIMIT:
            return too_large_response(head.request_id)
        ensure_invokable(head.target, self.dispatcher)
        return Invocation(head.request_id, payload, self.arn(url), sync=True, trace_id=trace_id,
                          tenant_id=head.tenant_id, keep_log=False)

    def domain(self, head: UrlHead) -> str:
        """The request's domain name: the Host it was routed by, else the URL's own."""
        domain = head.host
        if domain is None:
            url_id = head.url.url_id
            domain = self._domains.get(url_id)
            if domain is None:
                if len(self._domains) > 4096:
                    self._domains.clear()
                domain = self._domains[url_id] = self.urls.domain(url_id)
        return domain

    def arn(self, url: FunctionUrl) -> str:
        """The ARN invocations through the URL carry."""
        arn = self._arns.get((url.function_name, url.qualifier))
        if arn is None:
            if len(self._arns) > 4096:
                self._arns.clear()
            arn = self._arns[(url.function_name, url.qualifier)] = self.urls.function_arn(url)
        return arn

    @staticmethod
    def respond(head: UrlHead, result: InvokeResult) -> tuple[HttpResponse, bool]:
        """(the HTTP response for the function's result, whether it is streamed)."""
        request_id = head.request_id
        if result.error_type is not None:
            return message_response(502, "Internal Server Error", request_id), False
        streamed = head.url.invoke_mode == "RESPONSE_STREAM"
        try:
            response = stream_response(result.body) if streamed else map_response(result.body)
        except BadResponse as exc:
            log.info("function %s returned a response a function URL cannot send: %s", head.fn.name, exc)
            return message_response(502, "Internal Server Error", request_id), False
        if not streamed and len(response.body) > LIMIT:
            return message_response(502, "Internal Server Error", request_id), False
        response.headers.append((b"x-amzn-requestid", request_id.encode()))
        return response, streamed

    @staticmethod
    def finish(url: FunctionUrl | None, response: HttpResponse, method: str, headers: list[tuple[bytes, bytes]]
               ) -> None:
        """The URL's CORS configuration applied to a response about to be sent."""
        if url is not None and url.cors:
            _apply_cors(response, url.cors, _find(headers, b"origin"), _is_preflight(method, headers))

    async def _send(self, send: Send, response: HttpResponse, streamed: bool) -> None:
        headers = response.headers
        body = response.body
        if response.status in (204, 304) or 100 <= response.status < 200:
            body = b""
        if not streamed:
            headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        if not streamed:
            await send({"type": "http.response.body", "body": body})
            return
        # No content-length: the server sends chunked transfer encoding, each piece as it is ready.
        for start in range(0, len(body), STREAM_CHUNK):
            await send({"type": "http.response.body", "body": body[start : start + STREAM_CHUNK], "more_body": True})
        await send({"type": "http.response.body", "body": b""})


def too_large_response(request_id: str) -> HttpResponse:
    """413: the request (or the event made of it) is over the 6 MB a function URL takes."""
    return message_response(413, f"Request must be smaller than {LIMIT} bytes for the InvokeFunctionUrl operation",
                            request_id)


def _cors_decorator(scope: Scope, url: FunctionUrl) -> Decorate:
    """For a proxied response's headers: the URL's CORS configuration replaces the app's CORS headers."""
    def decorate(status: int, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        if not url.cors:
            return headers
        response = HttpResponse(status, headers, b"")
        _apply_cors(response, url.cors, _find(scope["headers"], b"origin"), False)
        return response.headers
    return decorate


def _is_preflight(method: str, headers: list[tuple[bytes, bytes]]) -> bool:
    return (method == "OPTIONS" and _find(headers, b"origin") is not None
            and _find(headers, b"access-control-request-method") is not None)


def _find(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


def _apply_cors(response: HttpResponse, cors: dict, origin: str | None, preflight: bool) -> None:
    """The URL's CORS configuration replaces whatever CORS headers the function sent."""
    response.headers = [(k, v) for k, v in response.headers if not k.startswith(b"access-control-")]
    if origin is None:
        return
    allowed = cors.get("AllowOrigins") or []
    if "*" in allowed:
        value = "*"
    elif origin in allowed:
        value = origin
    else:
        return
    h = response.headers
    h.append((b"access-control-allow-origin", value.encode()))
    if value != "*":
        h.append((b"vary", b"Origin"))
    if cors.get("AllowCredentials"):
        h.append((b"access-control-allow-credentials", b"true"))
    if cors.get("ExposeHeaders"):
        h.append((b"access-control-expose-headers", ",".join(cors["ExposeHeaders"]).encode()))
    if not preflight:
        return
    if cors.get("AllowMethods"):
        h.append((b"access-control-allow-methods", ",".join(cors["AllowMethods"]).encode()))
    if cors.get("AllowHeaders"):
        h.append((b"access-control-allow-headers", ",".join(cors["AllowHeaders"]).encode()))
    if cors.get("MaxAge") is not None:
        h.append((b"access-control-max-age", str(cors["MaxAge"]).encode()))
