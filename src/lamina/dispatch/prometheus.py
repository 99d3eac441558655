"""The dispatcher's Prometheus metrics, read from its own state when scraped (a custom collector): nothing here runs
per invocation. Counters come from stats.FunctionStats; gauges (concurrency, environments by state, queues) are
counted from the pools at scrape time."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from lamina.dispatch.dispatcher import Dispatcher
from lamina.dispatch.environment import State
from lamina.dispatch.stats import Histogram


def _histogram(family: HistogramMetricFamily, labels: list[str], hist: Histogram) -> None:
    family.add_metric(labels, [(_le(bound), count) for bound, count in hist.cumulative()], hist.sum_ms / 1000)


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


class DispatchCollector(Collector):
    """Invocations, errors, throttles, durations, environment starts, concurrency, environments and queues."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher

    def collect(self) -> Iterator[Metric]:
        d = self.dispatcher
        fv = ["function", "version"]
        invocations = CounterMetricFamily("lamina_invocations", "Invocations that ran (sync and async).", labels=fv)
        errors = CounterMetricFamily("lamina_invocation_errors",
                                     "Invocations that ended with a function error (timeouts and crashes too).",
                                     labels=fv)
        durations = HistogramMetricFamily("lamina_invocation_duration_seconds",
                                          "Invocation duration as REPORT's Duration.", labels=fv)
        throttles = CounterMetricFamily("lamina_throttles", "Synchronous invocations refused with 429, by Reason.",
                                        labels=[*fv, "reason"])
        starts = CounterMetricFamily("lamina_cold_starts", "Environments started (each one's first invocation is a "
                                     "cold start).", labels=fv)
        start_failures = CounterMetricFamily("lamina_environment_init_failures", "Environments whose init failed.",
                                             labels=fv)
        init = HistogramMetricFamily("lamina_environment_start_seconds",
                                     "Environment start to ready: restore (a fork of the zygote, Restore Duration) "
                                     "or init (a fresh process, Init Duration).", labels=[*fv, "kind"])
        for key, st in list((d.stats or {}).items()):
            name, _, version = key.partition(":")
            labels = [name, version]
            invocations.add_metric(labels, st.invocations)
            errors.add_metric(labels, st.errors)
            _histogram(durations, labels, st.durations)
            for reason, count in st.throttles.items():
                throttles.add_metric([*labels, reason], count)
            starts.add_metric(labels, st.starts)
            start_failures.add_metric(labels, st.start_failures)
            if st.restores.count:
                _histogram(init, [*labels, "restore"], st.restores)
            if st.inits.count:
                _histogram(init, [*labels, "init"], st.inits)
        yield from (invocations, errors, durations, throttles, starts, start_failures, init)

        concurrent = GaugeMetricFamily("lamina_concurrent_executions",
                                       "Invocations admitted and not finished (queued or running), per function.",
                                       labels=["function"])
        for name, count in list(d.inflight.items()):
            concurrent.add_metric([name], count)
        yield concurrent
        yield GaugeMetricFamily("lamina_account_concurrent_executions",
                                "Invocations admitted and not finished, all functions.", value=d.total_inflight)
        yield GaugeMetricFamily("lamina_account_concurrency_limit", "The account's concurrency limit.",
                                value=d.max_environments)
        yield GaugeMetricFamily("lamina_environments_total", "Environments started and not yet stopped, all "
                                "functions.", value=d.environments)

        envs = GaugeMetricFamily("lamina_environments", "Environments per function version by state (frozen: idle "
                                 "in the cgroup freezer).", labels=[*fv, "state"])
        depth = GaugeMetricFamily("lamina_dispatch_queue_depth",
                                  "Invocations waiting for a free environment.", labels=fv)
        age = GaugeMetricFamily("lamina_dispatch_queue_oldest_age_seconds",
                                "How long the oldest waiting invocation has waited.", labels=fv)
        counts: dict[tuple[str, str], dict[str, int]] = {}
        queued: dict[tuple[str, str], tuple[int, float | None]] = {}
        now = None
        with contextlib.suppress(RuntimeError):
            now = asyncio.get_running_loop().time()
        for pool in list(d.pools.values()):
            fkey = (pool.spec.name, pool.spec.version)
            by_state = counts.setdefault(fkey, {"starting": 0, "idle": 0, "frozen": 0, "busy": 0})
            for env in list(pool.envs):
                if env.state is State.STARTING:
                    by_state["starting"] += 1
                elif env.state is State.BUSY:
                    by_state["busy"] += 1
                elif env.state is State.IDLE:
                    by_state["frozen" if env.frozen else "idle"] += 1
            n, oldest = queued.get(fkey, (0, None))
            waiting = [inv.queued_at for inv in pool.queue if not inv.done]
            if waiting:
                first = min(waiting)
                oldest = first if oldest is None else min(oldest, first)
            queued[fkey] = (n + len(waiting), oldest)
        for fkey, by_state in counts.items():
            for state, count in by_state.items():
                envs.add_metric([*fkey, state], count)
        for fkey, (n, oldest) in queued.items():
            depth.add_metric(list(fkey), n)
            age.add_metric(list(fkey), max(0.0, now - oldest) if now is not None and oldest is not None else 0.0)
        yield from (envs, depth, age)

        backend = d.backend
        info = GaugeMetricFamily("lamina_sandbox_info", "The sandbox backend environments run in (value 1).",
                                 labels=["backend", "isolated", "scheduling"])
        info.add_metric([backend.name, str(backend.isolated).lower(), str(backend.scheduling)], 1)
        yield info
