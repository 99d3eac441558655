"""GET /metrics: the Prometheus exposition of a registry the server composes (each part brings its own collector),
in the text format or OpenMetrics as the scraper's Accept header asks."""

from __future__ import annotations

from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

PATH = "/metrics"


def route(registry: CollectorRegistry | None) -> Route:
    """The /metrics route; with no registry (metrics turned off) it says so with a 404."""

    async def metrics(request: Request) -> Response:
        if registry is None:
            return PlainTextResponse("Metrics are turned off on this server (setting metrics = false).\n", 404)
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(registry), headers={"Content-Type": content_type})

    return Route(PATH, metrics, methods=["GET"])
