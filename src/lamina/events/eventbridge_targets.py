"""The targets EventBridge schedules and rules reach in Lamina (eventbridge/targets.py's Sender): functions by
asynchronous invoke (into the durable async queue, with the function's own retries, destinations and DLQ), Lamina
queues (a message), and event buses (the payload put on the bus as an event).

Many events for one function at once (a minute's schedules) are made ahead, within the timer heap's lead (stage), and
handed to the async queue in chunks of EVENTS_PER_COMMIT, each committed before the next is handed over: the first
handlers start once the first chunk is committed, not once all of them are."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from lamina.eventbridge.bus import EventBusService
from lamina.eventbridge.ids import new_id
from lamina.eventbridge.targets import Also, SendError
from lamina.functions.errors import AwsError
from lamina.functions.invoke import event_for
from lamina.functions.registry import FunctionService
from lamina.queues.errors import SqsError
from lamina.queues.queue import Queue
from lamina.queues.service import QueueService
from lamina.store.async_events import AsyncEvent
from lamina.store.eventbridge import TAKE_PENDING

EVENTS_PER_COMMIT = 500


@dataclass(slots=True)
class _StagedEvents:
    """A function's async events made ahead of their send (stage()), for the version `head` resolved then."""
    head: AsyncEvent
    events: list[AsyncEvent]


