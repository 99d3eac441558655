"""Routes of the event-invoke configuration API (functions/event_invoke_config.py):
Put / Get / Update / Delete / ListFunctionEventInvokeConfig(s) under /2019-09-25/functions/{FunctionName}/."""

from __future__ import annotations

from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lamina.functions.event_invoke_config import EventInvokeConfigService
from lamina.functions.rest import json_response, read_json

PATH = "/2019-09-25/functions/{name}/event-invoke-config"


def routes(service: EventInvokeConfigService) -> list[Route]:
    def target(request: Request) -> tuple[str, str | None]:
        return unquote(request.path_params["name"]), request.query_params.get("Qualifier")

    async def put(request: Request) -> Response:
        return json_response(service.put(*target(request), await read_json(request)))

    async def update(request: Request) -> Response:
        return json_response(service.update(*target(request), await read_json(request)))

    async def get(request: Request) -> Response:
        return json_response(service.get(*target(request)))

    async def delete(request: Request) -> Response:
        service.delete(*target(request))
        return Response(status_code=204)

    async def list_configs(request: Request) -> Response:
        q = request.query_params
        return json_response(service.list(unquote(request.path_params["name"]), q.get("Marker"), q.get("MaxItems")))

    return [
        Route(PATH + "/list", list_configs, methods=["GET"]),
        Route(PATH, put, methods=["PUT"]),
        Route(PATH, update, methods=["POST"]),
        Route(PATH, get, methods=["GET"]),
        Route(PATH, delete, methods=["DELETE"]),
    ]
