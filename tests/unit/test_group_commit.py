"""store/group_commit.py: a commit of lazy operations alone skips the fsync (synchronous=NORMAL for that transaction),
one that anybody waits for keeps the durability asked for."""

from __future__ import annotations

import asyncio
import sqlite3

from lamina.store.group_commit import GroupCommitWriter, Kind


def _recording(seen: list[tuple[str, int]], name: str):
    def apply(conn: sqlite3.Connection, args: list) -> None:
        seen.append((name, conn.execute("PRAGMA synchronous").fetchone()[0]))
        conn.executemany("INSERT INTO t (v) VALUES (?)", [(a,) for a in args])
    return apply


def test_lazy_only_commits_skip_the_fsync(tmp_path):
    path = tmp_path / "db.sqlite"
    sqlite3.connect(path).execute("CREATE TABLE t (v TEXT)").connection.close()
    seen: list[tuple[str, int]] = []
    lazy = Kind("lazy", _recording(seen, "lazy"), lazy=True)
    urgent = Kind("urgent", _recording(seen, "urgent"))

    async def main() -> None:
        writer = GroupCommitWriter(path, "fsync")
        writer.open(asyncio.get_running_loop())
        try:
            writer.put(lazy, "a")
            assert await asyncio.get_running_loop().run_in_executor(None, writer.flush, 10.0)
            await writer.commit(urgent, "b")
            done: asyncio.Future[object] = asyncio.get_running_loop().create_future()
            writer.put(urgent, "c", done.set_result)
            writer.put(lazy, "d")                 # rides along with the commit somebody waits for
            await done
        finally:
            writer.close()

    asyncio.run(main())
    # NORMAL (1) for the lazy-only commit, FULL (2) for the others, the lazy one that went with them included.
    assert seen == [("lazy", 1), ("urgent", 2), ("urgent", 2), ("lazy", 2)]
    conn = sqlite3.connect(path)
    assert [r[0] for r in conn.execute("SELECT v FROM t ORDER BY rowid")] == ["a", "b", "c", "d"]
    conn.close()


def test_os_durability_is_left_as_it_is(tmp_path):
    path = tmp_path / "db.sqlite"
    sqlite3.connect(path).execute("CREATE TABLE t (v TEXT)").connection.close()
    seen: list[tuple[str, int]] = []
    lazy = Kind("lazy", _recording(seen, "lazy"), lazy=True)

    async def main() -> None:
        writer = GroupCommitWriter(path, "os")
        writer.open(asyncio.get_running_loop())
        try:
            writer.put(lazy, "a")
            assert await asyncio.get_running_loop().run_in_executor(None, writer.flush, 10.0)
        finally:
            writer.close()

    asyncio.run(main())
    assert seen == [("lazy", 1)]


def test_batched_kind_calls_each_done_once_per_commit(tmp_path):
    """A batched kind's done gets all its operations' arguments of a commit in one call (per distinct done); puts
    from the loop's thread (no lock) and from another thread both get committed."""
    path = tmp_path / "db.sqlite"
    sqlite3.connect(path).execute("CREATE TABLE t (v TEXT)").connection.close()
    seen: list[tuple[str, int]] = []
    batched = Kind("batched", lambda conn, args: _recording(seen, "b")(conn, args), batched=True)
    calls: list[tuple[str, list, object]] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        writer = GroupCommitWriter(path, "fsync")
        writer.open(loop)
        try:
            def one(args, result):
                calls.append(("one", args, result))

            def two(args, result):
                calls.append(("two", args, result))
            for i in range(5):
                writer.put(batched, f"a{i}", one if i % 2 == 0 else two)
            await loop.run_in_executor(None, writer.flush, 10.0)
            await asyncio.sleep(0.05)
            # From another thread: the lock and an immediate wake-up, not the end of a loop turn.
            await loop.run_in_executor(None, writer.put, batched, "x", one)
            await loop.run_in_executor(None, writer.flush, 10.0)
            await asyncio.sleep(0.05)
        finally:
            writer.close()

    asyncio.run(main())
    assert calls == [("one", ["a0", "a2", "a4"], None), ("two", ["a1", "a3"], None), ("one", ["x"], None)]
    conn = sqlite3.connect(path)
    assert [r[0] for r in conn.execute("SELECT v FROM t ORDER BY rowid")] == ["a0", "a1", "a2", "a3", "a4", "x"]
    conn.close()
