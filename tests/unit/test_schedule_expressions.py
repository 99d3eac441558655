"""Schedule expressions (eventbridge/expressions.py) against an independent computation: a plain day-by-day reading
of AWS's cron fields written here (L, W, #, ?, names, steps, years), with wall times mapped to UTC by zoneinfo —
calendar edge cases (month ends, leap years, L/W/#) and DST in two time zones (a spring-forward time is skipped, a
fall-back time runs once)."""

from __future__ import annotations

import calendar
import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from lamina.eventbridge.expressions import ExpressionError, parse, zone_for

MONTHS = {m: i for i, m in enumerate(["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV",
                                      "DEC"], 1)}
DAYS = {d: i for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"], 1)}


def values(field: str, low: int, high: int, names: dict[str, int] | None = None) -> set[int]:
    out: set[int] = set()
    for part in field.split(","):
        for name, number in (names or {}).items():
            part = part.replace(name, str(number))
        step = 1
        if "/" in part:
            part, raw_step = part.split("/")
            step = int(raw_step)
        if part == "*":
            start, end = low, high
        elif "-" in part:
            start, end = (int(x) for x in part.split("-"))
        else:
            start = int(part)
            end = high if step > 1 else start
        out.update(range(start, end + 1, step))
    return out


def aws_dow(day: dt.date) -> int:
    return (day.isoweekday() % 7) + 1   # SUN=1 .. SAT=7


def day_matches(day: dt.date, dom: str, month: str, dow: str, year: str) -> bool:
    if year != "*" and day.year not in values(year, 1970, 2199):
        return False
    if day.month not in values(month, 1, 12, MONTHS):
        return False
    last = calendar.monthrange(day.year, day.month)[1]
    if dom != "?":
        if dom == "L":
            return day.day == last
        if dom.endswith("W"):
            n = int(dom[:-1])
            if n > last:
                return False   # as Quartz (whose syntax AWS's is): a month without that day has no nearest weekday
            target = dt.date(day.year, day.month, n)
            if target.weekday() == 5:
                target = target - dt.timedelta(days=1) if target.day > 1 else target + dt.timedelta(days=2)
            elif target.weekday() == 6:
                target = target + dt.timedelta(days=1) if target.day < last else target - dt.timedelta(days=2)
            return day == target
        return dom == "*" or day.day in values(dom, 1, 31)
    if dow.endswith("L"):
        return aws_dow(day) == int(dow[:-1]) and day.day + 7 > last
    if "#" in dow:
        weekday, nth = (int(x) for x in dow.split("#"))
        return aws_dow(day) == weekday and (day.day - 1) // 7 + 1 == nth
    return dow == "*" or aws_dow(day) in values(dow, 1, 7, DAYS)


def reference(fields: str, start: dt.datetime, zone: dt.tzinfo, count: int) -> list[dt.datetime]:
    minute, hour, dom, month, dow, year = fields.split()
    minutes, hours = sorted(values(minute, 0, 59)), sorted(values(hour, 0, 23))
    out: list[dt.datetime] = []
    day = start.astimezone(zone).date()
    while len(out) < count and day.year < 2200:
        if day_matches(day, dom, month, dow, year):
            for h in hours:
                for m in minutes:
                    wall = dt.datetime(day.year, day.month, day.day, h, m)
                    aware = wall.replace(tzinfo=zone)
                    if aware.astimezone(dt.UTC).astimezone(zone).replace(tzinfo=None) != wall:
                        continue   # in the spring-forward gap: skipped
                    when = aware.astimezone(dt.UTC)   # fold=0: a repeated fall-back time runs at its first instant
                    if when > start and len(out) < count:
                        out.append(when)
        day += dt.timedelta(days=1)
    return out


def ours(text: str, start: dt.datetime, zone: dt.tzinfo, count: int) -> list[dt.datetime]:
    expr = parse(text)
    out: list[dt.datetime] = []
    t = start.timestamp()
    for _ in range(count):
        nxt = expr.next_after(t, zone)
        if nxt is None:
            break
        out.append(dt.datetime.fromtimestamp(nxt, dt.UTC))
        t = nxt
    return out


CASES = [
    ("0 0 L * ? *", "UTC", "2027-12-15"),              # month ends, through a leap February
    ("0 0 L * ? *", "UTC", "2028-01-15"),
    ("0 0 31 * ? *", "UTC", "2026-01-05"),             # only the months that have a 31st
    ("0 0 29 2 ? *", "UTC", "2026-01-01"),             # leap days only (18 of them, to 2096: see below)
    ("0 12 15W * ? *", "UTC", "2026-01-01"),           # the weekday nearest the 15th
    ("0 12 1W * ? *", "UTC", "2026-01-01"),            # never into the previous month
    ("0 12 31W * ? *", "UTC", "2026-01-01"),           # only in months with a 31st
    ("0 12 ? * 6L *", "UTC", "2026-01-01"),            # last Friday
    ("0 12 ? * 3#2 *", "UTC", "2026-01-01"),           # second Tuesday
    ("0 12 ? * 1#5 *", "UTC", "2026-01-01"),           # a fifth Sunday, only in months that have one
    ("0 8 ? * MON-FRI 2027", "UTC", "2026-12-30"),     # a year field
    ("0/20 9-10 ? JAN,JUL SAT *", "UTC", "2026-01-01"),
    ("30 2 * * ? *", "America/New_York", "2026-03-05"),   # 2:30 does not exist on 8 March: skipped
    ("30 1 * * ? *", "America/New_York", "2026-10-29"),   # 1:30 happens twice on 1 November: once
    ("0/15 2 * * ? *", "Europe/Berlin", "2026-03-27"),    # 2:xx does not exist on 29 March
    ("0/15 2 * * ? *", "Europe/Berlin", "2026-10-23"),    # 2:xx twice on 25 October: each once
    ("0 0 ? * 1 *", "Australia/Lord_Howe", "2026-03-30"),  # a half-hour DST shift
]


@pytest.mark.parametrize(("fields", "zone_name", "start"), CASES)
def test_cron_agrees_with_reference(fields: str, zone_name: str, start: str) -> None:
    zone = ZoneInfo(zone_name)
    begin = dt.datetime.fromisoformat(start).replace(tzinfo=dt.UTC)
    # aws-croniter looks a few years ahead at most: after 2096 it finds no 29 February (2100 is not a leap year)
    count = 18 if fields == "0 0 29 2 ? *" else 24
    want = reference(fields, begin, zone, count)
    assert len(want) == count
    assert ours(f"cron({fields})", begin, zone, count) == want


def test_dst_rules_spelled_out() -> None:
    ny = zone_for("America/New_York")
    spring = ours("cron(30 2 * * ? *)", dt.datetime(2026, 3, 7, 12, tzinfo=dt.UTC), ny, 2)
    assert [t.astimezone(ny).strftime("%m-%d %H:%M") for t in spring] == ["03-09 02:30", "03-10 02:30"]
    fall = ours("cron(30 1 * * ? *)", dt.datetime(2026, 10, 31, 12, tzinfo=dt.UTC), ny, 2)
    assert [t.isoformat() for t in fall] == ["2026-11-01T05:30:00+00:00", "2026-11-02T06:30:00+00:00"]


def test_rate_and_at() -> None:
    rate = parse("rate(5 minutes)")
    assert rate.next_after(1000.0, anchor=1000.0) == 1300.0
    assert rate.next_after(1299.0, anchor=1000.0) == 1300.0
    assert rate.next_after(1300.0, anchor=1000.0) == 1600.0
    assert parse("rate(1 day)").interval == 86400 and parse("rate(2 hours)").interval == 7200
    at = parse("at(2026-03-08T02:30:00)")
    assert at.next_after(0.0, zone_for("America/New_York")) is None   # never on the wall clock
    berlin = at.next_after(0.0, zone_for("Europe/Berlin"))
    assert berlin == dt.datetime(2026, 3, 8, 1, 30, tzinfo=dt.UTC).timestamp()
    assert at.next_after(berlin, zone_for("Europe/Berlin")) is None


@pytest.mark.parametrize("text", ["rate(1 minutes)", "rate(10 minute)", "rate(10 MINUTES)", "rate(10 seconds)",
                                  "rate(0 minutes)", "rate( 10 minutes )", " rate(10 minutes)", "cron(0 1 * * * *)",
                                  "cron(71 8 1 * ? *)", "cron(0 1 * * ?)", "cron(0 1 ? * 3#1,6#3 *)",
                                  "cron(0  1 * * ? *)", "at(2026-02-30T00:00:00)", "at(2026-01-01 00:00:00)"])
def test_rejected(text: str) -> None:
    with pytest.raises(ExpressionError):
        parse(text)


def test_time_zone_names() -> None:
    with pytest.raises(ExpressionError):
        zone_for("Mars/Olympus")
    assert zone_for(None) is dt.UTC
