"""EventBridge buses and rules (spec/events.md §4.2): the default bus and custom buses, rules with an event
pattern (compiled once, when the rule is put) or a schedule (default bus only, fired from the shared timer heap),
their targets, PutEvents and TestEventPattern."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import re
import uuid
from dataclasses import dataclass, field
from functools import lru_cache, partial
from typing import Any

import orjson

from lamina.eventbridge import expressions
from lamina.eventbridge.errors import BridgeError, validation
from lamina.eventbridge.ids import new_id
from lamina.eventbridge.targets import Deliverer, check_path, check_transformer, payload_for
from lamina.eventbridge.timers import TimerHeap
from lamina.eventpattern import Pattern, PatternError, compile_pattern
from lamina.store.eventbridge import EventBridgeRepo, PendingRow, RuleRow

DEFAULT_BUS = "default"
_NAME = re.compile(r"[.\-_A-Za-z0-9]{1,64}")
_BUS_NAME = re.compile(r"[/.\-_A-Za-z0-9]{1,256}")
_TARGET_ID = re.compile(r"[.\-_A-Za-z0-9]{1,64}")
_ENTRY_LIMIT = 256 * 1024


def not_found(message: str) -> BridgeError:
    return BridgeError("ResourceNotFoundException", message, 400)


@lru_cache(maxsize=64)
def _iso(epoch: int) -> str:
    """Whole seconds (EventBridge's `time`); cached: the events of one second share it."""
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _bad(code: str, message: str) -> dict:
    """A PutEvents entry's result when it was not put."""
    return {"ErrorCode": code, "ErrorMessage": message}


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


@dataclass(slots=True)
class Rule:
    row: RuleRow
    pattern: Pattern | None
    schedule: expressions.Expression | None
    arn: str
    targets: list[dict] = field(default_factory=list)


class EventBusService:
    def __init__(self, repo: EventBridgeRepo, heap: TimerHeap, deliverer: Deliverer, region: str,
                 account: str) -> None:
        self.repo = repo
        self.heap = heap
        self.clock = heap.clock
        self.deliverer = deliverer
        self.region = region
        self.account = account
        self.buses: dict[str, dict] = {}
        self.rules: dict[str, dict[str, Rule]] = {}    # bus -> name -> rule
        self.events_put = 0
        self._indexes: dict[str, tuple[dict[str, tuple[Rule, ...]], tuple[Rule, ...]]] = {}
        # Scheduled rules' occurrences in the outbox (store/eventbridge.py's eb_pending, as the Scheduler's) waiting
        # for their due time: token -> (timer, pending rows)
        self._prepared: dict[int, tuple[asyncio.TimerHandle | None, list[PendingRow]]] = {}
        self._tokens = itertools.count()
        self.matched = 0
        heap.handlers["r"] = self._fire
        self._sender = deliverer.sender

    def load(self) -> None:
        self.buses = self.repo.buses()
        if DEFAULT_BUS not in self.buses:
            self.buses[DEFAULT_BUS] = {"CreationTime": self.clock.now()}
            self.repo.put_bus(DEFAULT_BUS, self.buses[DEFAULT_BUS])
        self.rules = {name: {} for name in self.buses}
        self._indexes.clear()
        now = self.clock.now()
        owed = [p for p in self.repo.pending() if p.owner == "r"]
        owing = {(p.a, p.b) for p in owed}
        skipped: list[tuple[float | None, str, str]] = []
        for row in self.repo.rules():
            rule = self._compiled(row)
            self.rules.setdefault(row.bus, {})[row.name] = rule
            if rule.schedule is not None and row.config.get("State") == "ENABLED" and row.next_due is not None:
                if row.next_due < now and (row.bus, row.name) in owing:
                    # The occurrence still in the outbox was the missed one: go on from now.
                    row.next_due = rule.schedule.next_after(now, anchor=row.config["Anchor"])
                    skipped.append((row.next_due, row.bus, row.name))
                self.heap.set(("r", row.bus, row.name), max(row.next_due, now) if row.next_due is not None else None)
        if skipped:
            self.repo.set_rules_due(skipped)
        by_time: dict[float, list[PendingRow]] = {}
        for p in owed:
            by_time.setdefault(max(p.fire_at, now), []).append(p)
        loop = asyncio.get_running_loop()
        for when, batch in by_time.items():
            token = next(self._tokens)
            self._prepared[token] = (loop.call_later(self.clock.real_delay(when), partial(self._send_scheduled,
                                                                                          token)), batch)

    # ------------------------------------------------------------------ ARNs

    def bus_arn(self, bus: str) -> str:
        return f"arn:aws:events:{self.region}:{self.account}:event-bus/{bus}"

    def rule_arn(self, bus: str, name: str) -> str:
        middle = "" if bus == DEFAULT_BUS else f"{bus}/"
        return f"arn:aws:events:{self.region}:{self.account}:rule/{middle}{name}"

    def _bus_name(self, value: str | None) -> str:
        if not value:
            return DEFAULT_BUS
        if value.startswith("arn:"):
            return value.rpartition(":event-bus/")[2]
        return value

    def _bus(self, value: str | None) -> str:
        name = self._bus_name(value)
        if name not in self.buses:
            raise not_found(f"Event bus {name} does not exist.")
        return name

    def _rule(self, body: dict) -> Rule:
        bus = self._bus(body.get("EventBusName"))
        name = body.get("Name") or body.get("Rule") or ""
        rule = self.rules[bus].get(name)
        if rule is None:
            raise not_found(f"Rule {name} does not exist on EventBus {bus}.")
        return rule

    # ------------------------------------------------------------------ buses

    def create_event_bus(self, body: dict) -> dict:
        name = body.get("Name") or ""
        if not _BUS_NAME.fullmatch(name) or "/" in name:
            raise validation(f"Event bus name {name!r} is not valid.")
        if name == DEFAULT_BUS or name.startswith("aws."):
            raise validation(f"Event bus name must not be {name!r}.")
        if name in self.buses:
            raise BridgeError("ResourceAlreadyExistsException", f"Event bus {name} already exists.")
        now = self.clock.now()
        self.buses[name] = {"CreationTime": now, "Description": body.get("Description")}
        self.rules[name] = {}
        self.repo.put_bus(name, self.buses[name])
        return {"EventBusArn": self.bus_arn(name)}

    def _bus_view(self, name: str) -> dict:
        c = self.buses[name]
        view = {"Name": name, "Arn": self.bus_arn(name), "CreationTime": c["CreationTime"],
                "LastModifiedTime": c["CreationTime"]}
        if c.get("Description"):
            view["Description"] = c["Description"]
        return view

    def describe_event_bus(self, body: dict) -> dict:
        return self._bus_view(self._bus(body.get("Name")))

    def list_event_buses(self, body: dict) -> dict:
        prefix = body.get("NamePrefix") or ""
        return {"EventBuses": [self._bus_view(n) for n in sorted(self.buses) if n.startswith(prefix)]}

    def delete_event_bus(self, body: dict) -> dict:
        name = self._bus_name(body.get("Name"))
        if name == DEFAULT_BUS:
            raise validation("Cannot delete event bus default.")
        if name in self.buses:   # AWS answers success for a bus that is not there
            for rule in self.rules.pop(name, {}).values():
                self.heap.set(("r", name, rule.row.name), None)
            del self.buses[name]
            self._indexes.pop(name, None)
            self.repo.delete_bus(name)
        return {}

    # ------------------------------------------------------------------ rules

    def _compiled(self, row: RuleRow) -> Rule:
        c = row.config
        pattern = compile_pattern(c["EventPattern"]) if c.get("EventPattern") else None
        schedule = expressions.parse(c["ScheduleExpression"], allow_at=False) if c.get("ScheduleExpression") else None
        return Rule(row, pattern, schedule, self.rule_arn(row.bus, row.name), row.targets)

    def put_rule(self, body: dict) -> dict:
        name = body.get("Name") or ""
        if not _NAME.fullmatch(name):
            raise validation(f"1 validation error detected: Value '{name}' at 'name' failed to satisfy constraint: "
                             "Member must satisfy regular expression pattern: [\\.\\-_A-Za-z0-9]+")
        pattern, schedule = body.get("EventPattern"), body.get("ScheduleExpression")
        if not pattern and not schedule:
            raise validation("Parameter(s) EventPattern or ScheduleExpression must be specified.")
        bus = self._bus_name(body.get("EventBusName"))
        if schedule:
            if bus != DEFAULT_BUS:
                raise validation("ScheduleExpression is supported only on the default event bus.")
            try:
                expressions.parse(schedule, allow_at=False)
            except expressions.ExpressionError:
                raise validation("Parameter ScheduleExpression is not valid.") from None
        if pattern:
            try:
                compile_pattern(pattern)
            except PatternError as exc:
                raise BridgeError("InvalidEventPatternException", f"Event pattern is not valid. Reason: {exc}") \
                    from None
        bus = self._bus(bus)
        state = body.get("State") or "ENABLED"
        if state not in ("ENABLED", "DISABLED"):
            raise validation(f"1 validation error detected: Value '{state}' at 'state' failed to satisfy "
                             "constraint: Member must satisfy enum value set: [DISABLED, ENABLED]")
        old = self.rules[bus].get(name)
        config = {"EventPattern": pattern, "ScheduleExpression": schedule, "State": state,
                  "Description": body.get("Description"), "RoleArn": body.get("RoleArn"),
                  "Anchor": self.clock.now()}
        row = RuleRow(bus, name, config, old.targets if old else [], None)
        self._store(row)
        return {"RuleArn": self.rule_arn(bus, name)}

    def _store(self, row: RuleRow) -> None:
        rule = self._compiled(row)
        if rule.schedule is not None and row.config["State"] == "ENABLED":
            now = self.clock.now()
            row.next_due = rule.schedule.next_after(now, anchor=row.config["Anchor"] if
                                                    rule.schedule.kind != "rate" else now)
        else:
            row.next_due = None
        self.rules[row.bus][row.name] = rule
        self._indexes.pop(row.bus, None)
        self.repo.put_rule(row)
        self.heap.set(("r", row.bus, row.name), row.next_due)

    def _rule_view(self, rule: Rule) -> dict:
        c = rule.row.config
        view = {"Name": rule.row.name, "Arn": rule.arn, "State": c["State"], "EventBusName": rule.row.bus}
        for key in ("EventPattern", "ScheduleExpression", "Description", "RoleArn"):
            if c.get(key):
                view[key] = c[key]
        return view

    def describe_rule(self, body: dict) -> dict:
        rule = self._rule(body)
        return {**self._rule_view(rule), "CreatedBy": self.account}

    def delete_rule(self, body: dict) -> dict:
        bus = self._bus(body.get("EventBusName"))
        name = body.get("Name") or ""
        rule = self.rules[bus].get(name)
        if rule is None:
            return {}
        if rule.targets:
            raise validation("Rule can't be deleted since it has targets.")
        del self.rules[bus][name]
        self._indexes.pop(bus, None)
        self.repo.delete_rule(bus, name)
        self.heap.set(("r", bus, name), None)
        return {}

    def list_rules(self, body: dict) -> dict:
        bus = self._bus(body.get("EventBusName"))
        prefix = body.get("NamePrefix") or ""
        names = sorted(n for n in self.rules[bus] if n.startswith(prefix))
        return {"Rules": [self._rule_view(self.rules[bus][n]) for n in names]}

    def _set_state(self, body: dict, state: str) -> dict:
        rule = self._rule(body)
        rule.row.config["State"] = state
        self._store(rule.row)
        return {}

    def enable_rule(self, body: dict) -> dict:
        return self._set_state(body, "ENABLED")

    def disable_rule(self, body: dict) -> dict:
        return self._set_state(body, "DISABLED")

    # ------------------------------------------------------------------ targets

    def put_targets(self, body: dict) -> dict:
        rule = self._rule({**body, "Name": body.get("Rule")})
        targets = body.get("Targets")
        if not isinstance(targets, list) or not 1 <= len(targets) <= 100:
            raise validation("1 validation error detected: Value at 'targets' failed to satisfy constraint: "
                             "Member must have length between 1 and 100")
        failed = []
        by_id = {t["Id"]: t for t in rule.targets}
        for target in targets:
            problem = self._target_problem(target)
            if problem is not None:
                failed.append({"TargetId": target.get("Id"), "ErrorCode": problem[0], "ErrorMessage": problem[1]})
                continue
            by_id[target["Id"]] = target
        if len(by_id) > 5:
            raise BridgeError("LimitExceededException", "The requested resource exceeds the maximum number "
                              "allowed of 5 targets per rule.")
        rule.targets = list(by_id.values())
        rule.row.targets = rule.targets
        self.repo.put_rule(rule.row)
        return {"FailedEntryCount": len(failed), "FailedEntries": failed}

    def _target_problem(self, target: dict) -> tuple[str, str] | None:
        tid, arn = target.get("Id"), target.get("Arn")
        if not isinstance(tid, str) or not _TARGET_ID.fullmatch(tid):
            raise validation("Target Id must match [\\.\\-_A-Za-z0-9]+ and be 1 to 64 characters.")
        if not isinstance(arn, str) or not arn.startswith("arn:"):
            raise validation(f"Parameter {arn} is not valid. Reason: Provided Arn is not in correct format.")
        given = [k for k in ("Input", "InputPath", "InputTransformer") if target.get(k) is not None]
        if len(given) > 1:
            raise validation("Only one of Input, InputPath, or InputTransformer must be provided.")
        if target.get("Input") is not None:
            if len(target["Input"]) > 8192:
                raise validation("Input must be at most 8192 characters.")
            try:
                orjson.loads(target["Input"])
            except orjson.JSONDecodeError:
                raise validation("Input is not valid JSON.") from None
        if target.get("InputPath") is not None:
            check_path(target["InputPath"], "InputPath")
        if target.get("InputTransformer") is not None:
            check_transformer(target["InputTransformer"])
        retry = target.get("RetryPolicy") or {}
        if not 0 <= retry.get("MaximumRetryAttempts", 0) <= 185:
            raise validation("MaximumRetryAttempts must be between 0 and 185.")
        if not 60 <= retry.get("MaximumEventAgeInSeconds", 60) <= 86400:
            raise validation("MaximumEventAgeInSeconds must be between 60 and 86400.")
        if not self._sender.exists(arn):
            return "InvalidArgument", f"Target {arn} does not exist in Lamina (functions, queues and buses are)."
        return None

    def remove_targets(self, body: dict) -> dict:
        rule = self._rule({**body, "Name": body.get("Rule")})
        ids = body.get("Ids")
        if not isinstance(ids, list) or not 1 <= len(ids) <= 100:
            raise validation("1 validation error detected: Value at 'ids' failed to satisfy constraint: Member must "
                             "have length between 1 and 100")
        present = {t["Id"] for t in rule.targets}
        failed = [{"TargetId": i, "ErrorCode": "ResourceNotFoundException",
                   "ErrorMessage": f"Target {i} does not exist on rule {rule.row.name}."} for i in ids
                  if i not in present]
        rule.targets = [t for t in rule.targets if t["Id"] not in ids]
        rule.row.targets = rule.targets
        self.repo.put_rule(rule.row)
        return {"FailedEntryCount": len(failed), "FailedEntries": failed}

    def list_targets_by_rule(self, body: dict) -> dict:
        rule = self._rule({**body, "Name": body.get("Rule")})
        return {"Targets": rule.targets}

    # ------------------------------------------------------------------ events

    async def put_events(self, body: dict) -> dict:
        """Answers once every matched target that takes a durable write has it (the matched functions' async events,
        one group commit for the whole request; the queues' messages): an event put is not lost to a crash after
        its answer. Deliveries a target refuses are retried in the background (RetryPolicy, then the DLQ)."""
        entries = body.get("Entries")
        if not isinstance(entries, list) or not 1 <= len(entries) <= 10:
            raise validation("1 validation error detected: Value '[PutEventsRequestEntry]' at 'entries' failed to "
                             "satisfy constraint: Member must have length less than or equal to 10")
        results: list[dict[str, Any]] = []
        failed = 0
        deliveries: list[tuple[dict, bytes]] = []
        now = self.clock.now()
        for entry in entries:
            result = self._put_one(entry, deliveries, now)
            failed += "ErrorCode" in result
            results.append(result)
        if deliveries:
            # One hand-off per target ARN for the whole request; answer once each has had its first attempt.
            await asyncio.wait(self.deliverer.deliver_many(deliveries))
        return {"FailedEntryCount": failed, "Entries": results}

    def _put_one(self, entry: dict, deliveries: list[tuple[dict, bytes]], now: float) -> dict:
        source, detail_type, raw = entry.get("Source"), entry.get("DetailType"), entry.get("Detail")
        if not source:
            return _bad("InvalidArgument", "Parameter Source is not valid. Reason: Source is a required argument.")
        if not detail_type:
            return _bad("InvalidArgument",
                        "Parameter DetailType is not valid. Reason: DetailType is a required argument.")
        if not raw:
            return _bad("InvalidArgument", "Parameter Detail is not valid. Reason: Detail is a required argument.")
        try:
            detail = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return _bad("MalformedDetail", "Detail is malformed.")
        if type(detail) is not dict:
            return _bad("MalformedDetail", "Detail is malformed.")
        resources = entry.get("Resources") or []
        when = entry.get("Time")
        # AWS's entry size: Time 14 bytes (when given), then Source, DetailType, Detail and each resource in UTF-8
        # (at most 4 bytes a character: counted exactly only when that bound is over the limit).
        chars = len(source) + len(detail_type) + len(raw)
        if resources:
            chars += sum(len(r) for r in resources if isinstance(r, str))
        if chars * 4 + 14 > _ENTRY_LIMIT:
            size = (14 if when is not None else 0) + _utf8_len(source) + _utf8_len(detail_type) + _utf8_len(raw) \
                + sum(_utf8_len(r) for r in resources if isinstance(r, str))
            if size > _ENTRY_LIMIT:
                return _bad("InvalidArgument", "Entry size exceeds the 256 KB limit.")
        bus = entry.get("EventBusName") or DEFAULT_BUS
        if bus not in self.buses:
            bus = self._bus_name(bus)
            if bus not in self.buses:
                return _bad("InvalidArgument", f"Event bus {bus} does not exist.")
        event_id = new_id()
        event = {"version": "0", "id": event_id, "detail-type": detail_type, "source": source,
                 "account": self.account,
                 "time": _iso(int(now if when is None or not isinstance(when, (int, float)) else when)),
                 "region": self.region, "resources": resources, "detail": detail}
        self._route(bus, event, deliveries)
        return {"EventId": event_id}

    def publish(self, bus: str, event: dict) -> int:
        """Route an event on a bus to the targets of every enabled rule whose pattern matches; how many matched."""
        deliveries: list[tuple[dict, bytes]] = []
        hits = self._route(bus, event, deliveries)
        if deliveries:
            self.deliverer.deliver_many(deliveries)
        return hits

    def _route(self, bus: str, event: dict, deliveries: list[tuple[dict, bytes]]) -> int:
        self.events_put += 1
        hits = 0
        by_source, others = self._index(bus)
        source = event.get("source")
        encoded: bytes | None = None
        for rule in by_source.get(source, others) if type(source) is str else others:
            if not rule.pattern.matches(event):   # type: ignore[union-attr]  # indexed rules have patterns
                continue
            hits += 1
            for target in rule.targets:
                if encoded is None:
                    encoded = orjson.dumps(event)   # once per event, whatever the number of targets taking it whole
                deliveries.append((target, payload_for(target, event, rule.row.name, encoded)))
        self.matched += hits
        return hits

    def _index(self, bus: str) -> tuple[dict[str, tuple[Rule, ...]], tuple[Rule, ...]]:
        """The bus's enabled pattern rules an event may match, by its `source`: the rules whose pattern names exact
        `source` strings are candidates only for those sources, the rest (`others`) for every event; so
        by_source[s] is s's own rules and then the others, and an event whose source is not a key takes `others`.
        Rebuilt after any change to the bus's rules."""
        cached = self._indexes.get(bus)
        if cached is not None:
            return cached
        own: dict[str, list[Rule]] = {}
        others: list[Rule] = []
        for rule in self.rules.get(bus, {}).values():
            if rule.pattern is None or rule.row.config["State"] != "ENABLED":
                continue
            sources = rule.pattern.source.get("source")
            if isinstance(sources, list) and sources and all(isinstance(x, str) for x in sources):
                for x in set(sources):
                    own.setdefault(x, []).append(rule)
            else:
                others.append(rule)
        index = ({x: (*rules, *others) for x, rules in own.items()}, tuple(others))
        self._indexes[bus] = index
        return index

    def test_event_pattern(self, body: dict) -> dict:
        try:
            pattern = compile_pattern(body.get("EventPattern") or "")
        except PatternError as exc:
            raise BridgeError("InvalidEventPatternException", f"Event pattern is not valid. Reason: {exc}") from None
        try:
            event = orjson.loads(body.get("Event") or "")
        except orjson.JSONDecodeError:
            raise validation("Parameter Event is not valid.") from None
        required = ("id", "account", "source", "time", "region", "detail-type")
        if not isinstance(event, dict) or any(k not in event for k in required):
            raise validation("Parameter Event is not valid.")
        return {"Result": pattern.matches(event)}

    # ------------------------------------------------------------------ scheduled rules

    def _fire(self, keys: list[tuple], now: float) -> None:
        """Scheduled rules due within the heap's lead: one commit advances their next due times and puts an
        occurrence per target in the outbox; each is sent at its due time, leaving the outbox with its target's
        write (so a stop or crash neither loses nor repeats one)."""
        updates: list[tuple[float | None, str, str]] = []
        batches: dict[float, list[PendingRow]] = {}
        for _, bus, name in keys:
            rule = self.rules.get(bus, {}).get(name)
            if rule is None or rule.schedule is None or rule.row.next_due is None:
                continue
            occurrence = rule.row.next_due
            rule.row.next_due = rule.schedule.next_after(max(occurrence, now), anchor=rule.row.config["Anchor"])
            updates.append((rule.row.next_due, bus, name))
            self.heap.set(("r", bus, name), rule.row.next_due)
            event = {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event",
                     "source": "aws.events", "account": self.account, "time": _iso(int(occurrence)),
                     "region": self.region, "resources": [rule.arn], "detail": {}}
            batch = batches.setdefault(occurrence, [])
            for target in rule.targets:
                batch.append(PendingRow(self.repo.pending_id(), "r", bus, name, occurrence, occurrence, target,
                                        payload_for(target, event, name)))
        if not updates:
            return
        self.repo.fire([], updates, [p for batch in batches.values() for p in batch])   # committed first
        for occurrence, batch in batches.items():
            if batch:
                token = next(self._tokens)
                self._prepared[token] = (self.heap.at(occurrence, partial(self._send_scheduled, token)), batch)

    def stop(self) -> None:
        """As ScheduleService.stop: occurrences not yet sent stay in the outbox; the next start sends them."""
        for handle, _ in self._prepared.values():
            if handle is not None:
                handle.cancel()
        self._prepared.clear()

    def _send_scheduled(self, token: int) -> None:
        _, batch = self._prepared.pop(token)
        self.deliverer.deliver_many([(p.target, p.payload) for p in batch], [p.id for p in batch])
