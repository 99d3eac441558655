"""EventBridge Scheduler's REST API (rest-json) over eventbridge/scheduler.py: `/schedules/{Name}` and
`/schedule-groups/{Name}`. Errors are `{"Message": ...}` with `x-amzn-ErrorType`, as Scheduler answers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import unquote

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lamina.eventbridge.errors import BridgeError, validation
from lamina.eventbridge.scheduler import ScheduleService

Handler = Callable[[Request], Awaitable[dict]]


def _error(err: BridgeError) -> Response:
    return Response(orjson.dumps({"Message": err.message}), status_code=err.status, media_type="application/json",
                    headers={"x-amzn-ErrorType": err.code})


def _endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def run(request: Request) -> Response:
        try:
            return Response(orjson.dumps(await handler(request)), media_type="application/json")
        except BridgeError as err:
            return _error(err)
    return run


async def _body(request: Request) -> dict:
    raw = await request.body()
    try:
        body = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        raise validation("The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise validation("The request body must be a JSON object.")
    return body


def _max_results(request: Request) -> int | None:
    raw = request.query_params.get("MaxResults")
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise validation("MaxResults must be a number.") from None


def routes(service: ScheduleService) -> list[Route]:
    def name(request: Request) -> str:
        return unquote(request.path_params["name"])

    async def create(request: Request) -> dict:
        return service.create(name(request), await _body(request))

    async def update(request: Request) -> dict:
        return service.update(name(request), await _body(request))

    async def get(request: Request) -> dict:
        return service.get(name(request), request.query_params.get("groupName"))

    async def delete(request: Request) -> dict:
        return service.delete(name(request), request.query_params.get("groupName"))

    async def list_schedules(request: Request) -> dict:
        q = request.query_params
        return service.list_schedules(q.get("ScheduleGroup"), q.get("NamePrefix"), q.get("State"),
                                      _max_results(request), q.get("NextToken"))

    async def create_group(request: Request) -> dict:
        return service.create_group(name(request), await _body(request))

    async def get_group(request: Request) -> dict:
        return service.get_group(name(request))

    async def delete_group(request: Request) -> dict:
        return service.delete_group(name(request))

    async def list_groups(request: Request) -> dict:
        q = request.query_params
        return service.list_groups(q.get("NamePrefix"), _max_results(request), q.get("NextToken"))

    def arn(request: Request) -> str:
        return unquote(request.path_params["arn"])

    async def list_tags(request: Request) -> dict:
        return service.list_tags(arn(request))

    async def tag(request: Request) -> dict:
        return service.tag(arn(request), await _body(request))

    async def untag(request: Request) -> dict:
        return service.untag(arn(request), request.query_params.getlist("TagKeys"))

    return [
        Route("/tags/{arn:path}", _endpoint(list_tags), methods=["GET"]),
        Route("/tags/{arn:path}", _endpoint(tag), methods=["POST"]),
        Route("/tags/{arn:path}", _endpoint(untag), methods=["DELETE"]),
        Route("/schedules", _endpoint(list_schedules), methods=["GET"]),
        Route("/schedules/{name}", _endpoint(create), methods=["POST"]),
        Route("/schedules/{name}", _endpoint(update), methods=["PUT"]),
        Route("/schedules/{name}", _endpoint(get), methods=["GET"]),
        Route("/schedules/{name}", _endpoint(delete), methods=["DELETE"]),
        Route("/schedule-groups", _endpoint(list_groups), methods=["GET"]),
        Route("/schedule-groups/{name}", _endpoint(create_group), methods=["POST"]),
        Route("/schedule-groups/{name}", _endpoint(get_group), methods=["GET"]),
        Route("/schedule-groups/{name}", _endpoint(delete_group), methods=["DELETE"]),
    ]
