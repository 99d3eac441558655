"""GET /metrics: the Prometheus exposition of a registry the server composes (each part brings its own collector),
in the text format or OpenMetrics as the scraper's Accept header asks. A part each account has (its dispatcher, its
async events, ...) is one collector over every account's (AccountsCollector)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector, CollectorRegistry
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

PATH = "/metrics"


class AccountsCollector(Collector):
    """One kind of part's collectors, one per account, merged into one family per metric name: the server's own
    account's samples as they are, another account's with an `account` label (a scraper sees one family, not one per
    account, which Prometheus would refuse)."""

    def __init__(self, home: Collector, others: Mapping[str, Collector]) -> None:
        self.home = home
        self.others = dict(others)

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for account, collector in [("", self.home), *self.others.items()]:
            for family in collector.collect():
                if account:
                    family.samples = [s._replace(labels={**s.labels, "account": account}) for s in family.samples]
                merged = families.get(family.name)
                if merged is None:
                    families[family.name] = family
                else:
                    merged.samples.extend(family.samples)
        yield from families.values()


def route(registry: CollectorRegistry | None) -> Route:
    """The /metrics route; with no registry (metrics turned off) it says so with a 404."""

    async def metrics(request: Request) -> Response:
        if registry is None:
            return PlainTextResponse("Metrics are turned off on this server (setting metrics = false).\n", 404)
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(registry), headers={"Content-Type": content_type})

    return Route(PATH, metrics, methods=["GET"])
