"""Lamina's queues as async-invocation destinations and dead-letter queues (spec/events.md §1.4–1.5).

- On-success / on-failure destination: a standard queue receives AWS's invocation record as the message body.
- DeadLetterConfig: a standard queue receives the original event as the body, with AWS's message attributes
  RequestID (String), ErrorCode (Number) and ErrorMessage (String, first 1 KB).
A FIFO queue is refused at delivery, as on AWS (the record or event is dropped and counted as a destination
failure). `attach` registers both kinds, and the checks that let PutFunctionEventInvokeConfig and
Create/UpdateFunctionConfiguration accept a queue's ARN.
"""

from __future__ import annotations

from lamina.events.delivery import AsyncInvoker
from lamina.events.destinations import DeliveryError
from lamina.events.records import Outcome
from lamina.functions.event_invoke_config import EventInvokeConfigService
from lamina.functions.registry import FunctionService
from lamina.queues.errors import SqsError
from lamina.queues.service import QueueService


class QueueTarget:
    """A queue as a Destination (deliver) and as a DeadLetterTarget (send)."""

    def __init__(self, queues: QueueService) -> None:
        self.queues = queues

    async def _send(self, arn: str, body: str, attributes: dict | None) -> None:
        q = self.queues.queue_for_arn(arn)
        if q is None:
            raise DeliveryError(f"the queue {arn} does not exist")
        if q.fifo:
            raise DeliveryError(f"the queue {arn} is a FIFO queue: destinations and dead-letter queues must be "
                                "standard queues")
        try:
            await self.queues.send_to(arn, body, attributes)
        except SqsError as exc:
            raise DeliveryError(f"{exc.code}: {exc.message}") from None

    async def deliver(self, arn: str, outcome: Outcome) -> None:
        await self._send(arn, outcome.record.decode(), None)

    async def send(self, arn: str, body: bytes, attributes: dict[str, dict[str, str]]) -> None:
        await self._send(arn, body.decode("utf-8", "replace"), attributes)


def attach(queues: QueueService, invoker: AsyncInvoker, configs: EventInvokeConfigService,
           functions: FunctionService, account: str | None = None) -> None:
    """Queues as the destinations and dead-letter queues of `account`'s functions: its own queues only (Lamina
    does not evaluate queue policies for another account's destinations)."""
    target = QueueTarget(queues)
    invoker.router.destinations["sqs"] = target
    invoker.router.dead_letters["sqs"] = target

    def exists(arn: str) -> bool:
        if account is not None and arn.split(":")[4:5] != [account]:
            return False
        return queues.queue_for_arn(arn) is not None

    configs.destination_kinds["sqs"] = exists
    functions.dead_letter_targets["sqs"] = exists
