"""The durable queue of asynchronous (Event) invocations: its record, its storage interface, and SQLite's.

Every accepted Event invoke is a row here from before its 202 until it is done. The interface
(EventQueueStore) is what the delivery loop (events/) calls; it is written so that a PostgreSQL
implementation can stand behind it unchanged: `append` of events already claimed by this node (the
fast path: they run as soon as they are committed), `claim` of due events (`FOR UPDATE SKIP LOCKED`
there), `release` back to the queue with a new due time, `complete`, and `recover` of claims a dead
node left (at start-up here; a lease in a cluster). A node learns of new due work from its own calls
here; a PostgreSQL one would also LISTEN for other nodes' NOTIFY.

SQLite: one writer thread with its own connection applies every operation, and commits all those that
arrived while the previous commit was under way in one transaction — group commit: concurrent accepts
share one fsync, and the event loop never waits for the disk. Callbacks run on the event loop once
their transaction is committed.

Durability (`async_durability`): "fsync" (default) commits with `PRAGMA synchronous=FULL`: the WAL is
fsynced before an event's 202, so an accepted event survives a crash of the process, the OS or the
power. "os" commits with synchronous=NORMAL: an accepted event is in the OS's page cache before its
202, so it survives the process being killed but not a power loss or kernel crash.
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
from typing import Any, Protocol

log = logging.getLogger("lamina.events")

DURABILITY = ("fsync", "os")


@dataclass(slots=True, eq=False)
class AsyncEvent:
    """One accepted Event invocation, as queued. Its id is the request id the caller got, kept across retries
    (as on AWS: every attempt of an event has the same request id)."""

    id: str
    function: str                    # the function's name
    version: str                     # the version that runs it ($LATEST, "3"), picked when it was accepted
    qualifier: str | None            # as invoked: None, $LATEST, a version or an alias (its event-invoke config)
    invoked_arn: str                 # the ARN the function sees as invoked
    payload: bytes
    client_context: bytes | None = None   # the X-Amz-Client-Context JSON
    trace_id: str | None = None
    tenant_id: str | None = None
    created: float = 0.0             # epoch seconds: when it was accepted (its age runs from here)
    attempts: int = 0                # invocations started (approximateInvokeCount)
    throttles: int = 0               # times it was throttled or hit a system error (its backoff step)
    due: float = 0.0                 # epoch seconds: not to run before
    claimed: bool = False            # taken by this node to run
    last_error: str | None = None    # why the last attempt did not succeed (shown by `lamina events ls`)


@dataclass(slots=True)
class QueueStats:
    depth: int                       # events queued (waiting, waiting to retry, or running)
    oldest_created: float | None     # epoch seconds of the oldest one
    redelivered: int                 # events run again because a stop interrupted them (since the store began)


Done = Callable[[BaseException | None], None]


class EventQueueStore(Protocol):
    """Storage of the async event queue. Calls are made on the event loop and never block it on the disk;
    callbacks are called on the event loop once what they wait for is durable."""

    def open(self, loop: asyncio.AbstractEventLoop) -> None: ...

    def recover(self) -> int:
        """Release the claims a stopped node left (the events it was running); returns how many."""
        ...

    def append(self, event: AsyncEvent, done: Done) -> None:
        """Queue an event (claimed by this node if event.claimed); done(None) once it is committed."""
        ...

    def claim(self, now: float, limit: int, done: Callable[[list[AsyncEvent] | BaseException, float | None], None]
              ) -> None:
        """Claim up to `limit` unclaimed events due by `now`, oldest due first; done(events, next due time of the
        unclaimed events left, or None)."""
        ...

    def release(self, event: AsyncEvent) -> None:
        """Back to the queue, unclaimed, with the event's attempts, throttles, due and last_error."""
        ...

    def complete(self, event_id: str, done: Done | None = None) -> None:
        """The event is done: remove it."""
        ...

    def count_redelivered(self, n: int) -> None: ...

    def stats(self) -> QueueStats: ...

    def pending(self, function: str, limit: int) -> list[AsyncEvent]:
        """The queued events of one function, oldest first (payloads left out)."""
        ...

    def flush(self, timeout: float) -> bool:
        """Wait (blocking) until everything handed in so far is committed; False on timeout."""
        ...

    def close(self) -> None: ...


# Operations nobody waits for: committed with the next commit someone does wait for, or after LAZY_S.
_LAZY = frozenset({"complete", "release", "count"})
LAZY_S = 0.05

_COLUMNS = ("id", "function_name", "version", "qualifier", "invoked_arn", "payload", "client_context", "trace_id",
            "tenant_id", "created", "attempts", "throttles", "due", "claimed", "last_error")
