"""Routes of Put/GetFunctionRecursionConfig (2024-08-31) and Put/GetRuntimeManagementConfig (2021-07-20) over
functions/function_settings.py."""

from __future__ import annotations

from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lamina.functions.function_settings import FunctionSettingsService
from lamina.functions.rest import json_response, read_json


def routes(settings: FunctionSettingsService) -> list[Route]:
    def name_of(request: Request) -> str:
        return unquote(request.path_params["name"])

    async def put_recursion(request: Request) -> Response:
        return json_response(settings.put_recursion(name_of(request), await read_json(request)))

    async def get_recursion(request: Request) -> Response:
        return json_response(settings.get_recursion(name_of(request)))

    async def put_runtime(request: Request) -> Response:
        return json_response(settings.put_runtime_management(name_of(request), request.query_params.get("Qualifier"),
                                                             await read_json(request)))

    async def get_runtime(request: Request) -> Response:
        return json_response(settings.get_runtime_management(name_of(request), request.query_params.get("Qualifier")))

    recursion = "/2024-08-31/functions/{name}/recursion-config"
    runtime = "/2021-07-20/functions/{name}/runtime-management-config"
    return [
        Route(recursion, put_recursion, methods=["PUT"]),
        Route(recursion, get_recursion, methods=["GET"]),
        Route(runtime, put_runtime, methods=["PUT"]),
        Route(runtime, get_runtime, methods=["GET"]),
    ]
