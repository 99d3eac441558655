"""Scale-out when starts are cheap (scaler.start_is_cheap, FunctionPool._scale): a start measured to be over within
one pacing interval, or sooner than an invocation, goes to the target at once instead of in paced, bounded steps;
unmeasured or slow starts keep lambda-dispatch's pacing."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from pool_fake import pool_with_a_busy_environment

from lamina.dispatch.invocation import Invocation
from lamina.dispatch.scaler import start_is_cheap


@pytest.mark.parametrize(("start_ms", "invocation_ms", "want"), [
    (None, None, False),     # nothing started yet
    (None, 100.0, False),    # an init that always fails never records a start: stays paced
    (5.0, None, True),       # a zygote fork timed at deploy, before any invocation finished (the burst bench)
    (100.0, None, True),     # ready by the next paced step
    (150.0, None, False),
    (1000.0, 100.0, False),  # the burst bench's custom runtime: a 1 s init against 100 ms invocations
    (1000.0, 5000.0, True),  # slow init, slower invocations: a start beats waiting for one to finish
])
def test_start_is_cheap_vectors(start_ms, invocation_ms, want):
    assert start_is_cheap(start_ms, invocation_ms, 100.0) is want


def _burst(tmp_path: Path, start_ms: float | None, recent_ms: float | None) -> int:
    """One busy environment, then 199 invocations arriving at once, within a pacing interval (the last
    scale-out is pinned to 'just now' so no real clock matters); returns how many starts were made."""
    async def run() -> int:
        pool, started = pool_with_a_busy_environment(tmp_path)
        pool.start_ms = start_ms
        pool.ewma.recent_ms = recent_ms
        pool._last_scale_out = time.monotonic() + 3600
        for i in range(199):
            pool._enqueue(Invocation(str(i), b"{}", "arn", sync=False))
        await asyncio.sleep(0.01)  # arrivals after the first are looked at together, a millisecond later
        if pool._scale_timer is not None:
            pool._scale_timer.cancel()
        return len(started)

    return asyncio.run(run())


def test_cheap_starts_go_to_the_target_as_invocations_arrive(tmp_path):
    # simple_desired(199 queued, 1 running) = 121 environments; one exists.
    assert _burst(tmp_path, start_ms=5.0, recent_ms=None) == 120
    assert _burst(tmp_path, start_ms=5.0, recent_ms=100.0) == 120


def test_slow_or_unmeasured_starts_stay_paced(tmp_path):
    assert _burst(tmp_path, start_ms=None, recent_ms=None) == 0
    assert _burst(tmp_path, start_ms=None, recent_ms=100.0) == 0
    assert _burst(tmp_path, start_ms=1000.0, recent_ms=100.0) == 0
