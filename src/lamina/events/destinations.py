"""Where an asynchronous invocation's result goes: on-success / on-failure destinations and dead-letter queues.

A destination kind is a `Destination` registered under its ARN's service ('lambda' now; Lamina's queues
('sqs') and event bus ('events') register theirs when they land, together with the check that makes
PutFunctionEventInvokeConfig accept their ARNs: EventInvokeConfigService.destination_kinds). A dead-letter
queue kind is a `DeadLetterTarget` (SQS and SNS on AWS: none in Lamina yet, so CreateFunction refuses a
DeadLetterConfig until one registers; FunctionService.dead_letter_targets).

Delivery is at least once: the event stays queued until its destination has the record durably (a function
destination: the record is an accepted Event invoke of that function), so a crash in between sends it again.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from lamina.events.records import Outcome
from lamina.functions.async_queue import EventSink
from lamina.functions.event_invoke_config import arn_service
from lamina.functions.invoke import event_for
from lamina.functions.registry import FunctionService


class DeliveryError(Exception):
    """A destination could not take a record (it is gone, or refused it)."""


class Destination(Protocol):
    async def deliver(self, arn: str, outcome: Outcome) -> None:
        """Hand the record to the destination `arn`; returns once it is durably there, raises DeliveryError."""
        ...


class DeadLetterTarget(Protocol):
    async def send(self, arn: str, body: bytes, attributes: dict[str, dict[str, str]]) -> None:
        """Send the original event with AWS's message attributes; raises DeliveryError."""
        ...


class FunctionDestination:
    """Another function: invoked asynchronously with the record as its event (through the same durable queue)."""

    def __init__(self, functions: FunctionService, sink: EventSink) -> None:
        self.functions = functions
        self.sink = sink

    async def deliver(self, arn: str, outcome: Outcome) -> None:
        try:
            event = event_for(self.functions, arn, outcome.record)
        except Exception as exc:
            raise DeliveryError(f"the destination function cannot be invoked: {exc}") from None
        future: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()
        self.sink.accept(event, future.set_result)
        error = await future
        if error is not None:
            raise DeliveryError(f"the destination function's event was not queued: {error}")


class DestinationRouter:
    """The destination and dead-letter kinds this server has, by ARN service."""

    def __init__(self) -> None:
        self.destinations: dict[str, Destination] = {}
        self.dead_letters: dict[str, DeadLetterTarget] = {}

    async def deliver(self, arn: str, outcome: Outcome) -> None:
        destination = self.destinations.get(arn_service(arn))
        if destination is None:
            raise DeliveryError(f"Lamina has no destination of this kind: {arn}")
        await destination.deliver(arn, outcome)

    async def dead_letter(self, arn: str, body: bytes, attributes: dict[str, dict[str, str]]) -> None:
        target = self.dead_letters.get(arn_service(arn))
        if target is None:
            raise DeliveryError(f"Lamina has no dead-letter queue of this kind: {arn}")
        await target.send(arn, body, attributes)
