"""Routes of the layers API (2018-10-31) over functions/layers.py, and the download of a layer version's package
(GetLayerVersion's Content.Location)."""

from __future__ import annotations

from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lamina.api.lambda_api import base_url
from lamina.functions.errors import AwsError
from lamina.functions.layers import LayerService
from lamina.functions.rest import json_response, read_json
from lamina.functions.validation import integer


def routes(layers: LayerService) -> list[Route]:
    def name_of(request: Request) -> str:
        return unquote(request.path_params["name"])

    def version_of(request: Request) -> str:
        return unquote(request.path_params["version"])

    def max_items(request: Request) -> int | None:
        raw = request.query_params.get("MaxItems")
        if raw is None:
            return None
        try:
            value = int(raw)
        except ValueError:
            raise AwsError("ValidationException", f"1 validation error detected: Value '{raw}' at 'maxItems' failed "
                           "to satisfy constraint: Member must be an integer") from None
        return integer({"MaxItems": value}, "MaxItems", "maxItems", 1, 50)

    async def publish(request: Request) -> Response:
        lv, _ = layers.publish(name_of(request), await read_json(request))
        return json_response(layers.published(lv, base_url(request)), 201)

    async def list_versions(request: Request) -> Response:
        q = request.query_params
        return json_response(layers.list_versions(name_of(request), q.get("CompatibleRuntime"),
                                                  q.get("CompatibleArchitecture"), q.get("Marker"), max_items(request)))

    async def list_layers(request: Request) -> Response:
        q = request.query_params
        if q.get("find") == "LayerVersion":   # GetLayerVersionByArn shares the path
            return json_response(layers.get_by_arn(q.get("Arn"), base_url(request)))
        return json_response(layers.list_layers(q.get("CompatibleRuntime"), q.get("CompatibleArchitecture"),
                                                q.get("Marker"), max_items(request)))

    async def get_version(request: Request) -> Response:
        return json_response(layers.get(name_of(request), version_of(request), base_url(request)))

    async def delete_version(request: Request) -> Response:
        layers.delete(name_of(request), version_of(request))
        return Response(status_code=204)

    async def add_permission(request: Request) -> Response:
        return json_response(layers.add_permission(name_of(request), version_of(request), await read_json(request),
                                                   request.query_params.get("RevisionId")), 201)

    async def get_policy(request: Request) -> Response:
        return json_response(layers.get_policy(name_of(request), version_of(request)))

    async def remove_permission(request: Request) -> Response:
        layers.remove_permission(name_of(request), version_of(request), unquote(request.path_params["sid"]),
                                 request.query_params.get("RevisionId"))
        return Response(status_code=204)

    async def content(request: Request) -> Response:
        name = name_of(request)
        data = layers.package(name, int(version_of(request))) if version_of(request).isdigit() else None
        if data is None:
            raise AwsError("ResourceNotFoundException", "The resource you requested does not exist.")
        return Response(data, media_type="application/zip",
                        headers={"content-disposition": f'attachment; filename="{name}.zip"'})

    base = "/2018-10-31/layers"
    version = base + "/{name}/versions/{version}"
    return [
        Route(base, list_layers, methods=["GET"]),
        Route(base + "/", list_layers, methods=["GET"]),
        Route(base + "/{name}/versions", publish, methods=["POST"]),
        Route(base + "/{name}/versions", list_versions, methods=["GET"]),
        Route(version, get_version, methods=["GET"]),
        Route(version, delete_version, methods=["DELETE"]),
        Route(version + "/policy", add_permission, methods=["POST"]),
        Route(version + "/policy", get_policy, methods=["GET"]),
        Route(version + "/policy/{sid}", remove_permission, methods=["DELETE"]),
        Route("/lamina/v1/layers/{name}/versions/{version}/content", content, methods=["GET"]),
    ]
