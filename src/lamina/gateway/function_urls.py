"""The function URL gateway: plain HTTP requests in, payload 2.0 invocations through the dispatcher
(HTTP-app functions: the request itself, proxied to the function's web server by http_apps.py).

A request is a function-URL request when its Host is `<url-id>.lambda-url.<anything>` or its path
starts with `/lamina/v1/url/<url-id>/` (the function then sees the rest of the path). Like Invoke,
this runs as a bare ASGI callable in front of the control plane's router and never touches the
database.

AuthType AWS_IAM URLs answer 403: Lamina does not verify SigV4 signatures on function URLs yet.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING

import orjson

from lamina.control.errors import AwsError
from lamina.control.functions import is_per_tenant
from lamina.control.invoke import check_tenant, ensure_invokable, read_body, run_sync
from lamina.control.names import FunctionRef
from lamina.control.validation import tenant_id as tenant_id_header
from lamina.dispatch.invocation import Invocation
from lamina.gateway.http_apps import HttpAppProxy
from lamina.gateway.payload import (
    BadResponse,
    HttpRequest,
    HttpResponse,
    map_response,
    request_event,
    stream_response,
)

if TYPE_CHECKING:
    from lamina.control.function_urls import FunctionUrl, FunctionUrlService
    from lamina.control.functions import FunctionService

log = logging.getLogger("lamina.gateway")

PATH_PREFIX = b"/lamina/v1/url/"
HOST_MARK = b".lambda-url."
LIMIT = 6 * 1024 * 1024
STREAM_CHUNK = 64 * 1024


def match(scope: dict) -> tuple[str, bytes, str | None] | None:
    """(url id, the path the function sees, the Host's name if routed by host) for a function-URL request."""
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
    for name, value in scope["headers"]:
        if name == b"host":
            if HOST_MARK in value:
                host = value.rsplit(b":", 1)[0] if value.count(b":") == 1 else value
                return host.split(b".", 1)[0].decode("latin-1").lower(), raw_path, host.decode("latin-1").lower()
            break
    if raw_path.startswith(PATH_PREFIX):
        url_id, _, rest = raw_path[len(PATH_PREFIX):].partition(b"/")
        return url_id.decode("latin-1"), b"/" + rest, None
    return None


def _message(status: int, message: str, request_id: str) -> HttpResponse:
    return HttpResponse(status, [(b"content-type", b"application/json"), (b"x-amzn-requestid", request_id.encode())],
                        orjson.dumps({"Message": message}))


class FunctionUrlGateway:
    def __init__(self, urls: FunctionUrlService, functions: FunctionService) -> None:
        self.urls = urls
        self.functions = functions
        self.dispatcher = functions.dispatcher
        self.settings = urls.settings
        self.http_apps = HttpAppProxy(self.dispatcher)

    async def __call__(self, scope: dict, receive, send, url_id: str, path: bytes,  # noqa: ANN001 - ASGI
                       host: str | None) -> None:
        request_id = str(uuid.uuid4())
        url = self.urls.by_id.get(url_id)
        try:
            response, streamed = await self._handle(scope, receive, send, url, path, host, request_id)
        except AwsError as err:
            response, streamed = _message(err.status, err.message, request_id), False
        except Exception:  # noqa: BLE001 - a client always gets an answer
            log.exception("function URL request failed")
            response, streamed = _message(500, "Internal Server Error", request_id), False
        if response is None:
            return  # proxied to an HTTP app, which answered
        if url is not None and url.cors:
            _apply_cors(response, url.cors, _header(scope, b"origin"), _is_preflight(scope))
        await self._send(send, response, streamed)

    async def _handle(self, scope: dict, receive, send, url: FunctionUrl | None, path: bytes,  # noqa: ANN001
                      host: str | None, request_id: str) -> tuple[HttpResponse | None, bool]:
        if url is None:
            return _message(404, "Not Found", request_id), False
        if url.auth_type == "AWS_IAM":
            # No SigV4 verification on function URLs yet: refuse rather than serve unauthenticated.
            return _message(403, "Forbidden", request_id), False
        if url.cors and _is_preflight(scope):
            # The URL answers CORS preflights itself when it has a CORS configuration, as on AWS.
            return HttpResponse(200, [(b"x-amzn-requestid", request_id.encode())], b""), False
        fn = self.functions.get(FunctionRef(url.function_name), url.qualifier or None)
        target = self.functions.pick(fn, url.qualifier or None)  # an alias's URL: its version, or a weighted pick
        # PER_TENANT functions: the caller names its tenant with X-Amz-Tenant-Id, as on Invoke.
        tenant_id = tenant_id_header(_header(scope, b"x-amz-tenant-id"))
        check_tenant(target, tenant_id)
        pool = self.dispatcher.pools.get(target.key)
        if pool is not None and pool.http_app is not None and is_per_tenant(target.config):
            raise AwsError("InvalidParameterValueException", "Lamina does not serve HTTP-app functions with tenant "
                           "isolation through function URLs.")
        if pool is not None and pool.http_app is not None:
            # An HTTP app: the request goes to its web server as is (http_apps.py), no payload 2.0.
            ensure_invokable(target, self.dispatcher)
            return await self.http_apps.serve(
                scope, receive, send, pool=pool, key=target.key, path=path, url_id=url.url_id,
                domain=host or self.urls.domain(url.url_id), arn=self.urls.function_arn(url), request_id=request_id,
                decorate=_cors_decorator(scope, url)), False
        body = await read_body(receive, LIMIT)
        if body is None:
            return _message(413, "Request must be smaller than 6291456 bytes for the InvokeFunctionUrl operation",
                            request_id), False
        client = scope.get("client") or ("127.0.0.1", 0)
        server = scope.get("server") or ("127.0.0.1", self.settings.port)
        req = HttpRequest(scope["method"], path.decode("latin-1"), scope.get("query_string", b"").decode("latin-1"),
                          scope["headers"], body, client[0], f"HTTP/{scope.get('http_version', '1.1')}",
                          {"x-forwarded-for": client[0], "x-forwarded-proto": scope.get("scheme", "http"),
                           "x-forwarded-port": str(server[1])})
        trace_id = _header(scope, b"x-amzn-trace-id")
        if trace_id is None:
            trace_id = f"Root=1-{uuid.uuid4().hex[:8]}-{uuid.uuid4().hex[:24]}"
            req.extra_headers["x-amzn-trace-id"] = trace_id
        event = request_event(req, url_id=url.url_id, domain=host or self.urls.domain(url.url_id),
                              account="anonymous", request_id=request_id)
        payload = orjson.dumps(event)
        if len(payload) > LIMIT:
            return _message(413, "Request must be smaller than 6291456 bytes for the InvokeFunctionUrl operation",
                            request_id), False
        ensure_invokable(target, self.dispatcher)
        inv = Invocation(request_id, payload, self.urls.function_arn(url), sync=True, trace_id=trace_id,
                         tenant_id=tenant_id)
        result = await run_sync(self.dispatcher, target.key, inv)
        if result.error_type is not None:
            return _message(502, "Internal Server Error", request_id), False
        streamed = url.invoke_mode == "RESPONSE_STREAM"
        try:
            response = stream_response(result.body) if streamed else map_response(result.body)
        except BadResponse as exc:
            log.info("function %s returned a response a function URL cannot send: %s", fn.name, exc)
            return _message(502, "Internal Server Error", request_id), False
        if not streamed and len(response.body) > LIMIT:
            return _message(502, "Internal Server Error", request_id), False
        response.headers.append((b"x-amzn-requestid", request_id.encode()))
        return response, streamed

    async def _send(self, send, response: HttpResponse, streamed: bool) -> None:  # noqa: ANN001 - ASGI send
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


def _cors_decorator(scope: dict, url: FunctionUrl):  # noqa: ANN202
    """For a proxied response's headers: the URL's CORS configuration replaces the app's CORS headers."""
    def decorate(status: int, headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        if not url.cors:
            return headers
        response = HttpResponse(status, headers, b"")
        _apply_cors(response, url.cors, _header(scope, b"origin"), False)
        return response.headers
    return decorate


def _is_preflight(scope: dict) -> bool:
    return (scope["method"] == "OPTIONS" and _header(scope, b"origin") is not None
            and _header(scope, b"access-control-request-method") is not None)


def _header(scope: dict, name: bytes) -> str | None:
    for key, value in scope["headers"]:
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
