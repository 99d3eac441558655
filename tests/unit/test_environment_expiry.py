"""Environments are replaced before the credentials they were started with expire (dispatch/service_access.py): an
expired one stops after its invocation instead of taking the next, the reaper stops idle ones (spares are started
again), and a Python zygote past its time is replaced by a new one, stopped once no fork of it is left."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from test_node_spares import inv, node_pool

from lamina.dispatch.environment import State


def run(fn) -> None:
    async def main() -> None:
        fn()

    asyncio.run(main())


def test_an_expired_environment_stops_instead_of_taking_more(tmp_path: Path) -> None:
    def body() -> None:
        pool, started = node_pool(tmp_path, spares=0)
        pool.start_environment()
        started[0].ready()
        pool.submit(inv(1))
        pool.submit(inv(2))  # queued behind the busy one
        started[0].expires_at = time.monotonic() - 1
        started[0].finish()
        assert started[0].state is State.DEAD and not started[0].given[1:]
        assert len(started) == 2  # a new environment is started for the queued invocation
        started[1].ready()
        assert [i.id for i in started[1].given] == ["2"]

    run(body)


def test_the_reaper_replaces_expired_idle_environments(tmp_path: Path) -> None:
    def body() -> None:
        pool, started = node_pool(tmp_path, spares=1)
        pool.keep_spares()
        started[0].ready()
        started[0].expires_at = time.monotonic() + 3600
        pool.reap(keep_warm_s=1e9)
        assert started[0].state is State.IDLE and len(started) == 1  # not yet
        started[0].expires_at = time.monotonic() - 1
        pool.reap(keep_warm_s=1e9)
        assert started[0].state is State.DEAD and len(started) == 2  # the spare is started again

    run(body)


class FakeZygote:
    def __init__(self, expires_at: float | None) -> None:
        self.expires_at = expires_at
        self.alive = True
        self.forks: dict[str, object] = {}
        self.stopped = False
        self.ready: asyncio.Future = asyncio.get_running_loop().create_future()
        self.ready.set_result(None)

    async def start(self) -> None:
        pass

    def stop(self) -> None:
        self.stopped = True
        self.alive = False


def test_an_expired_zygote_is_replaced_and_stopped_once_unused(tmp_path: Path) -> None:
    async def body() -> None:
        pool, _ = node_pool(tmp_path, runtime="python3.12", spares=0)
        made: list[FakeZygote] = []

        def new_zygote(_pool: object) -> FakeZygote:
            zygote = FakeZygote(time.monotonic() + 3600)
            made.append(zygote)
            return zygote

        import lamina.dispatch.pool as pool_module

        real = pool_module.Zygote
        pool_module.Zygote = new_zygote  # type: ignore[assignment,misc]
        try:
            first = await pool.zygote_for()
            assert await pool.zygote_for() is first  # not expired: the same
            first.forks["env"] = object()
            first.expires_at = time.monotonic() - 1
            second = await pool.zygote_for()
            assert second is not first and not first.stopped  # its fork still runs
            first.forks.clear()
            pool.retire_old_zygotes()
            assert first.stopped and not second.stopped
        finally:
            pool_module.Zygote = real  # type: ignore[misc]

    asyncio.run(body())
