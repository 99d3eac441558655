"""FunctionPool._census counts what a scan of the pool's environments would find (busy; stopping or gone), through
deliveries, results, stops while starting and idle, and environments that go away busy."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from pool_fake import ScriptedEnv, scripted_pool

from lamina.dispatch.environment import State
from lamina.dispatch.invocation import Invocation
from lamina.dispatch.pool import FunctionPool


class FakeEnv(ScriptedEnv):
    """Stops as a process does (STOPPING, gone later) and can go away busy (a crash, a timeout)."""

    def __init__(self, pool: FunctionPool) -> None:
        super().__init__(pool)
        self.init_ms = 5.0

    def stop(self) -> None:
        self.state = State.STOPPING   # gone later, as a process takes a moment to exit

    def gone(self) -> None:
        self.state = State.DEAD
        self.pool.env_gone(self)  # type: ignore[arg-type]


def _scan(pool: FunctionPool) -> tuple[int, int]:
    return (sum(1 for e in pool.envs if e.state is State.BUSY),
            sum(1 for e in pool.envs if e.state in (State.STOPPING, State.DEAD)))


def test_census_matches_a_scan(tmp_path: Path) -> None:
    async def run() -> None:
        pool, envs = scripted_pool(tmp_path, "python3.11", rate=10_000, env_type=FakeEnv)
        rng = random.Random(7)
        for step in range(3000):
            action = rng.random()
            if action < 0.35:
                pool.submit(Invocation(str(step), b"{}", "arn", sync=False))
            else:
                live = [e for e in envs if e.state is not State.DEAD]
                if not live:
                    continue
                env = rng.choice(live)
                if env.state is State.STARTING and action < 0.6:
                    env.ready()
                elif env.state is State.BUSY and action < 0.8:
                    env.finish()
                elif env.state is State.BUSY and action < 0.82:
                    env.gone()   # died with an invocation (a crash, a timeout)
                elif env.state in (State.IDLE, State.STARTING) and action < 0.86:
                    if env in pool.idle:
                        pool.idle.remove(env)  # type: ignore[arg-type]
                    env.stop()
                elif env.state is State.STOPPING:
                    env.gone()
            assert pool._census() == _scan(pool), step
            assert pool.busy == _scan(pool)[0]

    asyncio.run(run())
