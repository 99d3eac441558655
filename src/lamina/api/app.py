"""The AWS REST APIs as one Starlette app: every route of api/ (and of the other front ends' own REST
APIs, handed in), with AWS-shaped errors for unknown operations and unexpected failures. The front door
(gateway/http/front_door.py) hands it whatever the hot paths do not answer."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lamina.api import concurrency, function_urls, lambda_api, lamina_api, layers, microvms_api, permissions, versions
from lamina.functions.concurrency import ConcurrencyService
from lamina.functions.errors import AwsError
from lamina.functions.permissions import PolicyService
from lamina.functions.registry import FunctionService
from lamina.functions.urls import FunctionUrlService
from lamina.functions.versions import VersionService
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


def routes(functions: FunctionService, urls: FunctionUrlService, policies: PolicyService,
           concurrency_service: ConcurrencyService, microvms: MicrovmManager | None) -> list[BaseRoute]:
    """Every route of the Lambda and MicroVMs APIs and of Lamina's own API."""
    out: list[BaseRoute] = [*lambda_api.routes(functions), *versions.routes(VersionService(functions)),
                            *lamina_api.routes(functions), *function_urls.routes(urls), *permissions.routes(policies),
                            *concurrency.routes(concurrency_service), *layers.routes(functions.layers)]
    if microvms is not None:
        # MicroVM routes first: they take the microvm-image ARNs of Lambda's shared /tags/ path.
        out[:0] = microvms_api.routes(microvms)
    return out


class RequestIdHeader:
    """Every answer of the REST APIs carries x-amzn-RequestId, as AWS's do: one is made here when the route set none
    (the error answers and the invoke routes set their own)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                if not any(name.lower() == b"x-amzn-requestid" for name, _ in headers):
                    headers.append((b"x-amzn-requestid", str(uuid.uuid4()).encode()))
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, sending)


def control_app(routes: list[BaseRoute],
                lifespan: Callable[[Starlette], AbstractAsyncContextManager[None]] | None) -> Starlette:
    app = Starlette(
        routes=routes,
        middleware=[Middleware(RequestIdHeader)],
        exception_handlers={AwsError: _aws_error, HTTPException: _http_error, Exception: _unexpected},
        lifespan=lifespan,
    )
    # A path with a trailing slash that no route serves is an unknown operation, as AWS answers it, not a 307 to
    # the path without it (Starlette's default; the routes AWS's clients send with a slash are routes of their own).
    app.router.redirect_slashes = False
    return app
