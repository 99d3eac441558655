"""The REST APIs' Starlette app (api/app.py): unknown operations, a trailing slash included, get AWS's error shape."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Message

from lamina.api.app import control_app


@contextlib.asynccontextmanager
async def _lifespan(_app: Starlette) -> AsyncIterator[None]:
    yield


async def _get_function(request: Request) -> JSONResponse:
    return JSONResponse({"FunctionName": request.path_params["name"]})


async def _list_functions(request: Request) -> JSONResponse:
    return JSONResponse({"Functions": []})


def _call(method: str, path: str) -> tuple[int, dict[bytes, bytes], dict]:
    app = control_app([Route("/2015-03-31/functions/{name}", _get_function, methods=["GET"]),
                       Route("/2015-03-31/functions/", _list_functions, methods=["GET"])], _lifespan)
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(), "query_string": b"",
             "headers": [(b"host", b"127.0.0.1")], "scheme": "http", "server": ("127.0.0.1", 80),
             "root_path": "", "http_version": "1.1"}
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), orjson.loads(body) if body else {}


def test_a_trailing_slash_no_route_serves_is_an_unknown_operation_not_a_redirect() -> None:
    status, headers, body = _call("GET", "/2015-03-31/functions/f/")
    assert status == 404
    assert headers[b"x-amzn-errortype"] == b"UnknownOperationException"
    assert b"location" not in headers
    assert "/2015-03-31/functions/f/" in body["message"]


def test_routes_still_answer_with_and_without_their_own_slash() -> None:
    status, _, body = _call("GET", "/2015-03-31/functions/f")
    assert (status, body) == (200, {"FunctionName": "f"})
    status, _, body = _call("GET", "/2015-03-31/functions/")
    assert (status, body) == (200, {"Functions": []})
