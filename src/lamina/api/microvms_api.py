"""The Lambda MicroVMs REST API (rest-json, /2025-09-09/...) as Starlette routes, plus Lamina's three
helpers: uploading a code artifact (`POST /lamina/v1/microvm-uploads`, Lamina has no S3), reading a
build's log (`GET /lamina/v1/microvm-images/{image}/versions/{version}/builds/{buildId}/log?offset=N`)
and a running instance's application output (`GET /lamina/v1/microvms/{id}/log?offset=N`, bytes from
offset; `x-lamina-next-offset` says where to go on). AWS sends both logs to CloudWatch Logs instead.

Tags share Lambda's `/2017-03-31/tags/{Resource}` path: these routes take only microvm-image ARNs
(a path convertor) and are placed before Lambda's, which keep every other ARN.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from lamina.functions.errors import AwsError
from lamina.functions.rest import json_response, read_json
from lamina.microvm import ids
from lamina.microvm.errors import ApiError
from lamina.microvm.images import UPLOAD_PATH
from lamina.microvm.manager import MicrovmManager

P = "/2025-09-09"
MANAGED_BASE = "al2023-1"
APP_LOG_CHUNK = 1 << 20  # bytes per response: a follower asks again from x-lamina-next-offset


def _read_log(path: Path | None, offset: int) -> bytes:
    if path is None:
        return b""
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            return fh.read(APP_LOG_CHUNK)
    except FileNotFoundError:
        return b""  # not started yet, or terminated (the log goes with the instance)


class _ImageArn(Convertor):
    regex = r"arn:[^/]*:microvm-image:[^/]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("microvm_image_arn", _ImageArn())


def _aws(err: ApiError) -> AwsError:
    return AwsError(err.code, err.message, err.status, **err.extra)


def _api(handler: Callable[[Request], Awaitable[Any]], status: int = 200) -> Callable[[Request], Awaitable[Response]]:
    """ApiError -> AwsError; a dict result -> JSON; None -> an empty JSON object (the model's empty outputs)."""

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        try:
            result = await handler(request)
        except ApiError as err:
            raise _aws(err) from None
        if isinstance(result, Response):
            return result
        if result is None and status == 204:
            return Response(status_code=204)
        return json_response({} if result is None else result, status)

    return endpoint


def routes(mgr: MicrovmManager) -> list[Route]:
    images = mgr.images
    settings = mgr.settings

    def q(request: Request, name: str) -> str | None:
        return request.query_params.get(name)

    def page_args(request: Request) -> tuple[int | None, str | None]:
        return ids.max_results(q(request, "maxResults")), q(request, "nextToken")

    def mid(request: Request) -> str:
        return request.path_params["microvm"]

    def img(request: Request) -> str:
        return request.path_params["image"]

    # instances
    async def run(request: Request) -> dict:
        return mgr.run(await read_json(request))

    async def list_microvms(request: Request) -> dict:
        return mgr.list(*page_args(request), q(request, "imageIdentifier"), q(request, "imageVersion"))

    async def get(request: Request) -> dict:
        return mgr.get(mid(request))

    async def terminate(request: Request) -> None:
        await mgr.terminate(mid(request))

    async def suspend(request: Request) -> None:
        await mgr.suspend(mid(request))

    async def resume(request: Request) -> None:
        await mgr.resume(mid(request))

    async def auth_token(request: Request) -> dict:
        return mgr.auth_token(mid(request), await read_json(request))

    async def shell_token(request: Request) -> dict:
        mgr.get_instance(mid(request))
        raise ApiError("ValidationException", "Shell access needs the SHELL_INGRESS network connector, which Lamina "
                       "does not provide; use CreateMicrovmAuthToken and the HTTP/WebSocket endpoint instead.")

    # images
    async def create_image(request: Request) -> dict:
        return images.create(await read_json(request))

    async def list_images(request: Request) -> dict:
        return images.list(*page_args(request), q(request, "nameFilter"))

    async def get_image(request: Request) -> dict:
        return images.describe(images.image(img(request)))

    async def update_image(request: Request) -> dict:
        return images.update(img(request), await read_json(request))

    async def delete_image(request: Request) -> dict:
        return images.delete(img(request))

    async def list_versions(request: Request) -> dict:
        return images.list_versions(img(request), *page_args(request))

    async def get_version(request: Request) -> dict:
        return images.describe_version(images.version(img(request), request.path_params["version"]))

    async def update_version(request: Request) -> dict:
        return images.update_version(img(request), request.path_params["version"], await read_json(request))

    async def delete_version(request: Request) -> dict:
        return images.delete_version(img(request), request.path_params["version"])

    async def list_builds(request: Request) -> dict:
        filters = {k: q(request, k) or "" for k in ("architecture", "chipset", "chipsetGeneration")}
        return images.list_builds(img(request), request.path_params["version"], *page_args(request), filters)

    async def get_build(request: Request) -> dict:
        row = images.get_build(img(request), request.path_params["version"], request.path_params["build"])
        return images.describe_build(row)

    async def build_log(request: Request) -> Response:
        try:
            offset = max(0, int(q(request, "offset") or 0))
        except ValueError:
            raise ApiError("ValidationException", "offset must be an integer") from None
        text, state = images.build_log(img(request), request.path_params["version"], request.path_params["build"],
                                       offset)
        return PlainTextResponse(text, headers={"x-lamina-build-state": state})

    # managed base images: the host's read-only base is the one base image
    base_arn = f"arn:aws:lambda:{settings.region}:aws:microvm-image:{MANAGED_BASE}"

    async def list_managed(request: Request) -> dict:
        page_args(request)
        return {"items": [{"imageArn": base_arn, "createdAt": 0}]}

    async def list_managed_versions(request: Request) -> dict:
        page_args(request)
        if img(request) not in (base_arn, MANAGED_BASE):
            raise ApiError("ResourceNotFoundException", f"No managed MicroVM image {img(request)}; the one base image "
                           f"is {base_arn}.")
        return {"items": [{"imageArn": base_arn, "imageVersion": "1", "status": "AVAILABLE", "createdAt": 0}]}

    # tags (microvm images only)
    async def list_tags(request: Request) -> dict:
        return {"Tags": images.tags(request.path_params["arn"])}

    async def tag(request: Request) -> None:
        body = await read_json(request)
        if not isinstance(body.get("Tags"), dict):
            raise ApiError("ValidationException", "Tags must be a map of strings.")
        images.tag(request.path_params["arn"], body["Tags"])

    async def untag(request: Request) -> None:
        images.untag(request.path_params["arn"], request.query_params.getlist("tagKeys"))

    # Lamina: the application's stdout and stderr, while the instance lives
    async def app_log(request: Request) -> Response:
        try:
            offset = max(0, int(q(request, "offset") or 0))
        except ValueError:
            raise ApiError("ValidationException", "offset must be an integer") from None
        mvm = mgr.get_instance(mid(request))
        path = getattr(mvm.handle, "log_path", None)
        data = await asyncio.get_running_loop().run_in_executor(None, _read_log, path, offset)
        return Response(data, media_type="text/plain; charset=utf-8",
                        headers={"x-lamina-microvm-state": mvm.state, "x-lamina-next-offset": str(offset + len(data))})

    # Lamina: uploads
    async def upload(request: Request) -> Response:
        folder, tmp = images.upload_path()
        digest = hashlib.sha256()
        try:
            with open(tmp, "wb") as fh:
                async for chunk in request.stream():
                    digest.update(chunk)
                    fh.write(chunk)
            uri = images.finish_upload(tmp, digest)
        finally:
            tmp.unlink(missing_ok=True)
        return json_response({"uri": uri}, 201)

    vers = P + "/microvm-images/{image}/versions/{version}"
    return [
        Route(P + "/microvms", _api(run), methods=["POST"]),
        Route(P + "/microvms", _api(list_microvms), methods=["GET"]),
        Route(P + "/microvms/{microvm}", _api(get), methods=["GET"]),
        Route(P + "/microvms/{microvm}", _api(terminate), methods=["DELETE"]),
        Route(P + "/microvms/{microvm}/suspend", _api(suspend), methods=["POST"]),
        Route(P + "/microvms/{microvm}/resume", _api(resume), methods=["POST"]),
        Route(P + "/microvms/{microvm}/auth-token", _api(auth_token), methods=["POST"]),
        Route(P + "/microvms/{microvm}/shell-auth-token", _api(shell_token), methods=["POST"]),
        Route(P + "/microvm-images", _api(create_image, 201), methods=["POST"]),
        Route(P + "/microvm-images", _api(list_images), methods=["GET"]),
        Route(P + "/microvm-images/{image}", _api(get_image), methods=["GET"]),
        Route(P + "/microvm-images/{image}", _api(update_image), methods=["PUT"]),
        Route(P + "/microvm-images/{image}", _api(delete_image), methods=["DELETE"]),
        Route(P + "/microvm-images/{image}/versions", _api(list_versions), methods=["GET"]),
        Route(vers, _api(get_version), methods=["GET"]),
        Route(vers, _api(update_version), methods=["PATCH"]),
        Route(vers, _api(delete_version), methods=["DELETE"]),
        Route(vers + "/builds", _api(list_builds), methods=["GET"]),
        Route(vers + "/builds/{build}", _api(get_build), methods=["GET"]),
        Route(P + "/managed-microvm-images", _api(list_managed), methods=["GET"]),
        Route(P + "/managed-microvm-images/{image}/versions", _api(list_managed_versions), methods=["GET"]),
        Route("/2017-03-31/tags/{arn:microvm_image_arn}", _api(list_tags), methods=["GET"]),
        Route("/2017-03-31/tags/{arn:microvm_image_arn}", _api(tag, 204), methods=["POST"]),
        Route("/2017-03-31/tags/{arn:microvm_image_arn}", _api(untag, 204), methods=["DELETE"]),
        Route(UPLOAD_PATH, _api(upload), methods=["POST"]),
        Route("/lamina/v1/microvm-images/{image}/versions/{version}/builds/{build}/log", _api(build_log),
              methods=["GET"]),
        Route("/lamina/v1/microvms/{microvm}/log", _api(app_log), methods=["GET"]),
    ]
