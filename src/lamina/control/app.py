"""The HTTP front door: Invoke on a bare ASGI path, everything else through Starlette."""

from __future__ import annotations

import logging

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from lamina.control import invoke as invoke_path
from lamina.control import lambda_api, lamina_api
from lamina.control.errors import AwsError
from lamina.control.functions import FunctionService
from lamina.control.invoke import InvokeHandler

log = logging.getLogger("lamina.control")


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
    """ASGI app: the Invoke hot path skips framework routing; lifespan hooks start/stop the server."""

    def __init__(self, functions: FunctionService, lifespan) -> None:  # noqa: ANN001 - a lifespan context
        self.invoke = InvokeHandler(functions)
        self.control = Starlette(
            routes=lambda_api.routes(functions) + lamina_api.routes(functions),
            exception_handlers={AwsError: _aws_error, HTTPException: _http_error, Exception: _unexpected},
            lifespan=lifespan,
        )

    async def __call__(self, scope: dict, receive, send) -> None:  # noqa: ANN001 - ASGI
        if scope["type"] == "http":
            name = invoke_path.match(scope.get("raw_path", b"").decode("latin-1").split("?", 1)[0])
            if name is not None:
                try:
                    await self.invoke(scope, receive, send, name)
                except Exception as exc:  # noqa: BLE001 - never drop a connection without an answer
                    log.exception("invoke failed")
                    status, headers, body = AwsError("ServiceException", f"Internal error: {exc}").render()
                    await send({"type": "http.response.start", "status": status, "headers": headers})
                    await send({"type": "http.response.body", "body": body})
                return
        await self.control(scope, receive, send)
