"""The pool's queue (FunctionPool): queued synchronous invocations fail with AWS's 429 once they have waited the
queue timeout, through one re-arming timer per pool; and with timings known, a queue that drains as expected starts
no environment beyond what the scaler asks for, while a stalled one does."""

from __future__ import annotations

import asyncio
import time

from pool_fake import pool_with_a_busy_environment

from lamina.dispatch.invocation import Invocation, Throttled


def _invocation(name: str, sync: bool, outcomes: dict[str, object]) -> Invocation:
    inv = Invocation(name, b"{}", "arn", sync=sync)
    inv.on_done = lambda outcome: outcomes.__setitem__(name, outcome)
    return inv


def test_queued_sync_invocations_fail_after_the_timeout(tmp_path):
    async def run() -> None:
        pool, _ = pool_with_a_busy_environment(tmp_path, queue_timeout_s=0.05)
        pool.start_ms = 1000.0  # slow, measured starts: nothing is started at once for them
        pool._last_scale_out = time.monotonic() + 3600
        outcomes: dict[str, object] = {}
        pool._enqueue(_invocation("s1", True, outcomes))
        pool._enqueue(_invocation("a1", False, outcomes))  # async invocations wait as long as it takes
        pool._enqueue(_invocation("s2", True, outcomes))
        served = pool.queue[2]
        pool.queue.remove(served)  # an environment took it: its deadline no longer applies
        await asyncio.sleep(0.03)
        pool._enqueue(_invocation("s3", True, outcomes))  # queued later: due later
        await asyncio.sleep(0.04)
        assert set(outcomes) == {"s1"}
        assert isinstance(outcomes["s1"], Throttled)
        assert outcomes["s1"].reason == "ConcurrentInvocationLimitExceeded"
        assert "waited 0.05 s for a free execution environment" in outcomes["s1"].message
        assert [inv.id for inv in pool.queue] == ["a1", "s3"]
        await asyncio.sleep(0.04)  # the timer re-armed itself for s3's deadline
        assert set(outcomes) == {"s1", "s3"}
        assert [inv.id for inv in pool.queue] == ["a1"]
        assert pool._expiry_timer is None  # nothing synchronous left to time
        for timer in (pool._scale_timer, pool._recheck_timer):
            if timer is not None:
                timer.cancel()

    asyncio.run(run())


def test_a_draining_queue_starts_nothing_until_it_stalls(tmp_path):
    async def run() -> None:
        pool, started = pool_with_a_busy_environment(tmp_path)
        pool.start_ms = 20.0      # a start takes 20 ms here
        pool.ewma.recent_ms = 1.0  # and an invocation 1 ms: the busy environment drains one queued soon enough
        pool._enqueue(Invocation("q1", b"{}", "arn", sync=False))
        assert started == []
        await asyncio.sleep(0.03)  # ... but it has not: the oldest waited longer than a start takes
        pool._scale()
        assert len(started) == 1
        if pool._scale_timer is not None:
            pool._scale_timer.cancel()

    asyncio.run(run())


def test_arrivals_to_a_waiting_queue_are_looked_at_together(tmp_path):
    async def run() -> None:
        pool, _ = pool_with_a_busy_environment(tmp_path)
        looks: list[int] = []
        scale = pool._scale
        pool._scale = lambda: (looks.append(len(pool.queue)), scale())[1]  # type: ignore[method-assign]
        for i in range(50):
            pool._enqueue(Invocation(str(i), b"{}", "arn", sync=False))
        assert looks == [1]  # the first arrival, at once
        await asyncio.sleep(0.01)
        assert looks == [1, 50]  # the other 49 together, a millisecond later
        if pool._scale_timer is not None:
            pool._scale_timer.cancel()

    asyncio.run(run())
