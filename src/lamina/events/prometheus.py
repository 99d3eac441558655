"""Asynchronous invocation's Prometheus metrics: the durable queue's depth and age and the delivery counters, read
from AsyncInvoker.stats() when scraped."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from lamina.events.delivery import AsyncInvoker


class AsyncEventsCollector(Collector):
    def __init__(self, invoker: AsyncInvoker) -> None:
        self.invoker = invoker

    def collect(self) -> Iterator[Metric]:
        s = self.invoker.stats()
        yield GaugeMetricFamily("lamina_async_events_queued", "Accepted Event invokes not yet done (queued, running "
                                "or waiting to retry).", value=s["depth"])
        yield GaugeMetricFamily("lamina_async_events_oldest_age_seconds", "Age of the oldest event in the queue.",
                                value=s["oldest_age_seconds"] or 0.0)
        yield GaugeMetricFamily("lamina_async_events_running", "Events being invoked now.", value=s["running"])
        for name, key, help_ in (
            ("accepted", "accepted", "Event invokes accepted (committed, then answered 202)."),
            ("succeeded", "succeeded", "Events whose invocation succeeded."),
            ("failed", "failed", "Events given up on (retries or maximum age exhausted)."),
            ("retries", "retries", "Attempts after the first."),
            ("throttled", "throttled", "Attempts throttled (retried with backoff)."),
            ("destination_failures", "destination_failures", "Destination or DLQ deliveries that failed."),
            ("redelivered", "redelivered", "Events run again because a stop cut them short."),
        ):
            yield CounterMetricFamily(f"lamina_async_events_{name}", help_, value=s[key] or 0)
