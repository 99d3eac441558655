"""The Lambda control-plane REST API (rest-json), as Starlette routes."""

from __future__ import annotations

from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lamina.functions.code import MAX_CREATE_REQUEST
from lamina.functions.registry import FunctionService
from lamina.functions.rest import json_response, max_items_param, read_json


def base_url(request: Request) -> str:
    host = request.headers.get("host") or f"{request.url.hostname}:{request.url.port}"
    return f"{request.url.scheme}://{host}"


def routes(functions: FunctionService) -> list[Route]:
    def name_of(request: Request) -> str:
        return unquote(request.path_params["name"])

    async def create_function(request: Request) -> Response:
        return json_response(functions.create(await read_json(request, MAX_CREATE_REQUEST, "CreateFunction")), 201)

    async def list_functions(request: Request) -> Response:
        q = request.query_params
        return json_response(functions.list_functions(q.get("Marker"), max_items_param(q), q.get("FunctionVersion")))

    async def get_function(request: Request) -> Response:
        return json_response(functions.get_function(name_of(request), request.query_params.get("Qualifier"),
                                                    base_url(request)))

    async def delete_function(request: Request) -> Response:
        functions.delete(name_of(request), request.query_params.get("Qualifier"))
        return Response(status_code=204)

    async def get_configuration(request: Request) -> Response:
        fn, qualifier = functions.target(name_of(request), request.query_params.get("Qualifier"))
        return json_response(functions.configuration(fn, qualifier))

    async def update_configuration(request: Request) -> Response:
        return json_response(functions.update_configuration(name_of(request), await read_json(request)))

    async def update_code(request: Request) -> Response:
        return json_response(functions.update_code(name_of(request), await read_json(request)))

    async def account_settings(request: Request) -> Response:
        return json_response(functions.account_settings())

    fn_path = "/2015-03-31/functions/{name}"
    return [
        Route("/2015-03-31/functions", create_function, methods=["POST"]),
        Route("/2015-03-31/functions", list_functions, methods=["GET"]),
        Route("/2015-03-31/functions/", list_functions, methods=["GET"]),
        Route(fn_path, get_function, methods=["GET"]),
        Route(fn_path, delete_function, methods=["DELETE"]),
        Route(fn_path + "/configuration", get_configuration, methods=["GET"]),
        Route(fn_path + "/configuration", update_configuration, methods=["PUT"]),
        Route(fn_path + "/code", update_code, methods=["PUT"]),
        Route("/2016-08-19/account-settings", account_settings, methods=["GET"]),
        Route("/2016-08-19/account-settings/", account_settings, methods=["GET"]),
    ]
