"""Routes of the concurrency API over functions/concurrency.py."""


from __future__ import annotations

from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lamina.functions import validation as v
from lamina.functions.concurrency import (
    ConcurrencyService,
)
from lamina.functions.errors import AwsError
from lamina.functions.rest import json_response, read_json


def routes(service: ConcurrencyService) -> list[Route]:
    def name_of(request: Request) -> str:
        return unquote(request.path_params["name"])

    async def put(request: Request) -> Response:
        return json_response(service.put(name_of(request), await read_json(request)))

    async def get(request: Request) -> Response:
        return json_response(service.get(name_of(request)))

    async def delete(request: Request) -> Response:
        service.delete(name_of(request))
        return Response(status_code=204)

    provisioned = service.provisioned

    async def put_provisioned(request: Request) -> Response:
        result = provisioned.put(name_of(request), request.query_params.get("Qualifier"), await read_json(request))
        return json_response(result, 202)

    async def get_provisioned(request: Request) -> Response:
        q = request.query_params
        if "List" in q:
            return json_response(provisioned.list(name_of(request), q.get("Marker"), _max_items(q)))
        return json_response(provisioned.get(name_of(request), q.get("Qualifier")))

    async def delete_provisioned(request: Request) -> Response:
        provisioned.delete(name_of(request), request.query_params.get("Qualifier"))
        return Response(status_code=204)

    pc_path = "/2019-09-30/functions/{name}/provisioned-concurrency"
    return [
        Route(pc_path, put_provisioned, methods=["PUT"]),
        Route(pc_path, get_provisioned, methods=["GET"]),
        Route(pc_path, delete_provisioned, methods=["DELETE"]),
        Route("/2017-10-31/functions/{name}/concurrency", put, methods=["PUT"]),
        Route("/2019-09-30/functions/{name}/concurrency", get, methods=["GET"]),
        Route("/2017-10-31/functions/{name}/concurrency", delete, methods=["DELETE"]),
    ]


def _max_items(q) -> int | None:
    """ListProvisionedConcurrencyConfigs' MaxItems: 1-50."""
    if "MaxItems" not in q:
        return None
    try:
        value = int(q["MaxItems"])
    except ValueError:
        raise AwsError("ValidationException", f"1 validation error detected: Value '{q['MaxItems']}' at "
                       "'maxItems' failed to satisfy constraint: Member must be an integer") from None
    return v.integer({"MaxItems": value}, "MaxItems", "maxItems", 1, 50)
