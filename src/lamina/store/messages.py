"""Durable storage of Lamina's SQS-compatible queues: queues, messages and FIFO deduplication ids (migration 016).

The queues themselves live in memory (queues/); this store is what makes them survive a crash. Writes go
through a GroupCommitWriter (its own thread and connection, group commit, the `async_durability` fsync
policy), so a send is answered only once its message is committed, and many concurrent sends share one
fsync. Receives, visibility changes and deletes are lazy: they ride along with the next send's commit or go
within LAZY_S; after a crash an in-flight message keeps its visibility timeout (or comes back visible a bit
early), and a just-deleted message may come back — at least once, never lost.

The interface (MessageStore) is what a PostgreSQL implementation would provide as well.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson

from lamina.store.group_commit import GroupCommitWriter, Kind


@dataclass(slots=True)
class QueueRow:
    id: int
    account: str
    name: str
    attributes: dict[str, str]
    tags: dict[str, str]
    created: float
    modified: float
    purged: float = 0.0


@dataclass(slots=True)
class MessageRow:
    seq: int
    queue_id: int
    id: str
    body: str
    attributes: bytes | None       # message attributes, JSON
    system: bytes | None           # group id, dedup id, trace header, dead-letter source, JSON
    sent: float
    visible: float
    receives: int = 0
    first_receive: float = 0.0

    def values(self) -> tuple:
        return (self.seq, self.queue_id, self.id, self.body, self.attributes, self.system, self.sent, self.visible,
                self.receives, self.first_receive)


@dataclass(slots=True)
class DedupRow:
    queue_id: int
    dedup_id: str
    message_id: str
    seq: int
    expires: float


Done = Callable[[Any], None]


class MessageStore(Protocol):
    def open(self, loop: asyncio.AbstractEventLoop) -> None: ...
    def queues(self) -> list[QueueRow]: ...
    def messages(self) -> Iterator[MessageRow]: ...
    def dedups(self, now: float) -> list[DedupRow]: ...
    def put_queue(self, row: QueueRow, done: Done | None = None) -> None: ...
    def drop_queue(self, queue_id: int, done: Done | None = None) -> None: ...
    def send(self, rows: list[MessageRow], dedups: list[DedupRow], done: Done | None = None,
             also: tuple[Kind, Any] | None = None) -> None: ...
    def update_visibility(self, seq: int, visible: float, receives: int, first_receive: float) -> None: ...
    def delete(self, seq: int) -> None: ...
    def move(self, seq: int, queue_id: int, system: bytes | None, receives: int, visible: float) -> None: ...
    def purge(self, queue_id: int, up_to_seq: int, now: float, done: Done | None = None) -> None: ...
    def expire_dedups(self, now: float) -> None: ...
    def commit(self, kind: Kind, arg: Any) -> Awaitable[Any]: ...
    def flush(self, timeout: float) -> bool: ...
    def close(self) -> None: ...


_MESSAGE_COLUMNS = ("seq", "queue_id", "id", "body", "attributes", "system", "sent", "visible", "receives",
                    "first_receive")
_MESSAGE_ROW = "(" + ", ".join("?" * len(_MESSAGE_COLUMNS)) + ")"
_CHUNKS = (64, 16, 4, 1)


def _chunked(conn: sqlite3.Connection, head: str, row: str, rows: list[tuple]) -> None:
    """INSERT rows with a few multi-row statements (a batch of n rows: a handful of calls into SQLite)."""
    i = 0
    n = len(rows)
    for size in _CHUNKS:
        while n - i >= size:
            chunk = rows[i : i + size]
            conn.execute(head + ", ".join([row] * size), [v for r in chunk for v in r])
            i += size


def _put_queue(conn: sqlite3.Connection, rows: list[QueueRow]) -> None:
    conn.executemany("INSERT OR REPLACE INTO sqs_queues (id, account, name, attributes, tags, created, modified, "
                     "purged) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                     [(r.id, r.account, r.name, orjson.dumps(r.attributes).decode(), orjson.dumps(r.tags).decode(),
                       r.created, r.modified, r.purged) for r in rows])


def _drop_queue(conn: sqlite3.Connection, ids: list[int]) -> None:
    for queue_id in ids:
        conn.execute("DELETE FROM sqs_queues WHERE id = ?", (queue_id,))
        conn.execute("DELETE FROM sqs_messages WHERE queue_id = ?", (queue_id,))
        conn.execute("DELETE FROM sqs_dedup WHERE queue_id = ?", (queue_id,))


def _send(conn: sqlite3.Connection,
          args: list[tuple[list[MessageRow], list[DedupRow], tuple[Kind, Any] | None]]) -> None:
    rows = [m.values() for messages, _, _ in args for m in messages]
    _chunked(conn, f"INSERT OR REPLACE INTO sqs_messages ({', '.join(_MESSAGE_COLUMNS)}) VALUES ", _MESSAGE_ROW, rows)
    dedups = [(d.queue_id, d.dedup_id, d.message_id, d.seq, d.expires) for _, ds, _ in args for d in ds]
    if dedups:
        conn.executemany("INSERT OR REPLACE INTO sqs_dedup (queue_id, dedup_id, message_id, seq, expires) "
                         "VALUES (?, ?, ?, ?, ?)", dedups)
    for _, _, also in args:   # another store's write in the same transaction (an EventBridge outbox's rows)
        if also is not None:
            also[0].apply(conn, [also[1]])


def _visibility(conn: sqlite3.Connection, args: list[tuple[float, int, float, int]]) -> None:
    conn.executemany("UPDATE sqs_messages SET visible = ?, receives = ?, first_receive = ? WHERE seq = ?", args)


def _delete(conn: sqlite3.Connection, seqs: list[int]) -> None:
    i = 0
    n = len(seqs)
    for size in _CHUNKS:
        while n - i >= size:
            conn.execute(f"DELETE FROM sqs_messages WHERE seq IN ({', '.join('?' * size)})", seqs[i : i + size])
            i += size


def _move(conn: sqlite3.Connection, args: list[tuple[int, bytes | None, int, float, int]]) -> None:
    conn.executemany("UPDATE sqs_messages SET queue_id = ?, system = ?, receives = ?, visible = ?, first_receive = 0 "
                     "WHERE seq = ?",
                     args)


def _purge(conn: sqlite3.Connection, args: list[tuple[int, int, float]]) -> None:
    for queue_id, up_to, now in args:
        conn.execute("DELETE FROM sqs_messages WHERE queue_id = ? AND seq <= ?", (queue_id, up_to))
        conn.execute("UPDATE sqs_queues SET purged = ? WHERE id = ?", (now, queue_id))


def _expire(conn: sqlite3.Connection, args: list[float]) -> None:
    conn.execute("DELETE FROM sqs_dedup WHERE expires < ?", (max(args),))


PUT_QUEUE = Kind("put-queue", _put_queue)
DROP_QUEUE = Kind("drop-queue", _drop_queue)
SEND = Kind("send", _send)
VISIBILITY = Kind("visibility", _visibility, lazy=True)
DELETE = Kind("delete", _delete, lazy=True)
MOVE = Kind("move", _move, lazy=True)
PURGE = Kind("purge", _purge)
EXPIRE = Kind("expire-dedup", _expire, lazy=True)


class SqliteMessageStore:
    """MessageStore on the server's SQLite database."""

    def __init__(self, path: Path, durability: str = "fsync") -> None:
        self.path = path
        self.durability = durability
        self.writer = GroupCommitWriter(path, durability, name="lamina-queues")
        self._reader = sqlite3.connect(str(path), check_same_thread=False, timeout=30.0)
        self._reader.execute("PRAGMA query_only=1")

    def open(self, loop: asyncio.AbstractEventLoop) -> None:
        self.writer.open(loop)

    # ------------------------------------------------------------------ loading (before open)

    def queues(self) -> list[QueueRow]:
        rows = self._reader.execute("SELECT id, account, name, attributes, tags, created, modified, purged "
                                    "FROM sqs_queues ORDER BY id").fetchall()
        return [QueueRow(r[0], r[1], r[2], orjson.loads(r[3]), orjson.loads(r[4]), r[5], r[6], r[7]) for r in rows]

    def messages(self) -> Iterator[MessageRow]:
        cursor = self._reader.execute(f"SELECT {', '.join(_MESSAGE_COLUMNS)} FROM sqs_messages ORDER BY seq")
        while True:
            rows = cursor.fetchmany(4096)
            if not rows:
                return
            for r in rows:
                yield MessageRow(*r)

    def dedups(self, now: float) -> list[DedupRow]:
        rows = self._reader.execute("SELECT queue_id, dedup_id, message_id, seq, expires FROM sqs_dedup "
                                    "WHERE expires >= ?", (now,)).fetchall()
        return [DedupRow(*r) for r in rows]

    # ------------------------------------------------------------------ writes (event loop)

    def put_queue(self, row: QueueRow, done: Done | None = None) -> None:
        self.writer.put(PUT_QUEUE, row, done)

    def drop_queue(self, queue_id: int, done: Done | None = None) -> None:
        self.writer.put(DROP_QUEUE, queue_id, done)

    def send(self, rows: list[MessageRow], dedups: list[DedupRow], done: Done | None = None,
             also: tuple[Kind, Any] | None = None) -> None:
        self.writer.put(SEND, (rows, dedups, also), done)

    def update_visibility(self, seq: int, visible: float, receives: int, first_receive: float) -> None:
        self.writer.put(VISIBILITY, (visible, receives, first_receive, seq))

    def delete(self, seq: int) -> None:
        self.writer.put(DELETE, seq)

    def move(self, seq: int, queue_id: int, system: bytes | None, receives: int, visible: float) -> None:
        self.writer.put(MOVE, (queue_id, system, receives, visible, seq))

    def purge(self, queue_id: int, up_to_seq: int, now: float, done: Done | None = None) -> None:
        self.writer.put(PURGE, (queue_id, up_to_seq, now), done)

    def expire_dedups(self, now: float) -> None:
        self.writer.put(EXPIRE, now)

    def commit(self, kind: Kind, arg: Any) -> Awaitable[Any]:
        """Hand in an operation of one of the kinds above and wait for its commit."""
        return self.writer.commit(kind, arg)

    def flush(self, timeout: float) -> bool:
        return self.writer.flush(timeout)

    def close(self) -> None:
        self.writer.close()
        self._reader.close()
