"""Function logs: one append-only NDJSON file per function, with live followers.

Each record is {"timestamp": epoch ms, "message": text, "logStreamName": stream}, the shape of a
CloudWatch Logs event: the CloudWatch Logs API (functions/log_groups.py) serves the same files. A retention
period per function (retention.json beside the logs) is enforced by expire(), which rewrites a log without its
records older than a cut-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson

ROTATE_BYTES = 32 * 1024 * 1024
_TIMESTAMP = re.compile(rb'^\{"timestamp":(\d+)')
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

    def reopen(self) -> None:
        """Open the file again (it was replaced by a rewrite)."""
        if self._fh.closed:
            return
        self._fh.close()
        self._fh = open(self.path, "ab", buffering=1 << 16)  # noqa: SIM115
        self._size = self._fh.tell()

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
        self._retention_path = root / "retention.json"
        try:
            self.retention: dict[str, int] = json.loads(self._retention_path.read_text())
        except (OSError, ValueError):
            self.retention = {}

    def names(self) -> list[str]:
        """The functions whose log has records (a CloudWatch log group exists once something is written), sorted."""
        self.flush_all()
        found = {p.name[: -len(suffix)] for suffix in (".ndjson", ".ndjson.1") for p in self.root.glob("*" + suffix)}
        return sorted(name for name in found if self.stored_bytes(name) > 0)

    def exists(self, name: str) -> bool:
        log = self._open.get(name)
        if log is not None:
            log.flush()
        return self.stored_bytes(name) > 0

    def stored_bytes(self, name: str) -> int:
        total = 0
        for suffix in (".ndjson", ".ndjson.1"):
            with contextlib.suppress(OSError):
                total += (self.root / f"{name}{suffix}").stat().st_size
        return total

    def set_retention(self, name: str, days: int | None) -> None:
        """Keep a function's records this many days (None: forever); saved beside the logs."""
        if days is None:
            self.retention.pop(name, None)
        else:
            self.retention[name] = days
        tmp = self._retention_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.retention))
        os.replace(tmp, self._retention_path)

    def expire(self, name: str, before_ms: int) -> int:
        """Delete a function's records older than before_ms (rewriting its files); how many were deleted."""
        log = self._open.get(name)
        if log is not None:
            log.flush()
        removed = 0
        for suffix in (".ndjson.1", ".ndjson"):
            path = self.root / f"{name}{suffix}"
            try:
                fh = open(path, "rb")  # noqa: SIM115 - closed below
            except FileNotFoundError:
                continue
            with fh:
                kept = []
                dropped = 0
                for line in fh:
                    ts = _timestamp(line)
                    if ts is not None and ts < before_ms:
                        dropped += 1
                    else:
                        kept.append(line)
            if not dropped:
                continue
            removed += dropped
            if not kept:
                path.unlink()
            else:
                tmp = path.with_name(path.name + ".tmp")
                with open(tmp, "wb") as out:
                    out.writelines(kept)
                os.replace(tmp, path)
            if suffix == ".ndjson" and log is not None:
                log.reopen()
        return removed

    def for_function(self, name: str) -> FunctionLog:
        log = self._open.get(name)
        if log is None:
            log = self._open[name] = FunctionLog(self, name)
        return log

    def flush_all(self) -> None:
        for log in self._open.values():
            log.flush()

    def delete(self, name: str) -> None:
        """Remove a function's log and its retention setting; followers end."""
        if name in self.retention:
            self.set_retention(name, None)
        log = self._open.pop(name, None)
        if log is not None:
            for queue in log.followers:
                queue.put_nowait(None)
            log.close()
        for suffix in (".ndjson", ".ndjson.1"):
            (self.root / f"{name}{suffix}").unlink(missing_ok=True)

    def clear(self, name: str) -> None:
        """Delete a function's records and retention setting but keep its log open: environments still running
        go on writing to it (CloudWatch Logs' DeleteLogGroup; Lambda's next records recreate the group)."""
        if name in self.retention:
            self.set_retention(name, None)
        log = self._open.get(name)
        if log is not None:
            log.flush()
        for suffix in (".ndjson", ".ndjson.1"):
            (self.root / f"{name}{suffix}").unlink(missing_ok=True)
        if log is not None:
            log.reopen()

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


def _timestamp(line: bytes) -> int | None:
    """A record line's timestamp: every writer puts it first; anything else is parsed (None: not a record)."""
    m = _TIMESTAMP.match(line)
    if m is not None:
        return int(m.group(1))
    try:
        ts = json.loads(line).get("timestamp")
    except (ValueError, AttributeError):
        return None
    return ts if isinstance(ts, int) else None
