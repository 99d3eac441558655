"""A SQLite writer thread with group commit, for stores whose writes must not block the event loop.

The pattern of store/async_events.py, made generic: operations are handed in from the event loop, a writer
thread with its own connection applies every operation that arrived while the previous commit was under way
in one transaction (one fsync for all of them), and each operation's caller is told on the event loop once
its transaction is committed. Consecutive operations of one kind are applied together (`Kind.apply` gets all
their arguments: one multi-row statement where it can).

A batched kind's callers are told once per commit: `done(args, result)` with the arguments of all the operations of
that kind in the transaction that named the same `done` (no closure per operation for a caller with one callback,
such as the async queue's accepts).

Operations handed in on the event loop's thread take no lock: they are appended to the queue (a deque: appends and
the writer's pops from the other end are atomic) and the writer is woken once, at the end of the loop turn.

Lazy kinds (removals, bookkeeping nobody waits for) ride along with the next commit someone does wait for, or
go after LAZY_S: lost in a crash, such an operation's effect is only undone (a deleted message comes back,
which at-least-once delivery allows).

Durability is `async_durability`'s: "fsync" commits with synchronous=FULL (survives power loss), "os" with
NORMAL (survives the process being killed). A commit of lazy operations alone is NORMAL either way: it may be lost
anyway, the next FULL commit's fsync of the WAL takes its frames too, and a commit someone waits for no longer
queues behind its fsync (a SendMessage behind a receive's bookkeeping).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("lamina.store")

DURABILITY = ("fsync", "os")

LAZY_S = 0.05

Done = Callable[..., None]   # done(result); done(args, result) for a batched kind


def connect(path: Path, durability: str) -> sqlite3.Connection:
    """A connection for the queue's writes, in WAL mode with the durability asked for."""
    if durability not in DURABILITY:
        raise ValueError(f"async_durability must be one of {', '.join(DURABILITY)}, not {durability!r}")
    # A statement cache big enough for the multi-row statements of every size a batch has (store/async_events.py).
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30.0,
                           cached_statements=1024)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=" + ("FULL" if durability == "fsync" else "NORMAL"))
    # The statement journal (the pages a statement changes that an earlier statement of the same transaction
    # changed too, kept to undo that statement alone) in memory: on disk, a batch's second statement spilled it into
    # a temporary file created, written page by page and unlinked in every transaction. It is not needed after a
    # crash (the WAL is), so this changes nothing about durability.
    conn.execute("PRAGMA temp_store=MEMORY")
    return conn


@dataclass(frozen=True, slots=True, eq=False)
class Kind:
    """A kind of write. apply(conn, args) runs inside the transaction for a run of consecutive operations of this
    kind and returns one result per argument (or None: all None). `batched`: an operation's done is called as
    done(args, result), once per commit for all the operations of this kind that named the same done (result: None,
    or the exception the transaction raised); apply must return None."""

    name: str
    apply: Callable[[sqlite3.Connection, list[Any]], list[Any] | None]
    lazy: bool = False
    batched: bool = False


