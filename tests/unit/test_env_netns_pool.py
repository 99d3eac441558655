"""The pool of pre-wired environment namespaces (net/plumbing.EnvPool), with pipes' read ends standing in for
namespaces (the write end tells whether the pool closed it) and a hub that wires nothing: kept full, grows when a
burst outruns it and shrinks back after, closes everything it holds, and one being made when it closes is closed
once made."""

from __future__ import annotations

import asyncio
import os
import threading

from lamina.net import plumbing


class _Hub:
    def wire(self, fd: int) -> str:
        return "100.64.0.2"


class _Made:
    """What `make` made: read ends handed to the pool, each with its write end kept here."""

    def __init__(self) -> None:
        self.writers: dict[int, int] = {}
        self.order: list[int] = []

    def __call__(self) -> int:
        r, w = os.pipe()
        self.writers[r] = w
        self.order.append(r)
        return r

    def is_open(self, r: int) -> bool:
        """Whether the read end made as r is still open somewhere (ours or the pool's)."""
        try:
            os.write(self.writers[r], b"x")
        except BrokenPipeError:
            return False
        return True


async def _until(check, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def _pool(size: int, make=None) -> tuple[plumbing.EnvPool, _Made]:
    made = _Made()
    hub = asyncio.get_running_loop().create_future()
    hub.set_result(_Hub())
    return plumbing.EnvPool(hub, make or made, size), made


def test_grows_on_a_miss_and_is_back_to_its_size_after_the_burst(monkeypatch) -> None:
    monkeypatch.setattr(plumbing, "BURST_OVER_S", 0.3)

    async def go() -> None:
        pool, made = _pool(2)
        await _until(lambda: len(pool.ready) == 2)
        # Three takes in a row: no refill runs in between, so the third finds the pool empty.
        taken = [await pool.take() for _ in range(3)]
        assert pool.misses == 1 and pool.size == 4
        await _until(lambda: len(pool.ready) == 4)
        taken += [await pool.take() for _ in range(5)]   # a second miss: doubles again
        assert pool.misses == 2 and pool.size == 8
        await _until(lambda: len(pool.ready) == 8)
        extras = list(pool.ready)
        await _until(lambda: pool.size == 2 and len(pool.ready) == 2, timeout=5)
        held = list(pool.ready)
        assert [made.is_open(r) for r in extras] == [r in held for r in extras]   # the others were closed
        assert all(made.is_open(r) for r in taken)                                 # the pool's no more
        pool.close()
        assert not any(made.is_open(r) for r in held)

    asyncio.run(go())


def test_size_zero_never_grows() -> None:
    async def go() -> None:
        pool, made = _pool(0)
        fd = await pool.take()
        assert pool.size == 0 and pool.ready == [] and made.order == [fd]
        os.close(fd)
        pool.close()

    asyncio.run(go())


def test_closing_while_one_is_being_made_closes_it_once_made() -> None:
    release = threading.Event()
    made = _Made()

    def slow_make() -> int:
        release.wait(5)
        return made()

    async def go() -> None:
        pool, _ = _pool(1, slow_make)
        await asyncio.sleep(0.05)        # the refill is waiting in slow_make
        pool.close()
        release.set()
        await _until(lambda: bool(made.order))
        await _until(lambda: not made.is_open(made.order[0]))

    asyncio.run(go())

