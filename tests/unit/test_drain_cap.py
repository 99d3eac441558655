"""The scaler's drain cap (scaler.drain_desired, FunctionPool.drain_cap): when an environment start costs
much more than an invocation, no more environments are started than can serve the queue within one start."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from lamina.dispatch.dispatcher import Dispatcher
from lamina.dispatch.invocation import Invocation
from lamina.dispatch.pool import FunctionPool
from lamina.dispatch.scaler import Ewma, drain_desired
from lamina.dispatch.spec import FunctionSpec
from lamina.store.logs import LogStore


@pytest.mark.parametrize(("pending", "max_c", "dur_ms", "start_ms", "want"), [
    (0, 1, 100, 1000, 0),
    (1, 1, 100, 1000, 1),        # never below one while something waits
    (199, 1, 100, 1000, 20),     # the burst bench's shape: 20 environments drain 199 x 100 ms within 1 s
    (199, 1, 100, 10, 1990),     # a zygote fork: cheap starts, the cap is far above lambda-dispatch's formula
    (200, 10, 100, 1000, 2),     # ten at a time per environment
    (50, 1, 2000, 500, 200),     # long invocations: more environments than waiting requests is never asked
])
def test_drain_desired_vectors(pending, max_c, dur_ms, start_ms, want):
    assert drain_desired(pending, max_c, dur_ms, start_ms) == want


def test_ewma_keeps_sums_not_samples():
    ewma = Ewma()
    for _ in range(10_000):
        ewma.record(5.0)
    assert not hasattr(ewma, "_durations") and ewma.recent_ms == pytest.approx(5.0)
    ewma.tick()
    assert ewma.duration_ms == pytest.approx(5.0)


class _NoBackend:
    name = "none"
    isolated = False


def _pool(tmp_path: Path) -> FunctionPool:
    dispatcher = Dispatcher(_NoBackend(), LogStore(tmp_path / "logs"))  # type: ignore[arg-type]
    spec = FunctionSpec("f", "arn:aws:lambda:us-east-1:000000000000:function:f", "$LATEST", "provided.al2023",
                        "h", 128, 3, tmp_path, "sha")
    return FunctionPool(dispatcher, spec)


def test_pool_caps_a_burst_when_starts_are_slow(tmp_path):
    async def run() -> None:
        pool = _pool(tmp_path)
        started: list[object] = []
        pool.start_environment = lambda provisioned=False: started.append(1)  # type: ignore[method-assign]
        for i in range(199):
            pool.queue.append(Invocation(str(i), b"{}", "arn", sync=False))
        assert pool.drain_cap() is None  # nothing timed yet: lambda-dispatch's formula alone
        assert pool.desired() == 120
        pool.ewma.record(100.0)
        pool.start_ms = 1000.0
        assert pool.drain_cap() == 20 and pool.desired() == 20
        pool._scale()
        assert len(started) == 20  # a bounded target: one step (the starter's burst allows it)
        pool.start_ms = 5.0  # forks: the cap no longer binds, the formula does
        assert pool.desired() == 120
        pool.ewma.recent_ms = None  # nothing timed: lambda-dispatch's bounded step (5 from nothing)
        pool.start_ms = None  # (a timed cheap start would go to the target at once: test_cheap_starts.py)
        pool._last_scale_out = -1e9
        started.clear()
        pool._scale()
        assert len(started) == 5

    asyncio.run(run())
