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
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from lamina.store.group_commit import GroupCommitWriter, Kind

log = logging.getLogger("lamina.events")


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
Appended = Callable[[list[tuple[AsyncEvent, Any]], BaseException | None], None]


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

    def add(self, event: AsyncEvent, waiter: Any, appended: Appended) -> None:
        """append() for a caller with one callback for all its events (no closure per event): once the event is
        committed, appended(pairs, error) is called once for all the events added with the same `appended` in that
        transaction, as (event, waiter) pairs in the order they came; error is None when they are durable."""
        ...

    def append_many(self, events: list[AsyncEvent], done: Done, also: tuple[Kind, Any] | None = None) -> None:
        """Queue events in one operation, with another write (`also`) in the same transaction."""
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

    def complete_many(self, event_ids: list[str]) -> None:
        """complete() for many events (one operation)."""
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


_COLUMNS = ("id", "function_name", "version", "qualifier", "invoked_arn", "payload", "client_context", "trace_id",
            "tenant_id", "created", "attempts", "throttles", "due", "claimed", "last_error")
_ROW = "(" + ", ".join("?" * len(_COLUMNS)) + ")"
_INSERT = f"INSERT OR REPLACE INTO async_events ({', '.join(_COLUMNS)}) VALUES "
# One statement per run of up to _MAX_ROWS rows, of exactly that many rows: one call into SQLite (one release of the
# GIL, one statement journal) per kind per commit. The statement cache (store/group_commit.py's connect) keeps them.
_MAX_ROWS = 256
_INSERTS: dict[int, str] = {}
_DELETES: dict[int, str] = {}


def row_of(e: AsyncEvent) -> tuple:
    return (e.id, e.function, e.version, e.qualifier, e.invoked_arn, e.payload, e.client_context, e.trace_id,
            e.tenant_id, e.created, e.attempts, e.throttles, e.due, int(e.claimed), e.last_error)


def _event(row: sqlite3.Row | tuple) -> AsyncEvent:
    return AsyncEvent(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], row[9], row[10],
                      row[11], row[12], bool(row[13]), row[14])


# Fresh events of one function version (the accepts of a commit, as a rule): no qualifier, client context, trace or
# tenant id, error, attempts or throttles yet, and due when created. Their statement binds the function, version
# and ARN once and each row's id, payload, time and claim (the other columns take their defaults): binding a
# parameter is a good part of an insert's cost (4 per row instead of 15; ~2.5x fewer microseconds per row).
_COMPACT = ("INSERT OR REPLACE INTO async_events (id, function_name, version, invoked_arn, payload, created, due, "
            "claimed) VALUES ")
_COMPACTS: dict[int, str] = {}


def _compact_sql(n: int) -> str:
    sql = _COMPACTS.get(n)
    if sql is None:
        rows = [f"(?{4 + 4 * k}, ?1, ?2, ?3, ?{5 + 4 * k}, ?{6 + 4 * k}, ?{6 + 4 * k}, ?{7 + 4 * k})" for k in range(n)]
        sql = _COMPACTS[n] = _COMPACT + ", ".join(rows)
    return sql


def insert_rows(conn: sqlite3.Connection, rows: list[tuple]) -> None:
    """Insert rows (row_of), one statement per _MAX_ROWS (shared with bench/async.py's baseline)."""
    for i in range(0, len(rows), _MAX_ROWS):
        chunk = rows[i : i + _MAX_ROWS]
        n = len(chunk)
        first = chunk[0]
        function, version, arn = first[1], first[2], first[4]
        params: list = [function, version, arn]
        for r in chunk:
            if (r[3] is not None or r[6] is not None or r[7] is not None or r[8] is not None or r[10] or r[11]
                    or r[14] is not None or r[9] != r[12] or r[1] != function or r[2] != version or r[4] != arn):
                break
            params += (r[0], r[5], r[9], r[13])
        else:
            conn.execute(_compact_sql(n), params)
            continue
        sql = _INSERTS.get(n)
        if sql is None:
            sql = _INSERTS[n] = _INSERT + ", ".join([_ROW] * n)
        conn.execute(sql, [v for row in chunk for v in row])


def _delete_ids(conn: sqlite3.Connection, ids: list[str]) -> None:
    for i in range(0, len(ids), _MAX_ROWS):
        chunk = ids[i : i + _MAX_ROWS]
        n = len(chunk)
        sql = _DELETES.get(n)
        if sql is None:
            sql = _DELETES[n] = f"DELETE FROM async_events WHERE id IN ({', '.join('?' * n)})"
        conn.execute(sql, chunk)


def _delete_many(conn: sqlite3.Connection, args: list[str | list[str]]) -> None:
    """complete (an id) and complete_many (a list of them), as they came."""
    ids: list[str] = []
    for arg in args:
        if isinstance(arg, str):
            ids.append(arg)
        else:
            ids.extend(arg)
    _delete_ids(conn, ids)


