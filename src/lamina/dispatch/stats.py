"""Per function version counters the dispatcher keeps for /metrics: invocations, errors, throttles, durations,
environment starts.

Plain attributes and a list of bucket counts, bumped where the dispatcher already does per-invocation work (an
integer add and a bisect: no label lookup, no lock); the Prometheus collector (prometheus.py) reads them when
scraped. Kept per pool key in Dispatcher.stats, so they outlive a pool replaced by a configuration change.
"""

from __future__ import annotations

from bisect import bisect_left

# Histogram bucket upper bounds in milliseconds (exposed in seconds): from a warm fork's 1 ms to Lambda's 15 min.
DURATION_BOUNDS_MS: tuple[float, ...] = (1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000,
                                         60000, 300000, 900000)
START_BOUNDS_MS: tuple[float, ...] = (1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)


class Histogram:
    """Counts per bucket (the last one: above every bound) and the sum, in milliseconds."""

    __slots__ = ("bounds", "counts", "sum_ms")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum_ms = 0.0

    def observe(self, ms: float) -> None:
        self.counts[bisect_left(self.bounds, ms)] += 1
        self.sum_ms += ms

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound in seconds, observations at or below it), ending with +Inf: Prometheus's buckets."""
        out: list[tuple[float, int]] = []
        total = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            out.append((bound / 1000 if bound != float("inf") else bound, total))
        return out

    @property
    def count(self) -> int:
        return sum(self.counts)


class FunctionStats:
    """One function version's counters since the server started."""

    __slots__ = ("invocations", "errors", "durations", "throttles", "starts", "start_failures", "restores", "inits")

    def __init__(self) -> None:
        self.invocations = 0
        self.errors = 0                        # invocations that ended with a function error (timeouts, crashes too)
        self.durations = Histogram(DURATION_BOUNDS_MS)
        self.throttles: dict[str, int] = {}    # by AWS's Reason
        self.starts = 0                        # environments started (cold starts)
        self.start_failures = 0                # environments whose init failed
        self.restores = Histogram(START_BOUNDS_MS)   # start to ready of a fork of the zygote (Restore Duration)
        self.inits = Histogram(START_BOUNDS_MS)      # start to ready of a fresh process (Init Duration)

    def invoked(self, duration_ms: float, error: bool) -> None:
        self.invocations += 1
        if error:
            self.errors += 1
        durations = self.durations   # observe(), inline: once per invocation
        durations.counts[bisect_left(durations.bounds, duration_ms)] += 1
        durations.sum_ms += duration_ms

    def throttled(self, reason: str) -> None:
        self.throttles[reason] = self.throttles.get(reason, 0) + 1

    def started(self, restore_ms: float | None, init_ms: float | None) -> None:
        self.starts += 1
        if init_ms is not None:
            self.inits.observe(init_ms)
        elif restore_ms is not None:
            self.restores.observe(restore_ms)
