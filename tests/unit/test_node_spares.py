"""A Node.js function version keeps initialised spare environments (FunctionPool.keep_spares): taking one for an
invocation starts its replacement; warm environments are used before a spare; reaping and recycling keep the spares;
the function's and the account's limits bound them; Python functions, tenants' pools and failing inits keep none."""

from __future__ import annotations

import asyncio
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
    """An environment that starts when told (ready()), and records what it was given."""

    def __init__(self, pool: FunctionPool) -> None:
        self.pool = pool
        self.state = State.STARTING
        self.invocations = 0
        self.provisioned = False
        self.idle_since = 0.0
        self.init_ms: float | None = None
        self.restore_ms: float | None = None
        self.expires_at: float | None = None
        self.given: list[Invocation] = []

    def ready(self) -> None:
        self.state = State.IDLE
        self.init_ms = 50.0
        self.pool.env_ready(self, fresh=True)  # type: ignore[arg-type]

    def deliver(self, inv: Invocation) -> None:
        self.state = State.BUSY
        self.invocations += 1
        self.given.append(inv)

    def finish(self) -> None:
        self.state = State.IDLE
        self.pool.env_ready(self, fresh=False)  # type: ignore[arg-type]

    def park(self) -> None:
        pass

    def stop(self) -> None:
        self.state = State.DEAD
        self.pool.env_gone(self)  # type: ignore[arg-type]


def node_pool(tmp_path: Path, runtime: str = "nodejs20.x", spares: int = 1) -> tuple[FunctionPool, list[FakeEnv]]:
    dispatcher = Dispatcher(NoBackend(), LogStore(tmp_path / "logs"), node_spares=spares)  # type: ignore[arg-type]
    dispatcher.starter = TokenBucket(1000, 1.0)
    spec = FunctionSpec("f", "arn:aws:lambda:us-east-1:000000000000:function:f", "$LATEST", runtime,
                        "index.handler", 128, 3, tmp_path, "sha")
    pool = FunctionPool(dispatcher, spec)
    dispatcher.pools[spec.key] = pool
    started: list[FakeEnv] = []

    def start_environment(provisioned: bool = False) -> FakeEnv:
        env = FakeEnv(pool)
        pool.envs.add(env)  # type: ignore[arg-type]
        pool.starting.add(env)  # type: ignore[arg-type]
        dispatcher.env_started()
        started.append(env)
        return env

    pool.start_environment = start_environment  # type: ignore[method-assign,assignment]
    return pool, started


def inv(n: int) -> Invocation:
    return Invocation(str(n), b"{}", "arn", sync=False)


def run(coro_fn) -> None:
    async def main() -> None:
        coro_fn()

    asyncio.run(main())


def test_taking_the_spare_starts_another_and_warm_ones_go_first(tmp_path: Path) -> None:
    def body() -> None:
        pool, started = node_pool(tmp_path)
        pool.keep_spares()
        assert len(started) == 1  # the spare
        started[0].ready()
        pool.submit(inv(1))  # a cold start: the spare takes it, and its replacement starts
        assert started[0].given and len(started) == 2
        started[1].ready()
        started[0].finish()
        pool.submit(inv(2))  # the warm environment, not the spare
        assert len(started[0].given) == 2 and not started[1].given and len(started) == 2
        pool.submit(inv(3))  # the warm one is busy: the spare, and another spare starts
        assert started[1].given and len(started) == 3

    run(body)


def test_reap_and_recycle_keep_the_spares(tmp_path: Path) -> None:
    def body() -> None:
        pool, started = node_pool(tmp_path, spares=2)
        pool.keep_spares()
        for env in started:
            env.ready()
        pool.submit(inv(1))
        for env in started[2:]:
            env.ready()
        started[0].finish()
        assert len(pool.idle) == 3  # one used, two unused
        pool.reap(keep_warm_s=0.0)
        assert started[0].state is State.DEAD and [e.invocations for e in pool.idle] == [0, 0]
        pool.dispatcher.recycle("f")
        assert [e.invocations for e in pool.idle] == [0, 0]  # what the next cold start comes from stays

    run(body)


def test_limits_and_where_there_are_no_spares(tmp_path: Path) -> None:
    def body() -> None:
        pool, started = node_pool(tmp_path, spares=3)
        pool.dispatcher.set_reserved("f", 2)
        pool.keep_spares()
        assert len(started) == 2  # the reservation caps the environments
        for runtime in ("python3.12", "provided.al2023"):
            other, none = node_pool(tmp_path, runtime=runtime)
            other.keep_spares()
            assert other.spare_target == 0 and not none
        tenant, none = node_pool(tmp_path)
        tenant.parent = pool
        tenant.keep_spares()
        assert not none
        off, none = node_pool(tmp_path, spares=0)
        off.keep_spares()
        assert not none

    run(body)


def test_no_spares_while_init_fails(tmp_path: Path) -> None:
    def body() -> None:
        from lamina.dispatch.environment import InitFailure

        pool, started = node_pool(tmp_path)
        pool.keep_spares()
        pool.env_init_failed(started[0], InitFailure({"errorType": "Runtime.ImportModuleError"}, None))  # type: ignore[arg-type]
        started[0].state = State.DEAD
        pool.envs.discard(started[0])  # type: ignore[arg-type]
        pool.keep_spares()
        assert len(started) == 1

    run(body)
