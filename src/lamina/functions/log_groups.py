"""Function logs as CloudWatch Logs sees them: the service behind the CloudWatch Logs API subset (api/logs_api.py).

A function's log (store/logs.py) is the log group `/aws/lambda/NAME`; each environment writes its own stream, named
as AWS names them (`2024/01/31/[$LATEST]<id>`). A group exists once it has records, as on AWS (created by the first
write). Positions in the log (a record's index, oldest first) make the paging tokens and event ids: the log is
append-only, so they stay valid until retention deletes older records.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson

from lamina.functions.errors import AwsError
from lamina.functions.filter_pattern import compile_pattern, invalid
from lamina.store.logs import LogStore

log = logging.getLogger("lamina.logs")

GROUP_PREFIX = "/aws/lambda/"
# PutRetentionPolicy's allowed values (days).
RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288,
                  3653)
DAY_MS = 86_400_000
SWEEP_INTERVAL_S = 3600.0


def logs_error(code: str, message: str) -> AwsError:
    """CloudWatch Logs' errors: 400 with the code in the body's __type (JSON 1.1)."""
    return AwsError(code, message, 400, __type=code)


def group_not_found() -> AwsError:
    return logs_error("ResourceNotFoundException", "The specified log group does not exist.")


@dataclass
class Record:
    position: int
    timestamp: int
    message: str
    stream: str


class LogGroupService:
    def __init__(self, logs: LogStore, region: str, account_id: str) -> None:
        self.logs = logs
        self.region = region
        self.account_id = account_id
        self._sweeper: asyncio.Task | None = None

    # ------------------------------------------------------------------ names

    def group_arn(self, group: str) -> str:
        return f"arn:aws:logs:{self.region}:{self.account_id}:log-group:{group}"

    def function_of(self, body: dict, name_key: str = "logGroupName", id_key: str | None = "logGroupIdentifier",
                    must_exist: bool = True) -> str:
        """The function whose log a request names (a group name, or an identifier: the name or its ARN)."""
        group = body.get(name_key)
        if group is None and id_key is not None:
            group = body.get(id_key)
        if not isinstance(group, str) or not group:
            raise invalid(f"{name_key} is required.")
        return self.function_of_group(group, must_exist)

    def function_of_group(self, group: str, must_exist: bool = True) -> str:
        if group.startswith("arn:"):
            parts = group.split(":log-group:", 1)
            if len(parts) != 2:
                raise invalid(f"Invalid log group identifier: {group}")
            group = parts[1].removesuffix(":*")
        if not group.startswith(GROUP_PREFIX) or len(group) == len(GROUP_PREFIX):
            # Lamina keeps only functions' logs.
            raise group_not_found()
        name = group[len(GROUP_PREFIX):]
        if must_exist and not self.logs.exists(name):
            raise group_not_found()
        return name

    # ------------------------------------------------------------------ records

    def records(self, name: str) -> list[Record]:
        """A function's records, oldest first, without those past its retention period."""
        raw = self.logs.read(name)
        days = self.logs.retention.get(name)
        cutoff = int(time.time() * 1000) - days * DAY_MS if days else None
        out = []
        for i, r in enumerate(raw):
            ts = r.get("timestamp", 0)
            if cutoff is not None and ts < cutoff:
                continue
            out.append(Record(i, ts, r.get("message", ""), r.get("logStreamName", "")))
        return out

    # ------------------------------------------------------------------ operations

    def describe_log_groups(self, body: dict) -> dict:
        prefix = body.get("logGroupNamePrefix")
        pattern = body.get("logGroupNamePattern")
        if prefix is not None and pattern is not None:
            raise invalid("LogGroup name prefix and LogGroup name pattern are mutually exclusive parameters.")
        limit = _limit(body, 50)
        groups = []
        for name in self.logs.names():
            group = GROUP_PREFIX + name
            if prefix is not None and not group.startswith(prefix):
                continue
            if pattern is not None and pattern.lower() not in group.lower():
                continue
            groups.append((group, name))
        start = _token_index(body.get("nextToken"))
        page = groups[start : start + limit]
        out = []
        for group, name in page:
            records = self.records(name)
            doc = {"logGroupName": group, "creationTime": records[0].timestamp if records else _now_ms(),
                   "metricFilterCount": 0, "arn": self.group_arn(group) + ":*", "logGroupArn": self.group_arn(group),
                   "storedBytes": self.logs.stored_bytes(name), "logGroupClass": "STANDARD"}
            if name in self.logs.retention:
                doc["retentionInDays"] = self.logs.retention[name]
            out.append(doc)
        result: dict = {"logGroups": out}
        if start + limit < len(groups):
            result["nextToken"] = _token(start + limit)
        return result

    def describe_log_streams(self, body: dict) -> dict:
        name = self.function_of(body)
        order = body.get("orderBy", "LogStreamName")
        if order not in ("LogStreamName", "LastEventTime"):
            raise invalid("orderBy must be LogStreamName or LastEventTime.")
        prefix = body.get("logStreamNamePrefix")
        if prefix is not None and order == "LastEventTime":
            raise invalid("Cannot order by LastEventTime with a logStreamNamePrefix.")
        limit = _limit(body, 50)
        streams: dict[str, list[int]] = {}   # name -> [first, last, count]
        for r in self.records(name):
            if prefix is not None and not r.stream.startswith(prefix):
                continue
            s = streams.get(r.stream)
            if s is None:
                streams[r.stream] = [r.timestamp, r.timestamp, 1]
            else:
                s[0], s[1], s[2] = min(s[0], r.timestamp), max(s[1], r.timestamp), s[2] + 1
        key = (lambda kv: kv[0]) if order == "LogStreamName" else (lambda kv: kv[1][1])
        ordered = sorted(streams.items(), key=key, reverse=bool(body.get("descending")))
        start = _token_index(body.get("nextToken"))
        page = ordered[start : start + limit]
        group = GROUP_PREFIX + name
        out = [{"logStreamName": stream, "creationTime": first, "firstEventTimestamp": first,
                "lastEventTimestamp": last, "lastIngestionTime": last,
                "arn": f"{self.group_arn(group)}:log-stream:{stream}", "storedBytes": 0}
               for stream, (first, last, _count) in page]
        result: dict = {"logStreams": out}
        if start + limit < len(ordered):
            result["nextToken"] = _token(start + limit)
        return result

    def get_log_events(self, body: dict) -> dict:
        name = self.function_of(body)
        stream = body.get("logStreamName")
        if not isinstance(stream, str) or not stream:
            raise invalid("logStreamName is required.")
        start_time, end_time = body.get("startTime"), body.get("endTime")
        events = [r for r in self.records(name) if r.stream == stream and _in_range(r.timestamp, start_time, end_time)]
        if not events and not any(r.stream == stream for r in self.records(name)):
            raise logs_error("ResourceNotFoundException", "The specified log stream does not exist.")
        limit = _limit(body, 10000)
        n = len(events)
        token = body.get("nextToken")
        if isinstance(token, str) and token[:2] in ("f/", "b/"):
            try:
                at = min(max(int(token[2:]), 0), n)
            except ValueError:
                raise invalid("The specified nextToken is invalid.") from None
            if token.startswith("f/"):
                lo, hi = at, min(n, at + limit)
            else:
                lo, hi = max(0, at - limit), at
        elif token is not None:
            raise invalid("The specified nextToken is invalid.")
        elif body.get("startFromHead"):
            lo, hi = 0, min(n, limit)
        else:
            lo, hi = max(0, n - limit), n
        return {"events": [{"timestamp": r.timestamp, "message": r.message, "ingestionTime": r.timestamp}
                           for r in events[lo:hi]],
                "nextForwardToken": f"f/{hi:056d}", "nextBackwardToken": f"b/{lo:056d}"}

    def filter_log_events(self, body: dict) -> dict:
        name = self.function_of(body)
        names, prefix = body.get("logStreamNames"), body.get("logStreamNamePrefix")
        if names is not None and prefix is not None:
            raise invalid("logStreamNames and logStreamNamePrefix are mutually exclusive.")
        wanted = set(names) if isinstance(names, list) else None
        match = compile_pattern(body.get("filterPattern"))
        start_time, end_time = body.get("startTime"), body.get("endTime")
        limit = _limit(body, 10000)
        after = _token_index(body.get("nextToken"))   # the position to go on from
        events: list[Record] = []
        more = False
        for r in self.records(name):
            if r.position < after or not _in_range(r.timestamp, start_time, end_time):
                continue
            if wanted is not None and r.stream not in wanted:
                continue
            if prefix is not None and not r.stream.startswith(prefix):
                continue
            if not match(r.message):
                continue
            if len(events) == limit:
                more = True
                after = r.position
                break
            events.append(r)
        # Sorted by time, as AWS returns them: records are appended in the order they were written, and a START line
        # is written with its invocation's END, so its timestamp may be older than records written before it.
        events.sort(key=lambda r: r.timestamp)
        result: dict = {"events": [{"logStreamName": r.stream, "timestamp": r.timestamp, "message": r.message,
                                    "ingestionTime": r.timestamp, "eventId": f"{r.position:056d}"} for r in events],
                        "searchedLogStreams": []}
        if more:
            result["nextToken"] = _token(after)
        return result

    def put_retention_policy(self, body: dict) -> None:
        name = self.function_of(body, id_key=None, must_exist=False)
        if not self.logs.exists(name):
            raise group_not_found()
        days = body.get("retentionInDays")
        if not isinstance(days, int) or isinstance(days, bool) or days not in RETENTION_DAYS:
            raise invalid(f"1 validation error detected: Value '{days}' at 'retentionInDays' failed to satisfy "
                          f"constraint: Member must satisfy enum value set: [{', '.join(map(str, RETENTION_DAYS))}]")
        self.logs.set_retention(name, days)
        self.expire(name)

    def delete_retention_policy(self, body: dict) -> None:
        name = self.function_of(body, id_key=None)
        self.logs.set_retention(name, None)

    def delete_log_group(self, body: dict) -> None:
        name = self.function_of(body, id_key=None)
        self.logs.clear(name)

    # ------------------------------------------------------------------ live tail

    def live_tail_functions(self, body: dict) -> list[str]:
        ids = body.get("logGroupIdentifiers")
        if not isinstance(ids, list) or not ids or len(ids) > 10:
            raise invalid("logGroupIdentifiers must list 1 to 10 log groups.")
        if len(ids) > 1 and (body.get("logStreamNames") or body.get("logStreamNamePrefixes")):
            raise invalid("logStreamNames and logStreamNamePrefixes need exactly one log group.")
        return [self.function_of_group(str(group), must_exist=False) for group in ids]

    async def live_tail(self, names: list[str], body: dict) -> AsyncIterator[list[dict]]:
        """Batches of new records of these functions (matching the request's stream and pattern filters), at most
        one batch a second as AWS sends sessionUpdate events, an empty one when nothing came."""
        match = compile_pattern(body.get("logEventFilterPattern"))
        streams = set(body.get("logStreamNames") or ())
        prefixes = tuple(body.get("logStreamNamePrefixes") or ())
        queue: asyncio.Queue = asyncio.Queue()
        now = _now_ms()

        async def pump(name: str) -> None:
            async for record in self.logs.follow(name, now):
                await queue.put((name, record))
            await queue.put(None)

        tasks = [asyncio.get_running_loop().create_task(pump(name)) for name in names]
        ended = 0
        try:
            while ended < len(tasks):
                batch: list[dict] = []
                deadline = asyncio.get_running_loop().time() + 1.0
                while ended < len(tasks):
                    left = deadline - asyncio.get_running_loop().time()
                    if left <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(queue.get(), left)
                    except TimeoutError:
                        break
                    if item is None:
                        ended += 1
                        continue
                    name, r = item
                    stream, message = r.get("logStreamName", ""), r.get("message", "")
                    if (streams and stream not in streams) or (prefixes and not stream.startswith(prefixes)):
                        continue
                    if r.get("timestamp", 0) < now or not match(message):
                        continue
                    group = GROUP_PREFIX + name
                    batch.append({"logStreamName": stream, "logGroupIdentifier": self.group_arn(group),
                                  "message": message, "timestamp": r["timestamp"], "ingestionTime": r["timestamp"]})
                yield batch
        finally:
            for task in tasks:
                task.cancel()

    # ------------------------------------------------------------------ retention

    def expire(self, name: str) -> int:
        days = self.logs.retention.get(name)
        if not days:
            return 0
        removed = self.logs.expire(name, _now_ms() - days * DAY_MS)
        if removed:
            log.info("logs: %d record(s) of %s past its %d-day retention deleted", removed, name, days)
        return removed

    def start(self) -> None:
        """Enforce retention now and then every hour."""
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def _sweep(self) -> None:
        while True:
            for name in list(self.logs.retention):
                try:
                    self.expire(name)
                except OSError:
                    log.exception("logs: retention of %s", name)
            await asyncio.sleep(SWEEP_INTERVAL_S)

    def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None


def _now_ms() -> int:
    return int(time.time() * 1000)


def _in_range(ts: int, start: object, end: object) -> bool:
    return (not isinstance(start, int) or ts >= start) and (not isinstance(end, int) or ts <= end)


def _limit(body: dict, maximum: int) -> int:
    limit = body.get("limit", maximum)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= maximum:
        raise invalid(f"1 validation error detected: Value '{limit}' at 'limit' failed to satisfy constraint: "
                      f"Member must have value between 1 and {maximum}")
    return limit


def _token(index: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"i": index})).decode()


def _token_index(token: object) -> int:
    if token is None:
        return 0
    with contextlib.suppress(ValueError, TypeError, AttributeError, KeyError):
        value = orjson.loads(base64.urlsafe_b64decode(str(token)))["i"]
        if isinstance(value, int) and value >= 0:
            return value
    raise invalid("The specified nextToken is invalid.")