class SqliteEventQueue:
    """EventQueueStore on the server's SQLite database (the tables of migration 015), with group commit
    (store/group_commit.py: one writer thread; removals and releases ride along with the next commit someone waits
    for)."""

    def __init__(self, path: Path, durability: str = "fsync") -> None:
        self.path = path
        self.durability = durability
        self._writer = GroupCommitWriter(path, durability, name="lamina-async-queue")
        self._reader = sqlite3.connect(str(path), check_same_thread=False, timeout=30.0)
        self._reader.execute("PRAGMA query_only=1")

    @property
    def commits(self) -> int:       # group-commit figures (bench/async.py and health read them)
        return self._writer.commits

    @property
    def committed_ops(self) -> int:
        return self._writer.committed_ops

    # ------------------------------------------------------------------ lifecycle

    def open(self, loop: asyncio.AbstractEventLoop) -> None:
        self._writer.open(loop)

    def recover(self) -> int:
        """Before open(): events still claimed were running when the server stopped. Each runs again; the attempt
        that was cut short counts as one (it may have run to the end)."""
        conn = self._writer.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            n = conn.execute("SELECT count(*) FROM async_events WHERE claimed = 1").fetchone()[0]
            if n:
                conn.execute("UPDATE async_events SET claimed = 0, attempts = attempts + 1, "
                             "last_error = 'interrupted by a stop' WHERE claimed = 1")
                _add_counters(conn, [("redelivered", n)])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return n

    def flush(self, timeout: float) -> bool:
        return self._writer.flush(timeout)

    def close(self) -> None:
        self._writer.close()
        self._reader.close()

    # ------------------------------------------------------------------ operations (event loop)

    def append(self, event: AsyncEvent, done: Done) -> None:
        self._writer.put(_APPEND, (event, done), _each)

    def add(self, event: AsyncEvent, waiter: Any, appended: Appended) -> None:
        self._writer.put(_APPEND, (event, waiter), appended)

    def append_many(self, events: list[AsyncEvent], done: Done, also: tuple[Kind, Any] | None = None) -> None:
        """Queue events together (one operation); `also` is another store's write (its kind and argument) made in
        the same transaction: an EventBridge occurrence leaves its outbox exactly when its events are queued."""
        self._writer.put(_APPEND_MANY, (events, also), done)

    def claim(self, now: float, limit: int, done: Callable[[list[AsyncEvent] | BaseException, float | None], None]
              ) -> None:
        def claimed(result: tuple[list[AsyncEvent], float | None] | BaseException) -> None:
            if isinstance(result, BaseException):
                done(result, None)
            else:
                done(*result)
        self._writer.put(_CLAIM, (now, limit), claimed)

    def release(self, event: AsyncEvent) -> None:
        self._writer.put(_RELEASE, (event.attempts, event.throttles, event.due, event.last_error, event.id))

    def complete(self, event_id: str, done: Done | None = None) -> None:
        self._writer.put(_COMPLETE, event_id, done)

    def complete_many(self, event_ids: list[str]) -> None:
        self._writer.put(_COMPLETE, event_ids)

    def count_redelivered(self, n: int) -> None:
        self._writer.put(_COUNT, ("redelivered", n))

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


# The queue's kinds of write: store/group_commit.py applies a run of one kind together in the writer thread.
def _claim_one(conn: sqlite3.Connection, now: float, limit: int) -> tuple[list[AsyncEvent], float | None]:
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


def _claim(conn: sqlite3.Connection, args: list[tuple[float, int]]) -> list[Any]:
    return [_claim_one(conn, now, limit) for now, limit in args]


def _add_counters(conn: sqlite3.Connection, counts: list[tuple[str, int]]) -> None:
    conn.executemany("INSERT INTO async_counters (name, value) VALUES (?, ?) "
                     "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value", counts)


def _append(conn: sqlite3.Connection, pairs: list[tuple[AsyncEvent, Any]]) -> None:
    insert_rows(conn, [row_of(e) for e, _ in pairs])


def _each(pairs: list[tuple[AsyncEvent, Done]], error: BaseException | None) -> None:
    """append()'s callback: each event's own done."""
    for _, done in pairs:
        try:
            done(error)
        except Exception:
            log.exception("async queue: a callback failed")


def _append_many(conn: sqlite3.Connection, args: list[tuple[list[AsyncEvent], tuple[Kind, Any] | None]]) -> None:
    insert_rows(conn, [row_of(e) for events, _ in args for e in events])
    also: dict[Kind, list[Any]] = {}
    for _, extra in args:
        if extra is not None:
            also.setdefault(extra[0], []).append(extra[1])
    for kind, kind_args in also.items():
        kind.apply(conn, kind_args)


def _release(conn: sqlite3.Connection, rows: list[tuple]) -> None:
    conn.executemany("UPDATE async_events SET claimed = 0, attempts = ?, throttles = ?, due = ?, last_error = ? "
                     "WHERE id = ?", rows)


_APPEND = Kind("append", _append, batched=True)
_APPEND_MANY = Kind("append-many", _append_many)
_CLAIM = Kind("claim", _claim)
_RELEASE = Kind("release", _release, lazy=True)
_COMPLETE = Kind("complete", _delete_many, lazy=True)
_COUNT = Kind("count", _add_counters, lazy=True)
