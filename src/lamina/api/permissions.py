"""Routes of the permissions API over functions/permissions.py."""


from __future__ import annotations

from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lamina.functions.permissions import (
    PolicyService,
)
from lamina.functions.rest import json_response, read_json


def routes(policies: PolicyService) -> list[Route]:
    def name_of(request: Request) -> str:
        return unquote(request.path_params["name"])

    async def add(request: Request) -> Response:
        return json_response(policies.add(name_of(request), request.query_params.get("Qualifier"),
                                          await read_json(request)), 201)

    async def get(request: Request) -> Response:
        return json_response(policies.get(name_of(request), request.query_params.get("Qualifier")))

    async def remove(request: Request) -> Response:
        q = request.query_params
        policies.remove(name_of(request), q.get("Qualifier"), unquote(request.path_params["sid"]), q.get("RevisionId"))
        return Response(status_code=204)

    path = "/2015-03-31/functions/{name}/policy"
    return [
        Route(path, add, methods=["POST"]),
        Route(path, get, methods=["GET"]),
        Route(path + "/{sid}", remove, methods=["DELETE"]),
    ]
