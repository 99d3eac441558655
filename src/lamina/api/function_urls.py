"""Routes of the function urls API over functions/urls.py."""


from __future__ import annotations

from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lamina.functions import validation as v
from lamina.functions.errors import validation
from lamina.functions.rest import json_response, read_json
from lamina.functions.urls import (
    FunctionUrlService,
)


def routes(urls: FunctionUrlService) -> list[Route]:
    def name_of(request: Request) -> str:
        return unquote(request.path_params["name"])

    def qualifier_of(request: Request) -> str | None:
        return request.query_params.get("Qualifier")

    async def create(request: Request) -> Response:
        return json_response(urls.create(name_of(request), qualifier_of(request), await read_json(request)), 201)

    async def get(request: Request) -> Response:
        return json_response(urls.get(name_of(request), qualifier_of(request)))

    async def update(request: Request) -> Response:
        return json_response(urls.update(name_of(request), qualifier_of(request), await read_json(request)))

    async def delete(request: Request) -> Response:
        urls.delete(name_of(request), qualifier_of(request))
        return Response(status_code=204)

    async def list_urls(request: Request) -> Response:
        q = request.query_params
        max_items = None
        if "MaxItems" in q:
            try:
                max_items = int(q["MaxItems"])
            except ValueError:
                raise validation(q["MaxItems"], "maxItems", "Member must be an integer") from None
            v.integer({"MaxItems": max_items}, "MaxItems", "maxItems", 1, 50)
        return json_response(urls.list(name_of(request), q.get("Marker"), max_items))

    path = "/2021-10-31/functions/{name}/url"
    return [
        Route(path, create, methods=["POST"]),
        Route(path, get, methods=["GET"]),
        Route(path, update, methods=["PUT"]),
        Route(path, delete, methods=["DELETE"]),
        Route("/2021-10-31/functions/{name}/urls", list_urls, methods=["GET"]),
    ]
