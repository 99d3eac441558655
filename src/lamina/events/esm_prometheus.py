"""Event source mappings' Prometheus metrics, read from the running pollers when scraped: batches being invoked
and the poller's current concurrency limit, and its counters (invocations, filtered messages, failed batches,
throttles), labelled with the mapping, its function and its source queue. The source queue's depth and age are the
queue's own metrics (queues/prometheus.py, label `queue`)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from lamina.events.esm import EsmRunner

LABELS = ["uuid", "function", "queue"]


def _name(arn: str) -> str:
    """The last part of an ARN (a function's name with its qualifier, a queue's name)."""
    parts = arn.split(":")
    return ":".join(parts[6:]) if len(parts) > 6 else parts[-1]


class EsmCollector(Collector):
    def __init__(self, runner: EsmRunner) -> None:
        self.runner = runner

    def collect(self) -> Iterator[Metric]:
        active = GaugeMetricFamily("lamina_esm_batches_in_flight", "Batches the mapping is invoking its function "
                                   "with now.", labels=LABELS)
        limit = GaugeMetricFamily("lamina_esm_concurrency_limit", "Batches the mapping may invoke at once now "
                                  "(it grows with the backlog up to MaximumConcurrency).", labels=LABELS)
        counters = {key: CounterMetricFamily(f"lamina_esm_{name}", help_, labels=LABELS) for key, name, help_ in (
            ("Invocations", "invocations", "Invocations of the function with a batch."),
            ("Filtered", "filtered_messages", "Messages dropped by the mapping's FilterCriteria."),
            ("FailedBatches", "failed_batches", "Batches whose invocation failed or reported item failures."),
            ("Throttled", "throttles", "Invocations throttled (the batch was retried)."),
        )}
        for s in self.runner.stats():
            labels = [s["UUID"], _name(s["FunctionArn"]), _name(s["EventSourceArn"])]
            active.add_metric(labels, s["Concurrency"])
            limit.add_metric(labels, s["ConcurrencyLimit"])
            for key, family in counters.items():
                family.add_metric(labels, s[key] or 0)
        yield active
        yield limit
        yield from counters.values()
