"""The durable async event queue on SQLite (store/async_events.py): group commit, claims, recovery."""

from __future__ import annotations

import asyncio
import time

import pytest

from lamina.store.async_events import AsyncEvent, SqliteEventQueue
from lamina.store.db import Database


def _event(i: int, claimed: bool = False, due: float = 0.0, fn: str = "f") -> AsyncEvent:
    now = time.time()
    return AsyncEvent(f"id-{i}", fn, "$LATEST", None, f"arn:aws:lambda:us-east-1:000000000000:function:{fn}",
                      b'{"n": %d}' % i, created=now, due=due or now, claimed=claimed)


@pytest.fixture
def queue(tmp_path):
    Database(tmp_path / "lamina.db").close()   # the migrations make the tables
    q = SqliteEventQueue(tmp_path / "lamina.db", "fsync")
    yield q
    q.close()


def test_concurrent_appends_share_commits(queue):
    async def main():
        queue.open(asyncio.get_running_loop())
        loop = asyncio.get_running_loop()
        futures = []
        for i in range(500):
            fut = loop.create_future()
            queue.append(_event(i), fut.set_result)
            futures.append(fut)
        results = await asyncio.gather(*futures)
        assert results == [None] * 500
    asyncio.run(main())
    assert queue.stats().depth == 500
    assert queue.commits < 500          # group commit: many appends per transaction


def test_claim_release_complete(queue):
    async def main():
        loop = asyncio.get_running_loop()
        queue.open(loop)
        later = time.time() + 3600
        for i, due in enumerate((0.0, 0.0, later)):
            fut = loop.create_future()
            queue.append(_event(i, due=due), fut.set_result)
            assert await fut is None
        got = loop.create_future()
        queue.claim(time.time(), 10, lambda events, next_due: got.set_result((events, next_due)))
        events, next_due = await got
        assert sorted(e.id for e in events) == ["id-0", "id-1"] and all(e.claimed for e in events)
        assert next_due == pytest.approx(later)
        # Claimed events are not claimed twice.
        again = loop.create_future()
        queue.claim(time.time(), 10, lambda events, next_due: again.set_result(events))
        assert await again == []
        e = events[0]
        e.attempts, e.due, e.last_error = 1, time.time() - 1, "Unhandled"
        queue.release(e)
        done = loop.create_future()
        queue.complete(events[1].id, done.set_result)
        await done
        third = loop.create_future()
        queue.claim(time.time(), 10, lambda events, next_due: third.set_result(events))
        (back,) = await third
        assert back.id == e.id and back.attempts == 1 and back.last_error == "Unhandled"
    asyncio.run(main())
    assert queue.stats().depth == 2
    assert [p.id for p in queue.pending("f", 10)] == ["id-0", "id-2"]


def test_recover_releases_what_a_stop_left_claimed(tmp_path):
    Database(tmp_path / "lamina.db").close()
    q = SqliteEventQueue(tmp_path / "lamina.db")

    async def fill():
        loop = asyncio.get_running_loop()
        q.open(loop)
        for i in range(3):
            fut = loop.create_future()
            q.append(_event(i, claimed=i < 2), fut.set_result)
            await fut
    asyncio.run(fill())
    q.close()   # as if killed: the claims stay in the database

    q2 = SqliteEventQueue(tmp_path / "lamina.db")
    try:
        assert q2.recover() == 2
        assert q2.recover() == 0
        stats = q2.stats()
        assert stats.depth == 3 and stats.redelivered == 2
        pending = {e.id: e for e in q2.pending("f", 10)}
        assert pending["id-0"].attempts == 1 and not pending["id-0"].claimed
        assert pending["id-2"].attempts == 0
    finally:
        q2.close()


def test_durability_setting_is_checked(tmp_path):
    Database(tmp_path / "lamina.db").close()
    with pytest.raises(ValueError, match="async_durability"):
        SqliteEventQueue(tmp_path / "lamina.db", "sometimes")


def test_add_tells_each_caller_once_per_commit(queue):
    """add(): one callback for all the events of a commit that named it, with each event's waiter, in order."""
    calls: list[tuple[list, object]] = []

    def appended(pairs, error):
        calls.append(([(e.id, w) for e, w in pairs], error))

    async def main():
        queue.open(asyncio.get_running_loop())
        for i in range(20):
            queue.add(_event(i), f"w{i}", appended)
        await asyncio.get_running_loop().run_in_executor(None, queue.flush, 10.0)
        await asyncio.sleep(0.05)   # the callbacks come on the loop after the commit
    asyncio.run(main())
    assert [p for pairs, _ in calls for p in pairs] == [(f"id-{i}", f"w{i}") for i in range(20)]
    assert all(error is None for _, error in calls)
    assert len(calls) == queue.commits   # all 20 were handed in in one loop turn: one commit, one call
    assert queue.stats().depth == 20


def test_fresh_and_other_rows_are_stored_alike(tmp_path):
    """insert_rows binds a commit of fresh events of one function version compactly (store/async_events.py
    _COMPACT); what is stored is the same as the full form stores, and a mixed batch takes the full form."""
    import sqlite3

    from lamina.store.async_events import _COLUMNS, insert_rows, row_of
    Database(tmp_path / "lamina.db").close()
    conn = sqlite3.connect(tmp_path / "lamina.db", isolation_level=None)
    now = time.time()
    fresh = [_event(i, claimed=i % 2 == 0) for i in range(5)]
    for e in fresh:
        e.created = e.due = now
    other = _event(9, fn="g")   # another function in the same batch
    other.created, other.due = now, now
    retried = AsyncEvent("id-r", "f", "3", "prod", "arn:aws:lambda:us-east-1:000000000000:function:f:prod", b"{}",
                         b'{"c": 1}', "Root=1-x", "t1", created=now - 5, attempts=2, throttles=1, due=now + 60,
                         claimed=False, last_error="Unhandled")
    insert_rows(conn, [row_of(e) for e in fresh])                 # compact
    insert_rows(conn, [row_of(e) for e in (fresh[0], other)])     # full: two functions
    insert_rows(conn, [row_of(retried)])                          # full: not fresh
    stored = {r[0]: r for r in conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM async_events")}
    conn.close()
    assert len(stored) == 7
    for e in (*fresh, other, retried):
        assert stored[e.id] == row_of(e)
