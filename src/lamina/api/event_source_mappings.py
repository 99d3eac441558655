"""Routes of the event source mapping API (functions/event_source_mappings.py) under /2015-03-31/event-source-mappings,
and Lamina's own view of a mapping's pollers (/lamina/v1/event-source-mappings)."""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lamina.functions.event_source_mappings import EventSourceMappingService
from lamina.functions.rest import json_response, max_items_param, read_json

PATH = "/2015-03-31/event-source-mappings"


def routes(service: EventSourceMappingService, stats: Callable[[], list[dict]] | None = None) -> list[Route]:
    async def create(request: Request) -> Response:
        return json_response(service.create(await read_json(request)), 202)

    async def list_mappings(request: Request) -> Response:
        q = request.query_params
        return json_response(service.list(q.get("EventSourceArn"), q.get("FunctionName"), q.get("Marker"),
                                           max_items_param(q)))

    async def get(request: Request) -> Response:
        return json_response(service.get(request.path_params["uuid"]))

    async def update(request: Request) -> Response:
        return json_response(service.update(request.path_params["uuid"], await read_json(request)), 202)

    async def delete(request: Request) -> Response:
        return json_response(service.delete(request.path_params["uuid"]), 202)

    async def pollers(request: Request) -> Response:
        return json_response({"EventSourceMappings": stats() if stats is not None else []})

    return [
        Route(PATH, create, methods=["POST"]),
        Route(PATH + "/", create, methods=["POST"]),
        Route(PATH, list_mappings, methods=["GET"]),
        Route(PATH + "/", list_mappings, methods=["GET"]),
        Route(PATH + "/{uuid}", get, methods=["GET"]),
        Route(PATH + "/{uuid}", update, methods=["PUT"]),
        Route(PATH + "/{uuid}", delete, methods=["DELETE"]),
        Route("/lamina/v1/event-source-mappings", pollers, methods=["GET"]),
    ]