_ROW = "(" + ", ".join("?" * len(_COLUMNS)) + ")"
_INSERT = f"INSERT OR REPLACE INTO async_events ({', '.join(_COLUMNS)}) VALUES "
# Multi-row statements in a few fixed sizes: a batch of n rows is a handful of statements (each one call into
# SQLite, one release of the GIL) and the statement cache holds them all.
_CHUNKS = (256, 64, 16, 4, 1)


def row_of(e: AsyncEvent) -> tuple:
    return (e.id, e.function, e.version, e.qualifier, e.invoked_arn, e.payload, e.client_context, e.trace_id,
            e.tenant_id, e.created, e.attempts, e.throttles, e.due, int(e.claimed), e.last_error)


def _event(row: sqlite3.Row | tuple) -> AsyncEvent:
    return AsyncEvent(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], row[9], row[10],
                      row[11], row[12], bool(row[13]), row[14])


def insert_rows(conn: sqlite3.Connection, rows: list[tuple]) -> None:
    """Insert rows (row_of) with as few statements as _CHUNKS allows (shared with bench/async.py's baseline)."""
    i = 0
    n = len(rows)
    for size in _CHUNKS:
        while n - i >= size:
            chunk = rows[i : i + size]
            conn.execute(_INSERT + ", ".join([_ROW] * size), [v for row in chunk for v in row])
            i += size


def _delete_ids(conn: sqlite3.Connection, ids: list[str]) -> None:
    i = 0
    n = len(ids)
    for size in _CHUNKS:
        while n - i >= size:
            conn.execute(f"DELETE FROM async_events WHERE id IN ({', '.join('?' * size)})", ids[i : i + size])
            i += size


def connect(path: Path, durability: str) -> sqlite3.Connection:
    """A connection for the queue's writes, in WAL mode with the durability asked for."""
    if durability not in DURABILITY:
        raise ValueError(f"async_durability must be one of {', '.join(DURABILITY)}, not {durability!r}")
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=" + ("FULL" if durability == "fsync" else "NORMAL"))
    return conn


