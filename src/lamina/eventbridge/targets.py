"""What a fired schedule or a matched event sends to a target, and how: the payload (the event itself, a constant
Input, the part of the event an InputPath selects, or an InputTransformer's template) and the delivery (the
Sender the server composes; on failure, retries by the target's RetryPolicy with exponential backoff, then its
DeadLetterConfig queue).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable
from typing import Any, Protocol

import orjson

from lamina.eventbridge.errors import validation
from lamina.eventbridge.timers import Clock
from lamina.store.eventbridge import TAKE_PENDING
from lamina.store.group_commit import Kind

log = logging.getLogger("lamina.eventbridge")


class SendError(Exception):
    """The target could not take the payload (it does not exist, or refused it)."""


# Another store's write made in the same transaction as a target's own (store/group_commit.py's Kind and its
# argument): a fired occurrence leaves the EventBridge outbox (store/eventbridge.py's TAKE_PENDING) exactly when its
# target has it.
Also = tuple[Kind, Any]


# deliver_many's work done ahead: per target ARN, (arn, targets, payloads, outbox ids, the target's staged send)
Prepared = list[tuple[str, list[dict], list[bytes], list[int], object | None]]


class Sender(Protocol):
    def send(self, arn: str, payload: bytes, also: Also | None = None) -> Awaitable[None]:
        """Hand `payload` to the target `arn` (a function: accepted into its durable async queue; a queue: sent;
        a bus: put), with `also` in the same commit (applied right after, for a bus). Raises SendError when it
        cannot (and then `also` is not applied)."""
        ...

    def stage(self, arn: str, payloads: list[bytes]) -> object | None:
        """Whatever of a later send_many of these payloads the target can do ahead of it, or None."""
        ...

    def send_many(self, arn: str, payloads: list[bytes], pending: list[int] | None = None,
                  staged: object | None = None) -> Awaitable[list[SendError | None]]:
        """Hand many payloads to one target at once (one commit where the target allows); per payload, None or
        why it was not taken. `pending`: the outbox ids of the payloads, taken in the same commit (those of payloads
        refused before any commit are left). `staged`: what stage() made of them."""
        ...

    def settle(self, also: Also) -> None:
        """Apply `also` on its own: an occurrence given up (retries exhausted) is done."""
        ...

    def exists(self, arn: str) -> bool:
        """Whether `arn` names a target Lamina has (checked when a target is set)."""
        ...


_JSON_PATH = re.compile(r"\$(\.[A-Za-z0-9_\-]+|\[\d+\])*")
_PLACEHOLDER = re.compile(r"<([A-Za-z0-9_.\-]+)>")


def check_path(path: str, what: str) -> None:
    if not _JSON_PATH.fullmatch(path):
        raise validation(f"{what} is not valid JSONPath: {path}")


def select(event: Any, path: str) -> Any:
    """A simple JSONPath ($.a.b[0]) into the event; None where it leads nowhere."""
    value = event
    for step in re.findall(r"\.([A-Za-z0-9_\-]+)|\[(\d+)\]", path[1:]):
        key, index = step
        if key and isinstance(value, dict):
            value = value.get(key)
        elif index and isinstance(value, list) and int(index) < len(value):
            value = value[int(index)]
        else:
            return None
    return value


def check_transformer(transformer: dict) -> None:
    paths = transformer.get("InputPathsMap") or {}
    if not isinstance(paths, dict) or len(paths) > 100:
        raise validation("InputPathsMap has at most 100 entries.")
    for name, path in paths.items():
        if name.startswith("aws."):
            raise validation(f"Input path names must not start with 'aws.': {name}")
        check_path(path, f"InputPathsMap[{name}]")
    template = transformer.get("InputTemplate")
    if not isinstance(template, str) or not template:
        raise validation("InputTemplate must be specified.")


def payload_for(target: dict, event: dict, rule: str = "", encoded: bytes | None = None) -> bytes:
    """The bytes a rule's target receives for an event (`encoded`: the event's JSON, if already made)."""
    if target.get("Input") is not None:
        return str(target["Input"]).encode()
    if target.get("InputPath"):
        return orjson.dumps(select(event, target["InputPath"]))
    transformer = target.get("InputTransformer")
    if transformer:
        values = {name: select(event, path) for name, path in (transformer.get("InputPathsMap") or {}).items()}
        values["aws.events.event.json"] = event
        values["aws.events.rule-name"] = rule
        template = transformer["InputTemplate"]
        # A placeholder inside a JSON string takes the value's text; elsewhere its JSON.
        def fill(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in values:
                return m.group(0)
            value = values[name]
            inside_string = template[:m.start()].count('"') % 2 == 1
            if inside_string:
                return value if isinstance(value, str) else orjson.dumps(value).decode()
            return orjson.dumps(value).decode()
        return _PLACEHOLDER.sub(fill, template).encode()
    return encoded if encoded is not None else orjson.dumps(event)


class Deliverer:
    """Sends payloads to targets with the target's RetryPolicy and DeadLetterConfig. Counts outcomes."""

    def __init__(self, sender: Sender, clock: Clock) -> None:
        self.sender = sender
        self.clock = clock
        self.sent = 0
        self.failed = 0
        self.dead_lettered = 0
        self._tasks: set[asyncio.Task] = set()

    def deliver(self, target: dict, payload: bytes, pending: int | None = None) -> None:
        task = asyncio.get_running_loop().create_task(self._deliver(target, payload, pending))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def prepare(self, items: list[tuple[dict, bytes]], pending: list[int] | None = None, stage: bool = False
                ) -> Prepared:
        """deliver_many's grouping by target ARN, done ahead; with `stage`, also what each target can do ahead of
        its send (a queue: its messages' checks, ids and digests), so a minute's schedules cost little when due."""
        by_arn: dict[str, tuple[list[dict], list[bytes], list[int]]] = {}
        for k, (target, payload) in enumerate(items):
            group = by_arn.get(target["Arn"])
            if group is None:
                group = by_arn[target["Arn"]] = ([], [], [])
            group[0].append(target)
            group[1].append(payload)
            if pending is not None:
                group[2].append(pending[k])
        return [(arn, targets, payloads, ids, self.sender.stage(arn, payloads) if stage else None)
                for arn, (targets, payloads, ids) in by_arn.items()]

    def deliver_many(self, items: list[tuple[dict, bytes]], pending: list[int] | None = None
                     ) -> list[asyncio.Task]:
        """Many deliveries at once (a minute's worth of schedules, a PutEvents request): one send per target ARN,
        payloads it did not take go the single-delivery way (retries, then the DLQ). `pending`: the items' outbox
        ids, if they have them (fired occurrences do), taken with the target's commit. Returns the sends' tasks
        (done once each target has taken its payloads or the refused ones are handed to retries)."""
        return self.deliver_prepared(self.prepare(items, pending))

    def deliver_prepared(self, prepared: Prepared) -> list[asyncio.Task]:
        loop = asyncio.get_running_loop()
        tasks = []
        for group in prepared:
            task = loop.create_task(self._deliver_group(*group))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            tasks.append(task)
        return tasks

    async def _deliver_group(self, arn: str, targets: list[dict], payloads: list[bytes], ids: list[int],
                             staged: object | None) -> None:
        results = await self.sender.send_many(arn, payloads, ids or None, staged)
        for k, error in enumerate(results):
            if error is None:
                self.sent += 1
            else:
                self.deliver(targets[k], payloads[k], ids[k] if ids else None)

    async def _deliver(self, target: dict, payload: bytes, pending: int | None = None) -> None:
        also: Also | None = (TAKE_PENDING, [pending]) if pending is not None else None
        policy = target.get("RetryPolicy") or {}
        attempts = 1 + int(policy.get("MaximumRetryAttempts", 185))
        max_age = float(policy.get("MaximumEventAgeInSeconds", 86400))
        started = self.clock.now()
        delay = 1.0
        error = ""
        for attempt in range(attempts):
            try:
                await self.sender.send(target["Arn"], payload, also)
                self.sent += 1
                return
            except SendError as exc:
                error = str(exc)
            if attempt + 1 >= attempts or self.clock.now() - started + delay > max_age:
                break
            await asyncio.sleep(delay * self.clock.scale)
            delay = min(delay * 2, 300.0)
        self.failed += 1
        log.warning("eventbridge: target %s failed: %s", target.get("Arn"), error)
        dlq = (target.get("DeadLetterConfig") or {}).get("Arn")
        if dlq:
            try:
                await self.sender.send(dlq, payload, also)
                self.dead_lettered += 1
                return
            except SendError as exc:
                log.warning("eventbridge: dead-letter queue %s failed: %s", dlq, exc)
        if also is not None:
            self.sender.settle(also)

    async def close(self, timeout: float = 2.0) -> None:
        """Let sends under way finish (a function's is a commit into its async queue); deliveries still waiting
        to retry then are dropped."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
        for task in list(self._tasks):
            task.cancel()