class LaminaTargets:
    def __init__(self, functions: FunctionService, queues: QueueService) -> None:
        self.functions = functions
        self.queues = queues
        self.account = functions.settings.account_id if functions is not None else None   # (unit tests: queues only)
        # bus ARN -> publish(event) for buses as targets; set by the server once the bus service exists.
        self.bus_publish: Callable[[str, dict], int] | None = None
        self.bus_exists: Callable[[str], bool] = lambda arn: False
        # Applies a store write on its own (Sender.settle); set by attach_buses to the main database's connection.
        self.apply_now: Callable[[Also], None] = lambda also: None

    def _queue(self, arn: str) -> Queue | None:
        """A queue of this account's (another account's is no target: Lamina does not evaluate queue policies for
        EventBridge)."""
        if self.account is not None and arn.split(":")[4:5] != [self.account]:
            return None
        return self.queues.queue_for_arn(arn)

    def exists(self, arn: str) -> bool:
        service = arn.split(":")[2] if arn.count(":") >= 5 else ""
        if service == "lambda":
            try:
                self.functions.target(arn)
            except AwsError:
                return False
            return True
        if service == "sqs":
            return self._queue(arn) is not None
        if service == "events":
            return self.bus_exists(arn)
        return False

    async def send(self, arn: str, payload: bytes, also: Also | None = None) -> None:
        service = arn.split(":")[2] if arn.count(":") >= 5 else ""
        if service == "lambda":
            try:
                event = event_for(self.functions, arn, payload, request_id=new_id())
            except AwsError as exc:
                raise SendError(f"{exc.code}: {exc.message}") from None
            await self._invoke([event], also)
        elif service == "sqs":
            q = self._queue(arn)
            if q is None:
                raise SendError(f"the queue {arn} does not exist")
            result = (await self.queues.send(q, self._entries(q, [payload]), also))[0]
            if isinstance(result, SqsError):
                raise SendError(f"{result.code}: {result.message}")
        elif service == "events" and self.bus_publish is not None and self.bus_exists(arn):
            try:
                event = orjson.loads(payload)
            except orjson.JSONDecodeError:
                raise SendError("the payload for an event bus is not a JSON event") from None
            self.bus_publish(arn, event if isinstance(event, dict) else {"detail": event})
            if also is not None:
                self.settle(also)
        else:
            raise SendError(f"Lamina has no target {arn}")

    def settle(self, also: Also) -> None:
        self.apply_now(also)

    def stage(self, arn: str, payloads: list[bytes]) -> object | None:
        """A queue's send prepared ahead (its messages' checks, ids and digests), per 1,000; a function's async
        events made (their ids; the function version resolved); None otherwise."""
        if arn.split(":")[2:3] == ["lambda"] and payloads:
            try:
                head = event_for(self.functions, arn, payloads[0], request_id=new_id())
            except AwsError:
                return None   # the send says why
            return _StagedEvents(head, self._events(head, payloads, 0.0))
        q = self._queue(arn) if arn.split(":")[2:3] == ["sqs"] else None
        if q is None or q.fifo:
            return None
        return [self.queues.stage(q, self._entries(q, payloads[start:start + 1000]))
                for start in range(0, len(payloads), 1000)]

    async def send_many(self, arn: str, payloads: list[bytes], pending: list[int] | None = None,
                        staged: object | None = None) -> list[SendError | None]:
        """A queue takes them all in one send (one commit per 1,000); a function's events are accepted in one commit;
        anything else one by one. The outbox ids in `pending` go with those commits. `staged`: what stage() made of
        these payloads."""
        service = arn.split(":")[2] if arn.count(":") >= 5 else ""
        if service == "sqs":
            q = self._queue(arn)
            if q is None:
                return [SendError(f"the queue {arn} does not exist")] * len(payloads)
            chunks = []
            for k, start in enumerate(range(0, len(payloads), 1000)):
                ids = pending[start:start + 1000] if pending else None
                ahead = staged[k] if isinstance(staged, list) else None
                if ahead is not None and ahead.queue is not q:
                    ahead = None   # the queue was deleted (and made again) since
                chunks.append(self.queues.send(q, self._entries(q, payloads[start:start + 1000]) if ahead is None
                                               else [], (TAKE_PENDING, ids) if ids else None, ahead))
            out: list[SendError | None] = []
            for results in await asyncio.gather(*chunks):   # concurrently: their commits are grouped
                out += [SendError(f"{r.code}: {r.message}") if isinstance(r, SqsError) else None for r in results]
            return out
        if service == "lambda":
            return await self._invoke_many(arn, payloads, pending, staged)
        outcomes = await asyncio.gather(*(self.send(arn, p, (TAKE_PENDING, [pending[k]]) if pending else None)
                                          for k, p in enumerate(payloads)), return_exceptions=True)
        return [r if isinstance(r, SendError) else (SendError(str(r)) if isinstance(r, BaseException) else None)
                for r in outcomes]

    @staticmethod
    def _entries(q: Queue, payloads: list[bytes]) -> list[dict]:
        entries: list[dict] = [{"MessageBody": p.decode("utf-8", "replace")} for p in payloads]
        if q.fifo:
            for entry in entries:
                entry["MessageGroupId"] = "lamina"
                entry["MessageDeduplicationId"] = str(uuid.uuid4())
        return entries

    @staticmethod
    def _events(head: AsyncEvent, payloads: list[bytes], now: float) -> list[AsyncEvent]:
        """An async event per payload for the function version `head` names (head itself the first), accepted at
        `now` (0.0: not yet known)."""
        head.created = head.due = now
        return [head] + [AsyncEvent(new_id(), head.function, head.version, head.qualifier, head.invoked_arn, payload,
                                    created=now, due=now) for payload in payloads[1:]]

    async def _invoke_many(self, arn: str, payloads: list[bytes], pending: list[int] | None,
                           staged: object | None = None) -> list[SendError | None]:
        """Events for one function, accepted EVENTS_PER_COMMIT at a time, each chunk in one commit with its outbox
        ids, the next handed over once it is committed. The ARN is resolved once: the same function version takes
        them all, or none can be made. `staged`: the events stage() made, used if the ARN still names that version."""
        try:
            head = event_for(self.functions, arn, payloads[0], request_id=new_id())
        except AwsError as exc:
            return [SendError(f"{exc.code}: {exc.message}")] * len(payloads)
        if (isinstance(staged, _StagedEvents) and len(staged.events) == len(payloads)
                and (staged.head.function, staged.head.version, staged.head.qualifier, staged.head.invoked_arn)
                == (head.function, head.version, head.qualifier, head.invoked_arn)):
            events = staged.events
        else:
            events = self._events(head, payloads, head.created)
        out: list[SendError | None] = []
        for start in range(0, len(events), EVENTS_PER_COMMIT):
            chunk = events[start:start + EVENTS_PER_COMMIT]
            if start or not chunk[0].created:   # a later chunk, or events made ahead: accepted now, their age runs
                now = time.time()               # from here
                for event in chunk:
                    event.created = event.due = now
            ids = pending[start:start + EVENTS_PER_COMMIT] if pending else None
            try:
                await self._invoke(chunk, (TAKE_PENDING, ids) if ids else None)
            except SendError as exc:
                out += [exc] * len(chunk)
                continue
            out += [None] * len(chunk)
        return out

    async def _invoke(self, events: list[AsyncEvent], also: Also | None) -> None:
        sink = self.functions.event_sink
        if sink is None:
            raise SendError("this server has no asynchronous invocation queue")
        accepted: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def done(error: BaseException | None) -> None:
            if accepted.done():
                return
            if error is None:
                accepted.set_result(None)
            else:
                accepted.set_exception(SendError(str(error)))
        try:
            sink.accept_many(events, done, also)
        except AwsError as exc:
            raise SendError(f"{exc.code}: {exc.message}") from None
        await accepted


def attach_buses(targets: LaminaTargets, buses: EventBusService) -> None:
    """Buses as targets: a rule's target may be another bus of this server (by its ARN)."""
    def name(arn: str) -> str:
        return arn.rpartition(":event-bus/")[2]
    targets.bus_exists = lambda arn: ":event-bus/" in arn and name(arn) in buses.buses
    targets.bus_publish = lambda arn, event: buses.publish(name(arn), event)
    # A bus has no durable write of its own: an occurrence put on it leaves the outbox at once (the main database).
    def apply_now(also: Also) -> None:
        also[0].apply(buses.repo.db.conn, [also[1]])
    targets.apply_now = apply_now
