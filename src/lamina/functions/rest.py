"""What every REST front end shares: JSON request bodies in, JSON responses out (AWS's rest-json shapes and
errors), and the ASGI request body read with a size limit."""

from __future__ import annotations

from collections.abc import Callable

import orjson
from starlette.datastructures import QueryParams, URLPath
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import ASGIApp, Receive, Scope, Send

from lamina.functions.errors import AwsError
from lamina.functions.validation import integer


def json_response(data: object, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


async def read_json(request: Request, limit: int | None = None, operation: str = "") -> dict:
    """The JSON object of the request body; over `limit` bytes, AWS's 413 for that operation."""
    raw = await request.body()
    if limit is not None and len(raw) > limit:
        raise AwsError("RequestEntityTooLargeException",
                       f"Request must be smaller than {limit} bytes for the {operation} operation", 413)
    if not raw:
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise AwsError("SerializationException", f"Could not parse the request body as JSON: {exc}") from None
    if not isinstance(body, dict):
        raise AwsError("SerializationException", "The request body must be a JSON object.")
    return body


def json_object_body(raw: bytes, limit: int, too_large: str, error: Callable[[str, str], Exception]) -> dict:
    """The JSON object a JSON 1.1 API's request carries; error(code, message) makes that API's own error: `too_large`
    is its code for a body over `limit` bytes, SerializationException for anything but a JSON object."""
    if len(raw) > limit:
        raise error(too_large, "The request body is too large.")
    try:
        body = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        raise error("SerializationException", "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise error("SerializationException", "The request body must be a JSON object.")
    return body


def max_items_param(q: QueryParams) -> int | None:
    """The MaxItems query parameter of the list operations (1-10000)."""
    if "MaxItems" not in q:
        return None
    try:
        value = int(q["MaxItems"])
    except ValueError:
        raise AwsError("ValidationException", f"1 validation error detected: Value '{q['MaxItems']}' at "
                       "'maxItems' failed to satisfy constraint: Member must be an integer") from None
    return integer({"MaxItems": value}, "MaxItems", "maxItems", 1, 10000)


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None once it exceeds limit bytes."""
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise AwsError("InvalidRequestContentException", "The client closed the connection.")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks) if len(chunks) != 1 else chunks[0]


class TargetRoute(BaseRoute):
    """Claims the POSTs whose X-Amz-Target names an operation of one JSON 1.1 API (by its prefix, e.g.
    `AWSEvents.`) and hands them to that API's ASGI app."""

    def __init__(self, prefix: bytes, app: ASGIApp) -> None:
        self.prefix = prefix
        self.app = app

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or scope["method"] != "POST":
            return Match.NONE, {}
        for name, value in scope["headers"]:
            if name == b"x-amz-target":
                return (Match.FULL if value.startswith(self.prefix) else Match.NONE), {}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: object) -> URLPath:
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
