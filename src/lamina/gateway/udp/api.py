"""Lamina's UDP gateway API under /lamina/v1/udp (JSON; errors shaped like the Lambda API's).

    POST   /lamina/v1/udp/listeners          create (201, the listener)   body: see config.py
    GET    /lamina/v1/udp/listeners          {"Listeners": [...]} with their metrics
    GET    /lamina/v1/udp/listeners/{ref}    one listener (id or name) with its metrics
    DELETE /lamina/v1/udp/listeners/{ref}    remove it (204); its port is free when this returns
"""

from __future__ import annotations

from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lamina.functions.rest import json_response, read_json
from lamina.gateway.udp.service import UdpGateway

PREFIX = "/lamina/v1/udp/listeners"


def routes(gateway: UdpGateway) -> list[Route]:
    async def create(request: Request) -> Response:
        return json_response(await gateway.create(await read_json(request)), 201)

    async def list_listeners(request: Request) -> Response:
        return json_response({"Listeners": gateway.list()})

    async def get(request: Request) -> Response:
        return json_response(gateway.find(unquote(request.path_params["ref"])).doc())

    async def delete(request: Request) -> Response:
        await gateway.delete(unquote(request.path_params["ref"]))
        return Response(status_code=204)

    return [
        Route(PREFIX, create, methods=["POST"]),
        Route(PREFIX, list_listeners, methods=["GET"]),
        Route(PREFIX + "/{ref}", get, methods=["GET"]),
        Route(PREFIX + "/{ref}", delete, methods=["DELETE"]),
    ]
