"""A Node.js function version keeps initialised spare environments (FunctionPool.keep_spares): taking one for an
invocation starts its replacement; warm environments are used before a spare; reaping and recycling keep the spares;
the function's and the account's limits bound them; Python functions, tenants' pools and failing inits keep none."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pool_fake import ScriptedEnv as FakeEnv
from pool_fake import scripted_pool

from lamina.dispatch.environment import State
from lamina.dispatch.invocation import Invocation
from lamina.dispatch.pool import FunctionPool


def node_pool(tmp_path: Path, runtime: str = "nodejs20.x", spares: int = 1) -> tuple[FunctionPool, list[FakeEnv]]:
    return scripted_pool(tmp_path, runtime, spares)


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