class SqliteEventQueue:
    """EventQueueStore on the server's SQLite database (the tables of migration 015), with group commit."""

    def __init__(self, path: Path, durability: str = "fsync") -> None:
        self.path = path
        self.durability = durability
        self._conn = connect(path, durability)
        self._reader = sqlite3.connect(str(path), check_same_thread=False, timeout=30.0)
        self._reader.execute("PRAGMA query_only=1")
        self._cv = threading.Condition()
        self._ops: deque[tuple[str, Any, Any]] = deque()
        self._busy = False               # the writer is applying a batch (guarded by _cv)
        self._urgent = False             # an operation someone waits for is queued (guarded by _cv)
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Group-commit figures (bench/async.py and health read them).
        self.commits = 0
        self.committed_ops = 0

    # ------------------------------------------------------------------ lifecycle

    def open(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=self._writer, name="lamina-async-queue", daemon=True)
        self._thread.start()

    def recover(self) -> int:
        """Before open(): events still claimed were running when the server stopped. Each runs again; the attempt
        that was cut short counts as one (it may have run to the end)."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            n = conn.execute("SELECT count(*) FROM async_events WHERE claimed = 1").fetchone()[0]
            if n:
                conn.execute("UPDATE async_events SET claimed = 0, attempts = attempts + 1, "
                             "last_error = 'interrupted by a stop' WHERE claimed = 1")
                self._add_counter(conn, "redelivered", n)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return n

    @staticmethod
    def _add_counter(conn: sqlite3.Connection, name: str, n: int) -> None:
        conn.execute("INSERT INTO async_counters (name, value) VALUES (?, ?) "
                     "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value", (name, n))

    def flush(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cv:
            self._urgent = True
            self._cv.notify_all()
            while self._ops or self._busy:
                left = deadline - time.monotonic()
                if left <= 0 or self._thread is None or not self._thread.is_alive():
                    return False
                self._cv.wait(min(left, 0.05))
        return True

    def close(self) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(30.0)
        self._conn.close()
        self._reader.close()

    # ------------------------------------------------------------------ operations (event loop)

    def _put(self, kind: str, arg: Any, done: Any) -> None:
        with self._cv:
            self._ops.append((kind, arg, done))
            if kind not in _LAZY:
                self._urgent = True
                if not self._busy:
                    self._cv.notify()
            elif len(self._ops) == 1 and not self._busy:
                self._cv.notify()   # the writer starts the LAZY_S clock

    def append(self, event: AsyncEvent, done: Done) -> None:
        self._put("append", event, done)

    def claim(self, now: float, limit: int, done: Callable[[list[AsyncEvent] | BaseException, float | None], None]
              ) -> None:
        self._put("claim", (now, limit), done)

    def release(self, event: AsyncEvent) -> None:
        self._put("release", (event.attempts, event.throttles, event.due, event.last_error, event.id), None)

    def complete(self, event_id: str, done: Done | None = None) -> None:
        self._put("complete", event_id, done)

    def count_redelivered(self, n: int) -> None:
        self._put("count", ("redelivered", n), None)

    # ------------------------------------------------------------------ reads (event loop; WAL readers never wait)

    def stats(self) -> QueueStats:
        depth, oldest = self._reader.execute("SELECT count(*), min(created) FROM async_events").fetchone()
        row = self._reader.execute("SELECT value FROM async_counters WHERE name = 'redelivered'").fetchone()
        return QueueStats(depth, oldest, row[0] if row else 0)

    def pending(self, function: str, limit: int) -> list[AsyncEvent]:
        rows = self._reader.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM async_events WHERE function_name = ? ORDER BY created LIMIT ?",
            (function, limit)).fetchall()
        events = [_event(r) for r in rows]
        for e in events:
            e.payload = b""
        return events

    # ------------------------------------------------------------------ the writer thread

    def _writer(self) -> None:
        cv = self._cv
        while True:
            with cv:
                self._busy = False
                cv.notify_all()                  # flush() waiters
                # Removals of done events wait (up to LAZY_S) for a commit someone waits for, and ride along: an
                # accept's fsync then carries them. Lost in a crash, such an event only runs once more.
                deadline = None
                while not self._urgent and not self._stopping:
                    if not self._ops:
                        deadline = None
                        cv.wait()
                        continue
                    deadline = deadline or time.monotonic() + LAZY_S
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    cv.wait(left)
                if not self._ops:
                    return
                batch = list(self._ops)
                self._ops.clear()
                self._urgent = False
                self._busy = True
            try:
                results = self._apply(batch)
            except Exception as exc:  # the whole transaction failed: every operation in it did
                log.exception("async event queue: a commit of %d operation(s) failed", len(batch))
                results = [exc] * len(batch)
            self.commits += 1
            self.committed_ops += len(batch)
            if any(done is not None for _, _, done in batch) and self._loop is not None:
                with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                    self._loop.call_soon_threadsafe(_deliver, batch, results)

    def _apply(self, batch: list[tuple[str, Any, Any]]) -> list[Any]:
        conn = self._conn
        results: list[Any] = [None] * len(batch)
        conn.execute("BEGIN IMMEDIATE")
        try:
            i = 0
            n = len(batch)
            while i < n:
                kind = batch[i][0]
                j = i
                while j < n and batch[j][0] == kind and kind in ("append", "complete", "release"):
                    j += 1
                if j > i:  # a run of one kind: one multi-row statement (or executemany)
                    args = [op[1] for op in batch[i:j]]
                    if kind == "append":
                        insert_rows(conn, [row_of(e) for e in args])
                    elif kind == "complete":
                        _delete_ids(conn, args)
                    else:
                        conn.executemany("UPDATE async_events SET claimed = 0, attempts = ?, throttles = ?, due = ?, "
                                         "last_error = ? WHERE id = ?", args)
                    i = j
                    continue
                op_arg = batch[i][1]
                if kind == "claim":
                    results[i] = self._claim(conn, *op_arg)
                elif kind == "count":
                    self._add_counter(conn, *op_arg)
                i += 1
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return results

    @staticmethod
    def _claim(conn: sqlite3.Connection, now: float, limit: int) -> tuple[list[AsyncEvent], float | None]:
        rows = conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM async_events WHERE claimed = 0 AND due <= ? "
                            "ORDER BY due LIMIT ?", (now, limit)).fetchall()
        events = [_event(r) for r in rows]
        ids = [e.id for e in events]
        for k in range(0, len(ids), 256):
            part = ids[k : k + 256]
            conn.execute(f"UPDATE async_events SET claimed = 1 WHERE id IN ({', '.join('?' * len(part))})", part)
        for e in events:
            e.claimed = True
        row = conn.execute("SELECT min(due) FROM async_events WHERE claimed = 0").fetchone()
        return events, row[0]


def _deliver(batch: list[tuple[str, Any, Any]], results: list[Any]) -> None:
    """On the event loop: tell each operation's caller how it went."""
    for (kind, _, done), result in zip(batch, results, strict=True):
        if done is None:
            continue
        try:
            if kind == "claim":
                if isinstance(result, BaseException):
                    done(result, None)
                else:
                    done(*result)
            else:
                done(result)
        except Exception:
            log.exception("async event queue: a %s callback failed", kind)
