"""Asynchronous invocation's own routes: InvokeAsync (AWS's deprecated POST /2014-11-13/functions/{name}/invoke-async/,
an Event invoke with a 256 KB limit) and Lamina's view of a function's pending events
(GET /lamina/v1/functions/{name}/events, what `lamina events ls` shows)."""

from __future__ import annotations

from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lamina.dispatch import ids
from lamina.functions.async_queue import no_sink
from lamina.functions.errors import AwsError
from lamina.functions.invoke import InvokeHandler, wait
from lamina.functions.registry import FunctionService
from lamina.functions.rest import json_response

INVOKE_ASYNC_LIMIT = 256 * 1024


def routes(functions: FunctionService) -> list[Route]:
    handler = InvokeHandler(functions)

    async def invoke_async(request: Request) -> Response:
        request_id = ids.request_id()
        head = handler.head("POST", request.url.path, {"x-amz-invocation-type": "Event"}, b"",
                            request.path_params["name"])
        body = await request.body()
        if len(body) > INVOKE_ASYNC_LIMIT:
            raise AwsError("RequestTooLargeException",
                           f"Request must be smaller than {INVOKE_ASYNC_LIMIT} bytes for the InvokeAsync operation")
        started = handler.start(handler.body(head, body), request_id)
        if not isinstance(started, tuple):
            await wait(started)
        return Response(status_code=202, headers={"x-amzn-requestid": request_id})

    async def pending(request: Request) -> Response:
        fn = functions.lookup(unquote(request.path_params["name"]))
        sink = functions.event_sink
        if sink is None:
            raise no_sink()
        try:
            limit = int(request.query_params.get("limit", "100"))
        except ValueError:
            raise AwsError("InvalidParameterValueException", "limit must be an integer.") from None
        return json_response({"FunctionName": fn.name, "Events": sink.pending(fn.name, max(1, min(limit, 10000))),
                              "Queue": sink.stats()})

    return [
        Route("/2014-11-13/functions/{name}/invoke-async/", invoke_async, methods=["POST"]),
        Route("/2014-11-13/functions/{name}/invoke-async", invoke_async, methods=["POST"]),
        Route("/lamina/v1/functions/{name}/events", pending, methods=["GET"]),
    ]
