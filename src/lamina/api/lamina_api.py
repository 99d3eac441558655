"""Routes of Lamina's own API under /lamina/v1: health, function logs, code download, recycling environments."""

from __future__ import annotations

from urllib.parse import unquote

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from lamina import __version__
from lamina.functions.errors import AwsError
from lamina.functions.registry import FunctionService
from lamina.functions.rest import json_response


def routes(functions: FunctionService) -> list[Route]:
    backend = functions.dispatcher.backend

    async def health(request: Request) -> Response:
        return json_response({"status": "ok", "version": __version__, "sandbox": backend.name,
                              "isolated": backend.isolated, "scheduling": backend.scheduling,
                              "functions": len(functions.functions),
                              # Language runtimes: each one's interpreter on this host, or why there is none.
                              "runtimes": functions.dispatcher.runtimes.as_dict(),
                              "environments": functions.dispatcher.environments,
                              # The async event queue: depth, oldest event's age, redelivered events, ...
                              "async": functions.event_sink.stats() if functions.event_sink is not None else None})

    async def logs(request: Request) -> Response:
        fn = functions.lookup(unquote(request.path_params["name"]))
        q = request.query_params
        try:
            start = int(q.get("start_time", "0"))
            limit = int(q["limit"]) if "limit" in q else None
        except ValueError:
            raise AwsError("InvalidParameterValueException", "start_time and limit must be integers.") from None
        if q.get("follow", "false").lower() in ("1", "true", "yes"):
            async def stream():
                async for record in functions.logs.follow(fn.name, start):
                    yield orjson.dumps(record) + b"\n"
            return StreamingResponse(stream(), media_type="application/x-ndjson")
        records = functions.logs.read(fn.name, start, limit)
        return Response(b"".join(orjson.dumps(r) + b"\n" for r in records), media_type="application/x-ndjson")

    async def code(request: Request) -> Response:
        """The package of $LATEST, or with ?sha= (GetFunction's Code.Location) of one of its versions."""
        fn = functions.lookup(unquote(request.path_params["name"]))
        sha = request.query_params.get("sha")
        known = {fn.code_hex, *(ver.code_hex for ver in fn.versions.values())}
        return Response(functions.code.read_zip(sha if sha in known else fn.code_hex), media_type="application/zip",
                        headers={"content-disposition": f'attachment; filename="{fn.name}.zip"'})

    async def list_functions(request: Request) -> Response:
        """Every function's $LATEST configuration with its State fields (ListFunctions leaves them out, as AWS's
        does): what `lamina ls` shows."""
        return json_response({"Functions": [dict(fn.config) for _, fn in sorted(functions.functions.items())]})

    async def recycle(request: Request) -> Response:
        """Stop the function's idle environments (its zygote stays): the next invoke starts fresh."""
        fn = functions.lookup(unquote(request.path_params["name"]))
        stopped = functions.dispatcher.recycle(fn.name)
        return json_response({"stopped": stopped})

    return [
        Route("/lamina/v1/health", health, methods=["GET"]),
        Route("/lamina/v1/functions", list_functions, methods=["GET"]),
        Route("/lamina/v1/functions/{name}/environments", recycle, methods=["DELETE"]),
        Route("/lamina/v1/functions/{name}/logs", logs, methods=["GET"]),
        Route("/lamina/v1/functions/{name}/code", code, methods=["GET"]),
    ]
