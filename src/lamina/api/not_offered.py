"""Routes of the Lambda features Lamina does not offer (capacity providers, function scaling configuration, durable
executions) over functions/not_offered.py: AWS's answers for an account without any, refusals for the rest."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lamina.functions.not_offered import CAPACITY_PROVIDERS, NotOffered, refused
from lamina.functions.rest import json_response

Endpoint = Callable[[Request], Awaitable[Response]]


def routes(absent: NotOffered) -> list[Route]:
    def param(request: Request, name: str) -> str:
        return unquote(request.path_params[name])

    def refuse(operation: str) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            raise refused(CAPACITY_PROVIDERS, operation)
        return endpoint

    async def list_providers(request: Request) -> Response:
        return json_response(absent.list_providers(request.query_params.get("State")))

    async def provider(request: Request) -> Response:
        raise absent.provider_not_found(param(request, "name"))

    async def scaling(request: Request) -> Response:
        operation = "GetFunctionScalingConfig" if request.method == "GET" else "PutFunctionScalingConfig"
        raise absent.scaling_config(param(request, "name"), request.query_params.get("Qualifier"), operation)

    async def execution(request: Request) -> Response:
        raise absent.execution_not_found(param(request, "arn"))

    async def callback(request: Request) -> Response:
        raise absent.callback_not_found(param(request, "id"))

    async def list_executions(request: Request) -> Response:
        return json_response(absent.list_executions(param(request, "name"), request.query_params.get("Qualifier")))

    providers = "/2025-11-30/capacity-providers"
    executions = "/2025-12-01/durable-executions/{arn:path}"
    return [
        Route(providers, refuse("CreateCapacityProvider"), methods=["POST"]),
        Route(providers, list_providers, methods=["GET"]),
        Route(providers + "/", list_providers, methods=["GET"]),
        Route(providers + "/{name}", provider, methods=["GET", "PUT", "DELETE"]),
        Route(providers + "/{name}/function-versions", provider, methods=["GET"]),
        Route("/2025-11-30/functions/{name}/function-scaling-config", scaling, methods=["GET", "PUT"]),
        Route("/2025-12-01/functions/{name}/durable-executions", list_executions, methods=["GET"]),
        Route(executions, execution, methods=["GET", "POST", "DELETE"]),
        Route("/2025-12-01/durable-execution-callbacks/{id}/{action}", callback, methods=["POST"]),
    ]
