"""Routes of the permissions API (AddPermission, GetPolicy, RemovePermission) and of Put/Get/DeleteResourcePolicy
over functions/permissions.py."""


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

    def arn_of(request: Request) -> str:
        return unquote(request.path_params["arn"])

    async def put_document(request: Request) -> Response:
        return json_response(policies.put_document(arn_of(request), await read_json(request)))

    async def get_document(request: Request) -> Response:
        return json_response(policies.get_document(arn_of(request)))

    async def delete_document(request: Request) -> Response:
        policies.delete_document(arn_of(request), request.query_params.get("RevisionId"))
        return Response(status_code=204)

    path = "/2015-03-31/functions/{name}/policy"
    document = "/2026-07-09/resource-policy/{arn:path}"
    return [
        Route(path, add, methods=["POST"]),
        Route(path, get, methods=["GET"]),
        Route(path + "/{sid}", remove, methods=["DELETE"]),
        Route(document, put_document, methods=["PUT"]),
        Route(document, get_document, methods=["GET"]),
        Route(document, delete_document, methods=["DELETE"]),
    ]
