"""Routes of the code signing API (2020-04-22 configurations, 2020-06-30 a function's binding) over
functions/code_signing.py."""

from __future__ import annotations

from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lamina.functions.code_signing import CodeSigningService
from lamina.functions.rest import json_response, max_items_param, read_json


def routes(signing: CodeSigningService) -> list[Route]:
    def arn_of(request: Request) -> str:
        return unquote(request.path_params["arn"])

    def name_of(request: Request) -> str:
        return unquote(request.path_params["name"])

    async def create(request: Request) -> Response:
        return json_response(signing.create(await read_json(request)), 201)

    async def list_configs(request: Request) -> Response:
        q = request.query_params
        return json_response(signing.list_configs(q.get("Marker"), max_items_param(q)))

    async def get(request: Request) -> Response:
        return json_response(signing.get(arn_of(request)))

    async def update(request: Request) -> Response:
        return json_response(signing.update(arn_of(request), await read_json(request)))

    async def delete(request: Request) -> Response:
        signing.delete(arn_of(request))
        return Response(status_code=204)

    async def list_functions(request: Request) -> Response:
        q = request.query_params
        return json_response(signing.list_functions(arn_of(request), q.get("Marker"), max_items_param(q)))

    async def put_function(request: Request) -> Response:
        return json_response(signing.put_function(name_of(request), await read_json(request)))

    async def get_function(request: Request) -> Response:
        return json_response(signing.get_function(name_of(request)))

    async def delete_function(request: Request) -> Response:
        signing.delete_function(name_of(request))
        return Response(status_code=204)

    base = "/2020-04-22/code-signing-configs"
    binding = "/2020-06-30/functions/{name}/code-signing-config"
    return [
        Route(base, create, methods=["POST"]),
        Route(base, list_configs, methods=["GET"]),
        Route(base + "/", list_configs, methods=["GET"]),
        Route(base + "/{arn}", get, methods=["GET"]),
        Route(base + "/{arn}", update, methods=["PUT"]),
        Route(base + "/{arn}", delete, methods=["DELETE"]),
        Route(base + "/{arn}/functions", list_functions, methods=["GET"]),
        Route(binding, put_function, methods=["PUT"]),
        Route(binding, get_function, methods=["GET"]),
        Route(binding, delete_function, methods=["DELETE"]),
    ]
