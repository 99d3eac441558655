"""Schedule expressions as EventBridge reads them: `rate(value unit)`, AWS's 6-field `cron(...)` and Scheduler's
one-time `at(yyyy-mm-ddThh:mm:ss)` (spec/events.md §4.3), each answering "the next occurrence after t".

Cron fields, `?`, `L`, `W`, `#` and years are parsed and iterated by aws-croniter (which works in UTC only); time
zones are applied here: the expression is iterated over the zone's wall clock and each wall time mapped to UTC.
AWS's DST rules follow from that mapping: a wall time that does not exist (the spring-forward gap) is skipped, and
a wall time that happens twice (fall back) runs once, at its first instant.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aws_croniter import AwsCroniter

UTC = dt.UTC
_RATE = re.compile(r"rate\(([1-9][0-9]*) (minute|minutes|hour|hours|day|days)\)")
_CRON = re.compile(r"cron\(([^()]*)\)")
_AT = re.compile(r"at\((\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\)")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


class ExpressionError(ValueError):
    """Not a valid schedule expression (or time zone); the message says why."""


@dataclass(frozen=True, slots=True)
class Expression:
    text: str
    kind: str                           # "rate" | "cron" | "at"
    interval: int = 0                   # rate: seconds
    cron: AwsCroniter | None = None
    at: dt.datetime | None = None       # at: wall time (naive) in the zone

    def next_after(self, after: float, zone: dt.tzinfo = UTC, anchor: float | None = None) -> float | None:
        """The first occurrence strictly after `after` (epoch seconds), or None when there is none.
        A rate runs every interval from `anchor` (its StartDate, or when it was created)."""
        if self.kind == "rate":
            start = after if anchor is None else anchor
            if start > after:
                return start
            steps = int((after - start) // self.interval) + 1
            return start + steps * self.interval
        if self.kind == "at":
            assert self.at is not None
            when = _wall_to_epoch(self.at, zone)
            return when if when is not None and when > after else None
        assert self.cron is not None
        wall = dt.datetime.fromtimestamp(after, zone).replace(tzinfo=None)
        # aws-croniter iterates whole minutes; start at the minute of `after` so a wall time equal to it is not lost
        cursor = wall.replace(second=0, microsecond=0)
        for _ in range(1000):   # skipped gap times are few; 1000 bounds a pathological expression
            nxt = self.cron.get_next(cursor.replace(tzinfo=UTC), inclusive=True)[0]
            if nxt is None:
                return None
            wall_next = nxt.replace(tzinfo=None)
            when = _wall_to_epoch(wall_next, zone)
            if when is not None and when > after:
                return when
            cursor = wall_next + dt.timedelta(minutes=1)
        return None


def _wall_to_epoch(wall: dt.datetime, zone: dt.tzinfo) -> float | None:
    """The first instant the zone's clock shows `wall`, or None when it never does (a spring-forward gap)."""
    aware = wall.replace(tzinfo=zone, fold=0)
    back = aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None)
    if back != wall:
        return None
    return aware.timestamp()


@lru_cache(maxsize=1024)
def zone_for(name: str | None) -> dt.tzinfo:
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ExpressionError(f"Invalid time zone: {name}") from None


@lru_cache(maxsize=16384)
def parse(text: str, allow_at: bool = True) -> Expression:
    """Parse an expression as AWS writes it (no extra spaces, singular unit iff the value is 1). Cached: firing
    thousands of schedules at once asks for the same few expressions again and again."""
    m = _RATE.fullmatch(text)
    if m:
        value, unit = int(m.group(1)), m.group(2)
        if (value == 1) != (not unit.endswith("s")):
            raise ExpressionError(f"Invalid rate expression: {text}")
        return Expression(text, "rate", interval=value * _UNIT_SECONDS[unit.rstrip("s")])
    m = _CRON.fullmatch(text)
    if m:
        fields = m.group(1)
        if fields != fields.strip() or "  " in fields or len(fields.split(" ")) != 6:
            raise ExpressionError(f"Invalid cron expression: {text}")
        try:
            cron = AwsCroniter(fields)
        except Exception as exc:   # aws-croniter raises plain exceptions with a reason
            raise ExpressionError(f"Invalid cron expression: {text} ({exc})") from None
        return Expression(text, "cron", cron=cron)
    m = _AT.fullmatch(text) if allow_at else None
    if m:
        try:
            y, mo, d, h, mi, sec = (int(g) for g in m.groups())
            at = dt.datetime(y, mo, d, h, mi, sec)
        except ValueError:
            raise ExpressionError(f"Invalid at expression: {text}") from None
        return Expression(text, "at", at=at)
    raise ExpressionError(f"Invalid schedule expression: {text}")
