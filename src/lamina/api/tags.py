"""Routes of ListTags, TagResource and UntagResource (2017-03-31) over functions/tagging.py. MicroVM images' tags
share the path; their routes (api/microvms_api.py) come first and take only microvm-image ARNs."""

from __future__ import annotations

from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from lamina.functions.rest import json_response, read_json
from lamina.functions.tagging import TagService


def routes(tags: TagService) -> list[Route]:
    def arn_of(request: Request) -> str:
        return unquote(request.path_params["arn"])

    async def list_tags(request: Request) -> Response:
        return json_response(tags.list_tags(arn_of(request)))

    async def tag(request: Request) -> Response:
        tags.tag(arn_of(request), await read_json(request))
        return Response(status_code=204)

    async def untag(request: Request) -> Response:
        tags.untag(arn_of(request), request.query_params.getlist("tagKeys"))
        return Response(status_code=204)

    path = "/2017-03-31/tags/{arn}"
    return [
        Route(path, list_tags, methods=["GET"]),
        Route(path, tag, methods=["POST"]),
        Route(path, untag, methods=["DELETE"]),
    ]
