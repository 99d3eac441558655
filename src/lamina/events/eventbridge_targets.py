"""The targets EventBridge schedules and rules reach in Lamina (eventbridge/targets.py's Sender): functions by
asynchronous invoke (into the durable async queue, with the function's own retries, destinations and DLQ), Lamina
queues (a message), and event buses (the payload put on the bus as an event)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import orjson

from lamina.eventbridge.bus import EventBusService
from lamina.eventbridge.targets import SendError
from lamina.functions.errors import AwsError
from lamina.functions.invoke import event_for
from lamina.functions.registry import FunctionService
from lamina.queues.errors import SqsError
from lamina.queues.service import QueueService


class LaminaTargets:
    def __init__(self, functions: FunctionService, queues: QueueService) -> None:
        self.functions = functions
        self.queues = queues
        # bus ARN -> publish(event) for buses as targets; set by the server once the bus service exists.
        self.bus_publish: Callable[[str, dict], int] | None = None
        self.bus_exists: Callable[[str], bool] = lambda arn: False

    def exists(self, arn: str) -> bool:
        service = arn.split(":")[2] if arn.count(":") >= 5 else ""
        if service == "lambda":
            try:
                self.functions.target(arn)
            except AwsError:
                return False
            return True
        if service == "sqs":
            return self.queues.queue_for_arn(arn) is not None
        if service == "events":
            return self.bus_exists(arn)
        return False

    async def send(self, arn: str, payload: bytes) -> None:
        service = arn.split(":")[2] if arn.count(":") >= 5 else ""
        if service == "lambda":
            await self._invoke(arn, payload)
        elif service == "sqs":
            try:
                await self.queues.send_to(arn, payload.decode("utf-8", "replace"))
            except SqsError as exc:
                raise SendError(f"{exc.code}: {exc.message}") from None
        elif service == "events" and self.bus_publish is not None and self.bus_exists(arn):
            try:
                event = orjson.loads(payload)
            except orjson.JSONDecodeError:
                raise SendError("the payload for an event bus is not a JSON event") from None
            self.bus_publish(arn, event if isinstance(event, dict) else {"detail": event})
        else:
            raise SendError(f"Lamina has no target {arn}")

    async def send_many(self, arn: str, payloads: list[bytes]) -> list[SendError | None]:
        """A queue takes them all in one send (one commit); a function's events are accepted together (the async
        queue commits them as a group); anything else one by one."""
        service = arn.split(":")[2] if arn.count(":") >= 5 else ""
        if service == "sqs":
            q = self.queues.queue_for_arn(arn)
            if q is None:
                return [SendError(f"the queue {arn} does not exist")] * len(payloads)
            chunks = []
            for start in range(0, len(payloads), 1000):
                entries = [{"MessageBody": p.decode("utf-8", "replace")} for p in payloads[start:start + 1000]]
                if q.fifo:
                    for entry in entries:
                        entry["MessageGroupId"] = "lamina"
                        entry["MessageDeduplicationId"] = str(uuid.uuid4())
                chunks.append(self.queues.send(q, entries))
            out: list[SendError | None] = []
            for results in await asyncio.gather(*chunks):   # concurrently: their commits are grouped
                out += [SendError(f"{r.code}: {r.message}") if isinstance(r, SqsError) else None for r in results]
            return out
        outcomes = await asyncio.gather(*(self.send(arn, p) for p in payloads), return_exceptions=True)
        return [r if isinstance(r, SendError) else (SendError(str(r)) if isinstance(r, BaseException) else None)
                for r in outcomes]

    async def _invoke(self, arn: str, payload: bytes) -> None:
        sink = self.functions.event_sink
        if sink is None:
            raise SendError("this server has no asynchronous invocation queue")
        try:
            event = event_for(self.functions, arn, payload)
        except AwsError as exc:
            raise SendError(f"{exc.code}: {exc.message}") from None
        accepted: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def done(error: BaseException | None) -> None:
            if accepted.done():
                return
            if error is None:
                accepted.set_result(None)
            else:
                accepted.set_exception(SendError(str(error)))
        try:
            sink.accept(event, done)
        except AwsError as exc:
            raise SendError(f"{exc.code}: {exc.message}") from None
        await accepted


def attach_buses(targets: LaminaTargets, buses: EventBusService) -> None:
    """Buses as targets: a rule's target may be another bus of this server (by its ARN)."""
    def name(arn: str) -> str:
        return arn.rpartition(":event-bus/")[2]
    targets.bus_exists = lambda arn: ":event-bus/" in arn and name(arn) in buses.buses
    targets.bus_publish = lambda arn, event: buses.publish(name(arn), event)
