"""Function logs: one append-only NDJSON file per function, with live followers.

Each record is {"timestamp": epoch ms, "message": text, "logStreamName": stream}, the shape of a
CloudWatch Logs event, so a later CloudWatch-compatible API can serve the same files.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson

ROTATE_BYTES = 32 * 1024 * 1024
FLUSH_DELAY_S = 0.1


def _dumps(text: str) -> bytes:
    try:
        return orjson.dumps(text)
    except TypeError:  # a lone surrogate in the text: orjson refuses it, json escapes it
        return json.dumps(text).encode()


class FunctionLog:
    """The open log of one function.

    Records are appended to a buffered file and flushed at most FLUSH_DELAY_S later (and before any
    read), not once per invocation: a flush is a write(2), and the invoke hot path writes three
    records per invocation.
    """

    def __init__(self, store: LogStore, name: str) -> None:
        self.store = store
        self.name = name
        self.path = store.root / f"{name}.ndjson"
        self._fh = open(self.path, "ab", buffering=1 << 16)  # noqa: SIM115 - long-lived
        self._size = self._fh.tell()
        self._flush_timer: asyncio.TimerHandle | None = None
        self.followers: set[asyncio.Queue] = set()
        self._stream_json: dict[str, bytes] = {}

    def append(self, stream: str, message: str, timestamp_ms: int | None = None) -> None:
        self.append_lines(stream, ((timestamp_ms or int(time.time() * 1000), message),))

    def append_lines(self, stream: str, lines: tuple[tuple[int, str], ...]) -> None:
        """Append (timestamp ms, message) records of one stream in one write: an invocation's START, END and
        REPORT lines cost one call on the invoke hot path."""
        if self._fh.closed:
            return  # the function was deleted while an environment was still finishing
        # Each record's line is put together around the JSON of the message alone (no dict to build and encode
        # per line); the stream's JSON is the same for all of an environment's lines.
        stream_json = self._stream_json.get(stream)
        if stream_json is None:
            if len(self._stream_json) > 256:
                self._stream_json.clear()
            stream_json = self._stream_json[stream] = _dumps(stream)
        self.write_encoded(b"".join([b'{"timestamp":%d,"message":%b,"logStreamName":%b}\n'
                                     % (ts, _dumps(message), stream_json) for ts, message in lines]))
        if self.followers:
            for ts, message in lines:
                record = {"timestamp": ts, "message": message, "logStreamName": stream}
                for queue in self.followers:
                    queue.put_nowait(record)

    def write_encoded(self, data: bytes) -> None:
        """Append records already encoded as NDJSON lines (only while nothing follows the log: followers get
        records from append_lines)."""
        if self._fh.closed:
            return
        self._fh.write(data)
        self._size += len(data)
        if self._size > ROTATE_BYTES:
            self._rotate()

    def flush(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        if not self._fh.closed:
            self._fh.flush()

    def flush_soon(self) -> None:
        """Flush within FLUSH_DELAY_S (one timer for however many records arrive meanwhile)."""
        if self._flush_timer is None and not self._fh.closed:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self.flush()
                return
            self._flush_timer = loop.call_later(FLUSH_DELAY_S, self.flush)

    def _rotate(self) -> None:
        self._fh.close()
        os.replace(self.path, self.path.with_suffix(".ndjson.1"))
        self._fh = open(self.path, "ab", buffering=1 << 16)  # noqa: SIM115
        self._size = 0

    def close(self) -> None:
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        self._fh.close()


class LogStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._open: dict[str, FunctionLog] = {}

    def for_function(self, name: str) -> FunctionLog:
        log = self._open.get(name)
        if log is None:
            log = self._open[name] = FunctionLog(self, name)
        return log

    def flush_all(self) -> None:
        for log in self._open.values():
            log.flush()

    def delete(self, name: str) -> None:
        log = self._open.pop(name, None)
        if log is not None:
            for queue in log.followers:
                queue.put_nowait(None)
            log.close()
        for suffix in (".ndjson", ".ndjson.1"):
            (self.root / f"{name}{suffix}").unlink(missing_ok=True)

    def end_followers(self) -> None:
        """End every follow() stream (the server is stopping)."""
        for log in self._open.values():
            for queue in log.followers:
                queue.put_nowait(None)

    def close(self) -> None:
        self.end_followers()
        for log in self._open.values():
            log.close()
        self._open.clear()

    def read(self, name: str, start_ms: int = 0, limit: int | None = None) -> list[dict]:
        """Stored records at or after start_ms, oldest first (the newest `limit` if given)."""
        self.for_function(name).flush()
        records: list[dict] = []
        for suffix in (".ndjson.1", ".ndjson"):
            path = self.root / f"{name}{suffix}"
            if not path.exists():
                continue
            with open(path, encoding="utf-8") as fh:
                for line in fh:
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue  # a torn last line after a crash
                    if record.get("timestamp", 0) >= start_ms:
                        records.append(record)
        if limit is not None:
            records = records[-limit:]
        return records

    async def follow(self, name: str, start_ms: int = 0) -> AsyncIterator[dict]:
        """Stored records, then new ones as they are written, until the function is deleted."""
        log = self.for_function(name)
        queue: asyncio.Queue = asyncio.Queue()
        log.followers.add(queue)
        try:
            for record in self.read(name, start_ms):
                yield record
            while True:
                record = await queue.get()
                if record is None:
                    return
                yield record
        finally:
            log.followers.discard(queue)
