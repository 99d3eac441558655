"""EventBridge Scheduler (spec/events.md §4.1): schedule groups and schedules, durable in the store, fired from
the shared timer heap.

Firing is two-step and durable at each step: shortly before an occurrence is due (the heap's lead), one commit
for all schedules of the tick advances their next due times and writes each occurrence into the outbox
(eb_pending, with its payload and send time); at its send time the occurrence goes to its target, and it leaves
the outbox in the same transaction as the target's own write (the function's async event, the queue's message).
So a stop or a crash at any moment neither loses an occurrence nor fires one twice; occurrences still in the
outbox at a start are sent then.

A schedule whose occurrence came due while the server was down fires that occurrence once after the start (not
once per missed occurrence), then continues from the current time. FlexibleTimeWindow: an occurrence is sent at a
random time within its window after the due time; after a restart, a missed occurrence whose window is still open
is sent at a random time in what is left of it, one whose window has passed is sent at once. Fired payloads: the
target's Input with Scheduler's placeholders filled in, or, without Input, a scheduled event in EventBridge's shape.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import random
import re
import uuid
from functools import lru_cache, partial
from typing import Any

import orjson

from lamina.eventbridge import expressions
from lamina.eventbridge.errors import BridgeError, validation
from lamina.eventbridge.targets import Deliverer, Prepared
from lamina.eventbridge.timers import TimerHeap
from lamina.store.eventbridge import EventBridgeRepo, PendingRow, ScheduleRow

_NAME = re.compile(r"[0-9a-zA-Z\-_.]{1,64}")
_ARN = re.compile(r"arn:aws[a-z\-]*:[a-z0-9\-]+:[a-z0-9\-]*:\d{0,12}:.+")
DEFAULT_GROUP = "default"


@lru_cache(maxsize=256)
def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def not_found(message: str) -> BridgeError:
    return BridgeError("ResourceNotFoundException", message, 404)


class ScheduleService:
    def __init__(self, repo: EventBridgeRepo, heap: TimerHeap, deliverer: Deliverer, region: str,
                 account: str) -> None:
        self.repo = repo
        self.heap = heap
        self.clock = heap.clock
        self.deliverer = deliverer
        self.region = region
        self.account = account
        self.groups: dict[str, dict] = {}
        self.schedules: dict[tuple[str, str], ScheduleRow] = {}
        self.fired = 0
        # When each schedule's next occurrence is to be sent (its due time, or its flexible window's pick).
        self._fire_at: dict[tuple[str, str], float] = {}
        # Occurrences in the outbox waiting for their send time: token -> (timer, [(schedule or None, pending row)],
        # their delivery prepared ahead)
        self._prepared: dict[int, tuple[asyncio.TimerHandle | None, list[tuple[ScheduleRow | None, PendingRow]],
                                        Prepared]] = {}
        self._tokens = itertools.count()
        heap.handlers["s"] = self._fire

    # ------------------------------------------------------------------ lifecycle

    def load(self) -> None:
        """Read the store. Occurrences left in the outbox are sent at their time (now, if it has passed). A schedule
        whose next occurrence came due while the server was down fires it once: at once if its flexible window (none
        with Mode OFF) has passed, else within what is left of the window; but if an occurrence of it was still in the
        outbox, that one was the missed occurrence, and the schedule goes on with its next one not yet missed."""
        self.groups = self.repo.groups()
        if DEFAULT_GROUP not in self.groups:
            now = self.clock.now()
            self.groups[DEFAULT_GROUP] = {"CreationDate": now, "LastModificationDate": now}
            self.repo.put_group(DEFAULT_GROUP, self.groups[DEFAULT_GROUP])
        now = self.clock.now()
        owed = [p for p in self.repo.pending() if p.owner == "s"]
        owing = {(p.a, p.b) for p in owed}
        skipped: list[tuple[float | None, str, str]] = []
        for row in self.repo.schedules():
            key = (row.group, row.name)
            self.schedules[key] = row
            if row.next_due is None or row.config.get("State") != "ENABLED":
                continue
            window = _window(row.config)
            if row.next_due + window < now and key in owing:
                row.next_due = self._first_due(row.config, now - window)
                skipped.append((row.next_due, row.group, row.name))
                self._arm(row)
            elif row.next_due + window < now:
                self._arm(row, now)
            elif row.next_due < now:
                self._arm(row, random.uniform(now, row.next_due + window))
            else:
                self._arm(row)
        if skipped:
            self.repo.set_schedules_due(skipped)
        by_time: dict[float, list[tuple[ScheduleRow | None, PendingRow]]] = {}
        for p in owed:
            done = self.schedules.get((p.a, p.b))   # its last occurrence (ActionAfterCompletion applies after it)
            by_time.setdefault(max(p.fire_at, now), []).append((done if done is not None and done.next_due is None
                                                                  else None, p))
        loop = asyncio.get_running_loop()
        for when, batch in by_time.items():
            token = next(self._tokens)
            self._prepared[token] = (loop.call_later(self.clock.real_delay(when), partial(self._send, token)), batch,
                                     self._prepare(batch))

    # ------------------------------------------------------------------ ARNs

    def group_arn(self, group: str) -> str:
        return f"arn:aws:scheduler:{self.region}:{self.account}:schedule-group/{group}"

    def schedule_arn(self, group: str, name: str) -> str:
        return f"arn:aws:scheduler:{self.region}:{self.account}:schedule/{group}/{name}"

    # ------------------------------------------------------------------ groups

    def create_group(self, name: str, body: dict) -> dict:
        if not _NAME.fullmatch(name):
            raise validation(f"Invalid schedule group name: {name}")
        if name in self.groups:
            raise BridgeError("ConflictException", f"Schedule group {name} already exists.", 409)
        now = self.clock.now()
        self.groups[name] = {"CreationDate": now, "LastModificationDate": now, "Tags": body.get("Tags") or []}
        self.repo.put_group(name, self.groups[name])
        return {"ScheduleGroupArn": self.group_arn(name)}

    def _group_view(self, name: str) -> dict:
        g = self.groups[name]
        return {"Arn": self.group_arn(name), "Name": name, "State": "ACTIVE", "CreationDate": g["CreationDate"],
                "LastModificationDate": g["LastModificationDate"]}

    def get_group(self, name: str) -> dict:
        if name not in self.groups:
            raise not_found(f"Schedule group {name} does not exist.")
        return self._group_view(name)

    def delete_group(self, name: str) -> dict:
        if name == DEFAULT_GROUP:
            raise validation("Cannot delete the default schedule group.")
        if name not in self.groups:
            raise not_found(f"Schedule group {name} does not exist.")
        for key in [k for k in self.schedules if k[0] == name]:
            del self.schedules[key]
            self._fire_at.pop(key, None)
            self.heap.set(("s", *key), None)
        del self.groups[name]
        self.repo.delete_group(name)
        return {}

    def list_groups(self, prefix: str | None, max_results: int | None, token: str | None) -> dict:
        names = sorted(n for n in self.groups if not prefix or n.startswith(prefix))
        page, nxt = _page(names, max_results, token)
        return {"ScheduleGroups": [self._group_view(n) for n in page], **({"NextToken": nxt} if nxt else {})}

    # ------------------------------------------------------------------ tags (schedule groups have them)

    def _group_of_arn(self, arn: str) -> str:
        prefix = f"arn:aws:scheduler:{self.region}:{self.account}:schedule-group/"
        name = arn[len(prefix):] if arn.startswith(prefix) else None
        if name is None or name not in self.groups:
            raise not_found(f"Schedule group {name or arn} does not exist.")
        return name

    def list_tags(self, arn: str) -> dict:
        return {"Tags": list(self.groups[self._group_of_arn(arn)].get("Tags") or [])}

    def tag(self, arn: str, body: dict) -> dict:
        name = self._group_of_arn(arn)
        tags = body.get("Tags")
        if not isinstance(tags, list) or not all(isinstance(t, dict) and t.get("Key") for t in tags):
            raise validation("Tags must be a list of {Key, Value}.")
        merged = {t["Key"]: t.get("Value", "") for t in self.groups[name].get("Tags") or []}
        merged.update({t["Key"]: t.get("Value", "") for t in tags})
        if len(merged) > 200:
            raise validation("A resource can have at most 200 tags.")
        self.groups[name]["Tags"] = [{"Key": k, "Value": v} for k, v in merged.items()]
        self.repo.put_group(name, self.groups[name])
        return {}

    def untag(self, arn: str, keys: list[str]) -> dict:
        name = self._group_of_arn(arn)
        self.groups[name]["Tags"] = [t for t in self.groups[name].get("Tags") or [] if t["Key"] not in keys]
        self.repo.put_group(name, self.groups[name])
        return {}

    # ------------------------------------------------------------------ schedules

    def create(self, name: str, body: dict) -> dict:
        group = body.get("GroupName") or DEFAULT_GROUP
        config = self._validated(name, body)
        if group not in self.groups:
            raise not_found(f"Schedule group {group} does not exist.")
        existing = self.schedules.get((group, name))
        if existing is not None:
            token = body.get("ClientToken")
            if token and existing.config.get("ClientToken") == token:
                return {"ScheduleArn": self.schedule_arn(group, name)}   # the same request, retried
            raise BridgeError("ConflictException", f"Schedule {name} already exists.", 409)
        now = self.clock.now()
        config.update(CreationDate=now, LastModificationDate=now, Anchor=config.get("StartDate") or now)
        self._save(group, name, config)
        return {"ScheduleArn": self.schedule_arn(group, name)}

    def update(self, name: str, body: dict) -> dict:
        """Full replace, as AWS: omitted optional fields are reset."""
        group = body.get("GroupName") or DEFAULT_GROUP
        config = self._validated(name, body)
        existing = self.schedules.get((group, name))
        if existing is None:
            raise not_found(f"Schedule {name} does not exist.")
        now = self.clock.now()
        config.update(CreationDate=existing.config["CreationDate"], LastModificationDate=now,
                      Anchor=config.get("StartDate") or now)
        self._save(group, name, config)
        return {"ScheduleArn": self.schedule_arn(group, name)}

    def get(self, name: str, group: str | None) -> dict:
        group = group or DEFAULT_GROUP
        row = self.schedules.get((group, name))
        if row is None:
            raise not_found(f"Schedule {name} does not exist.")
        c = row.config
        view: dict[str, Any] = {"Arn": self.schedule_arn(group, name), "Name": name, "GroupName": group}
        for key in ("ScheduleExpression", "ScheduleExpressionTimezone", "StartDate", "EndDate", "Description",
                    "State", "KmsKeyArn", "Target", "FlexibleTimeWindow", "ActionAfterCompletion", "CreationDate",
                    "LastModificationDate"):
            if c.get(key) is not None:
                view[key] = c[key]
        return view

    def delete(self, name: str, group: str | None) -> dict:
        group = group or DEFAULT_GROUP
        if (group, name) not in self.schedules:
            raise not_found(f"Schedule {name} does not exist.")
        self._remove(group, name)
        return {}

    def list_schedules(self, group: str | None, prefix: str | None, state: str | None, max_results: int | None,
             token: str | None) -> dict:
        if state is not None and state not in ("ENABLED", "DISABLED"):
            raise validation(f"Invalid State: {state}")
        keys = sorted(k for k, row in self.schedules.items()
                      if (group is None or k[0] == group) and (not prefix or k[1].startswith(prefix))
                      and (state is None or row.config.get("State") == state))
        page, nxt = _page([f"{g}/{n}" for g, n in keys], max_results, token)
        out = []
        for key in page:
            g, _, n = key.partition("/")
            c = self.schedules[(g, n)].config
            out.append({"Arn": self.schedule_arn(g, n), "Name": n, "GroupName": g, "State": c["State"],
                        "CreationDate": c["CreationDate"], "LastModificationDate": c["LastModificationDate"],
                        "Target": {"Arn": c["Target"]["Arn"]}})
        return {"Schedules": out, **({"NextToken": nxt} if nxt else {})}

    def next_due(self, name: str, group: str | None = None) -> float | None:
        row = self.schedules.get((group or DEFAULT_GROUP, name))
        return None if row is None else row.next_due

    # ------------------------------------------------------------------ validation

    def _validated(self, name: str, body: dict) -> dict:
        if not _NAME.fullmatch(name or ""):
            raise validation("1 validation error detected: Value at 'name' failed to satisfy constraint: Member "
                             "must satisfy regular expression pattern: ^[0-9a-zA-Z-_.]+$")
        text = body.get("ScheduleExpression")
        if not isinstance(text, str) or not text:
            raise validation("ScheduleExpression is required.")
        if len(text) > 256:
            raise validation("Invalid Schedule Expression: it is longer than 256 characters.")
        try:
            expressions.parse(text)
            expressions.zone_for(body.get("ScheduleExpressionTimezone"))
        except expressions.ExpressionError as exc:
            raise validation(str(exc)) from None
        window = body.get("FlexibleTimeWindow")
        if not isinstance(window, dict) or window.get("Mode") not in ("OFF", "FLEXIBLE"):
            raise validation("FlexibleTimeWindow with Mode OFF or FLEXIBLE is required.")
        minutes = window.get("MaximumWindowInMinutes")
        if window["Mode"] == "FLEXIBLE" and (not isinstance(minutes, int) or not 1 <= minutes <= 1440):
            raise validation("MaximumWindowInMinutes must be between 1 and 1440 when Mode is FLEXIBLE.")
        if window["Mode"] == "OFF" and minutes is not None:
            raise validation("MaximumWindowInMinutes must not be set when Mode is OFF.")
        target = body.get("Target")
        if not isinstance(target, dict) or not target.get("Arn") or not target.get("RoleArn"):
            raise validation("Target with Arn and RoleArn is required.")
        for key in ("Arn", "RoleArn"):
            if not _ARN.fullmatch(target[key]):
                raise validation(f"Invalid Target {key}: {target[key]}")
        if target.get("Input") is not None and not (isinstance(target["Input"], str) and target["Input"]):
            raise validation("Target Input must be a non-empty string.")
        retry = target.get("RetryPolicy")
        if retry is not None:
            age = retry.get("MaximumEventAgeInSeconds")
            attempts = retry.get("MaximumRetryAttempts")
            if age is not None and not 60 <= age <= 86400:
                raise validation("MaximumEventAgeInSeconds must be between 60 and 86400.")
            if attempts is not None and not 0 <= attempts <= 185:
                raise validation("MaximumRetryAttempts must be between 0 and 185.")
        dlq = (target.get("DeadLetterConfig") or {}).get("Arn")
        if dlq is not None and not dlq.startswith("arn:aws:sqs:"):
            raise validation(f"Invalid DeadLetterConfig Arn: {dlq}. It must be an SQS queue ARN.")
        state = body.get("State") or "ENABLED"
        if state not in ("ENABLED", "DISABLED"):
            raise validation(f"Invalid State: {state}")
        after = body.get("ActionAfterCompletion") or "NONE"
        if after not in ("NONE", "DELETE"):
            raise validation(f"Invalid ActionAfterCompletion: {after}")
        start, end = body.get("StartDate"), body.get("EndDate")
        if start is not None and end is not None and end <= start:
            raise validation("The EndDate you specify must be later than the StartDate.")
        if end is not None and end < self.clock.now() and not text.startswith("at("):
            raise validation("The EndDate you specify cannot be earlier than the current time.")
        if start is not None and start < self.clock.now() - 300 and not text.startswith("at("):
            raise validation("The StartDate you specify cannot be earlier than 5 minutes ago.")
        desc = body.get("Description")
        if desc is not None and len(desc) > 512:
            raise validation("Description must be at most 512 characters.")
        return {"ScheduleExpression": text, "ScheduleExpressionTimezone": body.get("ScheduleExpressionTimezone"),
                "StartDate": start, "EndDate": end, "Description": desc, "State": state,
                "KmsKeyArn": body.get("KmsKeyArn"), "Target": target, "FlexibleTimeWindow": window,
                "ActionAfterCompletion": after, "ClientToken": body.get("ClientToken")}

    # ------------------------------------------------------------------ firing

    def _first_due(self, config: dict, after: float) -> float | None:
        expr = expressions.parse(config["ScheduleExpression"])
        zone = expressions.zone_for(config.get("ScheduleExpressionTimezone"))
        if expr.kind != "at" and config.get("StartDate") and config["StartDate"] > after:
            after = config["StartDate"] - 1e-6
        due = expr.next_after(after, zone, anchor=config.get("Anchor"))
        if due is not None and expr.kind != "at" and config.get("EndDate") is not None and due > config["EndDate"]:
            return None
        return due

    def _jittered(self, config: dict, due: float) -> float:
        """FLEXIBLE: somewhere within the window after the due time, as AWS spreads invocations."""
        window = _window(config)
        return due + random.uniform(0, window) if window else due

    def _arm(self, row: ScheduleRow, fire_at: float | None = None) -> None:
        """Put the schedule's next occurrence on the heap at its send time (`fire_at`, or picked in its window)."""
        key = (row.group, row.name)
        if row.next_due is None or row.config["State"] != "ENABLED":
            self._fire_at.pop(key, None)
            self.heap.set(("s", *key), None)
            return
        when = self._jittered(row.config, row.next_due) if fire_at is None else fire_at
        self._fire_at[key] = when
        self.heap.set(("s", *key), when)

    def _save(self, group: str, name: str, config: dict) -> None:
        # A rate without StartDate starts now (its first occurrence is now); everything else after now.
        now = self.clock.now()
        rate_now = config["ScheduleExpression"].startswith("rate(") and not config.get("StartDate")
        due = now if rate_now else self._first_due(config, now)
        row = ScheduleRow(group, name, config, due)
        self.repo.put_schedule(row)
        self.schedules[(group, name)] = row
        self._arm(row)

    def _remove(self, group: str, name: str) -> None:
        del self.schedules[(group, name)]
        self.repo.delete_schedule(group, name)
        self._fire_at.pop((group, name), None)
        self.heap.set(("s", group, name), None)

    def _fire(self, keys: list[tuple], now: float) -> None:
        """Schedules to be sent now or within the heap's lead: in one commit, advance their next due times and put
        their occurrences in the outbox; then send each at its send time (those sent at the same time together)."""
        updates: list[tuple[float | None, str, str]] = []
        pending: list[PendingRow] = []
        batches: dict[float, list[tuple[ScheduleRow | None, PendingRow]]] = {}
        for _, group, name in keys:
            row = self.schedules.get((group, name))
            fire_at = self._fire_at.pop((group, name), None)
            if row is None or row.next_due is None or row.config["State"] != "ENABLED":
                continue
            occurrence = row.next_due
            if fire_at is None:
                fire_at = occurrence
            # From the later of the occurrence and the oldest time whose window is still open: after a stop, one
            # missed occurrence fires, not all of them; within a flexible window, no occurrence is skipped.
            if row.config["ScheduleExpression"].startswith("at("):
                row.next_due = None
            else:
                row.next_due = self._first_due(row.config, max(occurrence, now - _window(row.config)))
            updates.append((row.next_due, group, name))
            p = PendingRow(self.repo.pending_id(), "s", group, name, occurrence, fire_at, row.config["Target"],
                           self._payload(row, occurrence))
            pending.append(p)
            batches.setdefault(fire_at, []).append((row, p))
            self._arm(row)
        if not updates:
            return
        self.repo.fire(updates, [], pending)   # committed before anything is sent
        for fire_at, batch in batches.items():
            token = next(self._tokens)
            self._prepared[token] = (self.heap.at(fire_at, partial(self._send, token)), batch, self._prepare(batch))

    def _prepare(self, batch: list[tuple[ScheduleRow | None, PendingRow]]) -> Prepared:
        """The batch's delivery, prepared while it waits for its time (within the heap's lead)."""
        return self.deliverer.prepare([(p.target, p.payload) for _, p in batch], [p.id for _, p in batch],
                                      stage=True)

    def _send(self, token: int) -> None:
        _, batch, prepared = self._prepared.pop(token)
        self.fired += len(batch)
        self.deliverer.deliver_prepared(prepared)
        for row, _ in batch:
            if (row is not None and row.next_due is None and row.config.get("ActionAfterCompletion") == "DELETE"
                    and self.schedules.get((row.group, row.name)) is row):
                self._remove(row.group, row.name)

    def stop(self) -> None:
        """The server stops: occurrences not yet sent stay in the outbox; the next start sends them."""
        for handle, _, _ in self._prepared.values():
            if handle is not None:
                handle.cancel()
        self._prepared.clear()

    def _payload(self, row: ScheduleRow, occurrence: float) -> bytes:
        arn = self.schedule_arn(row.group, row.name)
        text = row.config["Target"].get("Input")
        if text is not None:
            if "<aws.scheduler." in text:
                for placeholder, value in (("<aws.scheduler.schedule-arn>", arn),
                                           ("<aws.scheduler.scheduled-time>", _iso(occurrence)),
                                           ("<aws.scheduler.execution-id>", str(uuid.uuid4())),
                                           ("<aws.scheduler.attempt-number>", "1")):
                    text = text.replace(placeholder, value)
            return text.encode()
        return orjson.dumps({"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event",
                             "source": "aws.scheduler", "account": self.account, "time": _iso(occurrence),
                             "region": self.region, "resources": [arn], "detail": {}})


def _window(config: dict) -> float:
    """A schedule's flexible time window in seconds (0 with Mode OFF)."""
    window = config.get("FlexibleTimeWindow") or {}
    return 60.0 * window["MaximumWindowInMinutes"] if window.get("Mode") == "FLEXIBLE" else 0.0


def _page(items: list[str], max_results: int | None, token: str | None) -> tuple[list[str], str | None]:
    if max_results is not None and not 1 <= max_results <= 100:
        raise validation("MaxResults must be between 1 and 100.")
    size = max_results or 100
    start = 0
    if token:
        try:
            start = int(token)
        except ValueError:
            raise validation("Invalid NextToken.") from None
    page = items[start:start + size]
    return page, (str(start + size) if start + size < len(items) else None)
