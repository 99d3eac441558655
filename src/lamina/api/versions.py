"""Routes of the versions API over functions/versions.py."""


from __future__ import annotations

from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lamina.functions.rest import json_response, max_items_param, read_json
from lamina.functions.versions import (
    VersionService,
)


def routes(versions: VersionService) -> list[Route]:
    def name_of(request: Request) -> str:
        return unquote(request.path_params["name"])

    def alias_of(request: Request) -> str:
        return unquote(request.path_params["alias"])

    async def publish(request: Request) -> Response:
        return json_response(versions.publish_version(name_of(request), await read_json(request)), 201)

    async def list_versions(request: Request) -> Response:
        q = request.query_params
        return json_response(versions.list_versions(name_of(request), q.get("Marker"), max_items_param(q)))

    async def create_alias(request: Request) -> Response:
        return json_response(versions.create_alias(name_of(request), await read_json(request)), 201)

    async def list_aliases(request: Request) -> Response:
        q = request.query_params
        return json_response(versions.list_aliases(name_of(request), q.get("FunctionVersion"), q.get("Marker"),
                                                   max_items_param(q)))

    async def get_alias(request: Request) -> Response:
        return json_response(versions.get_alias(name_of(request), alias_of(request)))

    async def update_alias(request: Request) -> Response:
        return json_response(versions.update_alias(name_of(request), alias_of(request), await read_json(request)))

    async def delete_alias(request: Request) -> Response:
        versions.delete_alias(name_of(request), alias_of(request))
        return Response(status_code=204)

    fn_path = "/2015-03-31/functions/{name}"
    return [
        Route(fn_path + "/versions", publish, methods=["POST"]),
        Route(fn_path + "/versions", list_versions, methods=["GET"]),
        Route(fn_path + "/aliases", create_alias, methods=["POST"]),
        Route(fn_path + "/aliases", list_aliases, methods=["GET"]),
        Route(fn_path + "/aliases/{alias}", get_alias, methods=["GET"]),
        Route(fn_path + "/aliases/{alias}", update_alias, methods=["PUT"]),
        Route(fn_path + "/aliases/{alias}", delete_alias, methods=["DELETE"]),
    ]
