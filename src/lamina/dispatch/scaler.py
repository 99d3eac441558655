"""How many environments a function should have: lambda-dispatch's formulas (spec/dispatch.md §1.6).

Pure arithmetic plus two small stateful helpers (a token bucket and an EWMA), so the pool's
scaling decisions can be unit-tested against lambda-dispatch's own test vectors.
"""

from __future__ import annotations

import math
import time


def target_per_environment(max_concurrency: int, multiplier: float) -> int:
    """T: the steady-state in-flight count aimed for per environment (headroom for bursts)."""
    return max(1, math.ceil(max_concurrency / multiplier))


def simple_desired(pending: int, running: int, max_concurrency: int, multiplier: float = 2.0) -> int:
    """desired = ceil(1.2 * (running / T + pending / (2 M))); 0 when there is nothing to do."""
    if pending <= 0 and running <= 0:
        return 0
    t = target_per_environment(max_concurrency, multiplier)
    x = running / t + pending / max_concurrency / 2
    n = math.ceil(x)
    if n < 1.2 * x:
        n = math.ceil(1.2 * x)
    return n


def ewma_desired(rps: float, duration_ms: float, current: int, max_concurrency: int,
                 multiplier: float = 2.0) -> int:
    """From the request rate and duration: enough environments at T in flight each, +20%."""
    t = target_per_environment(max_concurrency, multiplier)
    rps_per_env = 1000.0 / max(2.0, duration_ms) * t
    n = math.ceil(rps / rps_per_env * 1.2)
    if n == current - 1:  # hysteresis: never scale in by just one
        n = current
    return n


def constrain(proposed: int, current: int, max_step: int = 5, out_fraction: float = 0.33,
              in_fraction: float = 0.33) -> int:
    """Limit one scaling step to max(max_step, fraction of current) either way; 0 is always allowed."""
    if proposed == 0:
        return 0
    if proposed > current:
        return min(proposed, current + max(max_step, math.ceil(current * out_fraction)))
    if proposed < current:
        return max(proposed, current - max(max_step, math.ceil(current * in_fraction)))
    return proposed


class TokenBucket:
    """`capacity` tokens, one more every `interval_s`."""

    def __init__(self, capacity: int, interval_s: float, clock=time.monotonic) -> None:
        self.capacity = capacity
        self.interval_s = interval_s
        self._clock = clock
        self._tokens = float(capacity)
        self._last = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) / self.interval_s)
        self._last = now

    def take(self) -> bool:
        self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    def wait_s(self) -> float:
        """How long until a token is available."""
        self._refill()
        return 0.0 if self._tokens >= 1 else (1 - self._tokens) * self.interval_s


class Ewma:
    """Exponentially weighted moving averages of request rate and duration, ticked every 100 ms; and the
    recent duration per sample (recent_ms), which needs no tick."""

    TICK_S = 0.1
    RECENT_ALPHA = 0.2

    def __init__(self, window_s: float = 5.0) -> None:
        self.alpha = 1 - math.exp(-self.TICK_S / window_s)
        self.rps = 0.0
        self.duration_ms = 0.0
        self.recent_ms: float | None = None
        self._count = 0
        self._sum_ms = 0.0

    def record(self, duration_ms: float) -> None:
        # Sums, not a list of samples: only the EWMA scaler ticks, and an untick'd list would grow forever.
        self._count += 1
        self._sum_ms += duration_ms
        recent = self.recent_ms
        self.recent_ms = duration_ms if recent is None else recent + self.RECENT_ALPHA * (duration_ms - recent)

    def tick(self) -> None:
        rate = self._count / self.TICK_S
        self.rps += self.alpha * (rate - self.rps)
        if self._count:  # a tick without samples leaves the duration alone (lambda-dispatch drags it to 0)
            mean = self._sum_ms / self._count
            self.duration_ms += self.alpha * (mean - self.duration_ms) if self.duration_ms else mean
        self._count = 0
        self._sum_ms = 0.0


def drain_desired(pending: int, max_concurrency: int, duration_ms: float, start_ms: float) -> int:
    """Environments enough to serve `pending` queued invocations within one environment start: an environment
    started beyond these would be ready only after the queue has drained through the others (lambda-dispatch's
    cold-start arithmetic: requests wait as long as a start only when Q / C x t >= T)."""
    if pending <= 0:
        return 0
    return max(1, math.ceil(pending * duration_ms / (max_concurrency * max(start_ms, 1.0))))


def start_is_cheap(start_ms: float | None, invocation_ms: float | None, interval_ms: float) -> bool:
    """Whether pacing scale-out in bounded steps only adds latency: a start measured here that is over within
    one pacing interval, or sooner than a running invocation frees its environment, is ready before the next
    paced step could begin or the queue could drain without it. lambda-dispatch paces because its starts
    cost seconds; a zygote fork costs milliseconds. Unknown (nothing started successfully yet: e.g. an init
    that always fails) is never cheap."""
    if start_ms is None:
        return False
    return start_ms <= max(interval_ms, invocation_ms or 0.0)
