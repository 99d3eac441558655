"""The HTTP front door: function URLs and the invoke paths as bare ASGI, everything else through Starlette."""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from lamina.api import concurrency, function_urls, lambda_api, lamina_api, microvms_api, permissions, versions
from lamina.api import invoke_stream as stream_path
from lamina.api.concurrency import ConcurrencyService
from lamina.api.function_urls import FunctionUrlService
from lamina.api.invoke_stream import StreamInvokeHandler
from lamina.api.permissions import PolicyService
from lamina.functions import invoke as invoke_path
from lamina.functions.errors import AwsError
from lamina.functions.invoke import InvokeHandler
from lamina.functions.registry import FunctionService
from lamina.gateway.http import function_urls as url_gateway
from lamina.gateway.http import microvm_proxy
from lamina.gateway.http.function_urls import FunctionUrlGateway
from lamina.gateway.udp import api as udp_api
from lamina.gateway.udp.service import UdpGateway
from lamina.microvm.manager import MicrovmManager

log = logging.getLogger("lamina.api")


def _error_response(err: AwsError) -> Response:
    status, headers, body = err.render()
    return Response(body, status_code=status, headers={k.decode(): v.decode() for k, v in headers})


async def _aws_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AwsError)
    return _error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return _error_response(AwsError("UnknownOperationException",
                                        f"No Lambda operation at {request.method} {request.url.path}", 404))
    if exc.status_code == 405:
        return _error_response(AwsError("UnknownOperationException",
                                        f"Method {request.method} is not allowed on {request.url.path}", 405))
    return _error_response(AwsError("ServiceException", str(exc.detail), exc.status_code))


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _error_response(AwsError("ServiceException", f"Internal error: {type(exc).__name__}: {exc}"))


class LaminaApp:
    """ASGI app: function URLs and the invoke hot paths skip framework routing; lifespan hooks
    start/stop the server."""

    def __init__(self, functions: FunctionService, lifespan,
                 urls: FunctionUrlService | None = None, policies: PolicyService | None = None,
                 concurrency_service: ConcurrencyService | None = None, udp: UdpGateway | None = None,
                 microvms: MicrovmManager | None = None) -> None:
        self.invoke = InvokeHandler(functions)
        self.stream_invoke = StreamInvokeHandler(functions)
        self.gateway = FunctionUrlGateway(urls, functions) if urls is not None else None
        routes = (lambda_api.routes(functions) + versions.routes(versions.VersionService(functions))
                  + lamina_api.routes(functions))
        if urls is not None:
            routes += function_urls.routes(urls)
        if policies is not None:
            routes += permissions.routes(policies)
        if concurrency_service is not None:
            routes += concurrency.routes(concurrency_service)
        if udp is not None:
            routes += udp_api.routes(udp)
        # MicroVM routes first: they take the microvm-image ARNs of Lambda's shared /tags/ path.
        self.microvm_proxy = microvm_proxy.MicrovmProxy(microvms) if microvms is not None else None
        if microvms is not None:
            routes = microvms_api.routes(microvms) + routes
        self.control = Starlette(
            routes=routes,
            exception_handlers={AwsError: _aws_error, HTTPException: _http_error, Exception: _unexpected},
            lifespan=lifespan,
        )

    async def __call__(self, scope: dict, receive, send) -> None:
        # Under `lamina serve`, Invoke and handler-function URL requests are answered before they get here
        # (gateway/http/fast_http.py); a route that must take precedence over them belongs in its _routed_first too.
        if (self.microvm_proxy is not None and scope["type"] in ("http", "websocket")
                and (target := microvm_proxy.match(scope)) is not None):
            await self.microvm_proxy(scope, receive, send, *target)
            return
        if scope["type"] == "http":
            if self.gateway is not None and (url := url_gateway.match(scope)) is not None:
                await self.gateway(scope, receive, send, *url)
                return
            path = scope.get("raw_path", b"").decode("latin-1").split("?", 1)[0]
            name = invoke_path.match(path)
            handler = self.invoke
            if name is None:
                name = stream_path.match(path)
                handler = self.stream_invoke
            if name is not None:
                try:
                    await handler(scope, receive, send, name)
                except Exception as exc:
                    log.exception("invoke failed")
                    status, headers, body = AwsError("ServiceException", f"Internal error: {exc}").render()
                    await send({"type": "http.response.start", "status": status, "headers": headers})
                    await send({"type": "http.response.body", "body": body})
                return
        await self.control(scope, receive, send)