class GroupCommitWriter:
    def __init__(self, path: Path, durability: str = "fsync", name: str = "lamina-writer") -> None:
        self.path = path
        self.durability = durability
        self.name = name
        self.conn = connect(path, durability)
        self._cv = threading.Condition()
        self._ops: deque[tuple[Kind, Any, Done | None]] = deque()
        self._busy = False
        self._urgent = False
        self._kick_due = False     # a _kick is scheduled on the loop (the end of this loop turn); loop thread only
        self._turn_urgent = False  # an operation someone waits for was handed in this loop turn; loop thread only
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self.commits = 0
        self.committed_ops = 0

    def open(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start the writer thread; until then the connection may be used directly (loading, recovery)."""
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._thread = threading.Thread(target=self._writer, name=self.name, daemon=True)
        self._thread.start()

    def put(self, kind: Kind, arg: Any, done: Done | None = None) -> None:
        """Queue one operation; done(result or exception) on the loop once committed (done(args, result) for a
        batched kind, see Kind).

        An operation someone waits for is committed with everything else handed in during the same loop turn: the
        writer is woken once, at the end of the turn (when it is idle; a busy one takes them all when its commit
        ends). One turn's requests (all the connections that had one ready) thus share a commit, and the writer
        thread is not woken to commit the first of them alone. On the loop's thread this takes no lock (see the
        module's docstring)."""
        if self._loop_thread is not None and threading.get_ident() == self._loop_thread:
            self._ops.append((kind, arg, done))
            if not kind.lazy:
                self._turn_urgent = True
            if not self._kick_due:
                self._kick_due = True
                self._loop.call_soon(self._kick)  # type: ignore[union-attr]  # set with _loop_thread
            return
        with self._cv:
            self._ops.append((kind, arg, done))
            if kind.lazy:
                if len(self._ops) == 1 and not self._busy:
                    self._cv.notify()
                return
            self._urgent = True
            if not self._busy:
                self._cv.notify()

    def _kick(self) -> None:
        """The end of a loop turn in which operations were handed in: the writer takes them (at once when one of them
        is waited for; lazy ones alone wait for LAZY_S or the next such commit)."""
        with self._cv:
            self._kick_due = False
            if self._turn_urgent:
                self._turn_urgent = False
                self._urgent = True
            if not self._busy:
                self._cv.notify()

    async def commit(self, kind: Kind, arg: Any) -> Any:
        """put() and wait for the commit; raises what the transaction raised."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.put(kind, arg, future.set_result)
        result = await future
        if isinstance(result, BaseException):
            raise result
        return result

    def flush(self, timeout: float) -> bool:
        """Wait (blocking) until everything handed in so far is committed; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cv:
            self._urgent = True
            self._cv.notify_all()
            while self._ops or self._busy:
                left = deadline - time.monotonic()
                if left <= 0 or self._thread is None or not self._thread.is_alive():
                    return not self._ops and not self._busy
                self._cv.wait(min(left, 0.05))
        return True

    def close(self) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(30.0)
        elif self._ops:
            self._run(list(self._ops))   # never opened: apply what was handed in, inline
            self._ops.clear()
        self.conn.close()

    def _writer(self) -> None:
        cv = self._cv
        while True:
            with cv:
                self._busy = False
                cv.notify_all()
                deadline = None
                while not (self._ops and (self._urgent or self._stopping)):
                    if not self._ops:
                        if self._stopping:
                            return
                        self._urgent = False   # a kick (or a flush) whose operations went with the last commit
                        deadline = None
                        cv.wait()
                        continue
                    # Only lazy operations: they wait for one someone waits for, or LAZY_S.
                    deadline = deadline or time.monotonic() + LAZY_S
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    cv.wait(left)
                # Popped, not copied and cleared: the loop's thread appends without the lock.
                ops = self._ops
                batch = [ops.popleft() for _ in range(len(ops))]
                self._urgent = False
                self._busy = True
            self._run(batch)

    def _run(self, batch: list[tuple[Kind, Any, Done | None]]) -> None:
        try:
            results = self._apply(batch)
        except Exception as exc:  # the whole transaction failed: every operation in it did
            log.exception("%s: a commit of %d operation(s) failed", self.name, len(batch))
            results = [exc] * len(batch)
        self.commits += 1
        self.committed_ops += len(batch)
        if self._loop is not None and any(done is not None for _, _, done in batch):
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                self._loop.call_soon_threadsafe(_deliver, batch, results)

    def _apply(self, batch: list[tuple[Kind, Any, Done | None]]) -> list[Any]:
        conn = self.conn
        if self.durability == "fsync" and all(op[0].lazy for op in batch):
            conn.execute("PRAGMA synchronous=NORMAL")
            try:
                return self._transaction(batch)
            finally:
                conn.execute("PRAGMA synchronous=FULL")
        return self._transaction(batch)

    def _transaction(self, batch: list[tuple[Kind, Any, Done | None]]) -> list[Any]:
        conn = self.conn
        results: list[Any] = [None] * len(batch)
        conn.execute("BEGIN IMMEDIATE")
        try:
            i = 0
            n = len(batch)
            while i < n:
                kind = batch[i][0]
                j = i + 1
                while j < n and batch[j][0] is kind:
                    j += 1
                out = kind.apply(conn, [op[1] for op in batch[i:j]])
                if out is not None:
                    results[i:j] = out
                i = j
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return results


def _deliver(batch: list[tuple[Kind, Any, Done | None]], results: list[Any]) -> None:
    grouped: dict[tuple[Kind, Any], tuple[Any, list[Any]]] | None = None   # batched kinds: (kind, done) -> result, args
    for (kind, arg, done), result in zip(batch, results, strict=True):
        if done is None:
            continue
        if kind.batched:
            if grouped is None:
                grouped = {}
            entry = grouped.get((kind, done))
            if entry is None:
                grouped[(kind, done)] = (result, [arg])   # one transaction: the same result for all of them
            else:
                entry[1].append(arg)
            continue
        try:
            done(result)
        except Exception:
            log.exception("%s: a callback failed", kind.name)
    if grouped is not None:
        for (kind, done), (result, args) in grouped.items():
            try:
                done(args, result)
            except Exception:
                log.exception("%s: a callback failed", kind.name)
