"""FunctionPool._census counts what a scan of the pool's environments would find (busy; stopping or gone), through
deliveries, results, stops while starting and idle, and environments that go away busy."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from pool_fake import NoBackend

from lamina.dispatch.dispatcher import Dispatcher
from lamina.dispatch.environment import State
from lamina.dispatch.invocation import Invocation
from lamina.dispatch.pool import FunctionPool
from lamina.dispatch.scaler import TokenBucket
from lamina.dispatch.spec import FunctionSpec
from lamina.store.logs import LogStore


class FakeEnv:
    def __init__(self, pool: FunctionPool) -> None:
        self.pool = pool
        self.state = State.STARTING
        self.invocations = 0
        self.provisioned = False
        self.idle_since = 0.0
        self.init_ms: float | None = 5.0
        self.restore_ms: float | None = None
        self.expires_at: float | None = None

    def ready(self) -> None:
        self.state = State.IDLE
        self.pool.env_ready(self, fresh=True)  # type: ignore[arg-type]

    def deliver(self, inv: Invocation) -> None:
        self.state = State.BUSY
        self.invocations += 1

    def finish(self) -> None:
        self.state = State.IDLE
        self.pool.env_ready(self, fresh=False)  # type: ignore[arg-type]

    def park(self) -> None:
        pass

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
        dispatcher = Dispatcher(NoBackend(), LogStore(tmp_path / "logs"))  # type: ignore[arg-type]
        dispatcher.starter = TokenBucket(10_000, 1.0)
        spec = FunctionSpec("f", "arn:aws:lambda:us-east-1:000000000000:function:f", "$LATEST", "python3.11",
                            "app.handler", 128, 3, tmp_path, "sha")
        pool = FunctionPool(dispatcher, spec)
        dispatcher.pools[spec.key] = pool
        envs: list[FakeEnv] = []

        def start_environment(provisioned: bool = False) -> FakeEnv:
            env = FakeEnv(pool)
            pool.envs.add(env)  # type: ignore[arg-type]
            pool.starting.add(env)  # type: ignore[arg-type]
            dispatcher.env_started()
            envs.append(env)
            return env

        pool.start_environment = start_environment  # type: ignore[method-assign,assignment]
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
