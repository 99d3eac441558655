"""Where the function core hands asynchronous (Event) invocations: the sink the events/ front end provides.

The core does not import events/ (it sits above the core): the server composes them, setting
FunctionService.event_sink to the durable queue (events/delivery.py). Invoke's Event path, InvokeAsync
and the UDP gateway's `function-async` destination all accept through it, and answer only once the
event is committed.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Protocol

from lamina.functions.errors import AwsError
from lamina.functions.registry import FunctionService, is_per_tenant
from lamina.store.async_events import AsyncEvent, QueueStats

__all__ = ["AsyncEvent", "EventSink", "QueueStats", "event_for", "no_sink"]


class EventSink(Protocol):
    def accept(self, event: AsyncEvent, done: Callable[[BaseException | None], None]) -> None:
        """Queue an accepted event. Called on the event loop; done(None) is called on the event loop once the event
        is durable (its 202 may go out then), done(exc) if it could not be queued. Raises AwsError when the queue
        takes nothing now (the server is stopping)."""
        ...

    def stats(self) -> dict:
        """Queue depth, the oldest event's age, redelivered events and the like (health)."""
        ...

    def pending(self, function: str, limit: int = 100) -> list[dict]:
        """One function's queued events, oldest first: id, age, attempts, next attempt, state."""
        ...


def no_sink() -> AwsError:
    """The error for an Event invoke on a server composed without the async queue."""
    return AwsError("ServiceException", "This Lamina server has no asynchronous invocation queue.", 500)


def event_for(functions: FunctionService, raw_name: str, payload: bytes, tenant_id: str | None = None,
              request_id: str | None = None) -> AsyncEvent:
    """An Event invocation of a function named in any accepted form (name, name:qualifier, ARN), for a caller
    inside Lamina (a destination, the UDP gateway); raises AwsError when it cannot be invoked that way."""
    fn, qualifier = functions.target(raw_name)
    target = functions.pick(fn, qualifier)
    if is_per_tenant(target.config) and tenant_id is None:
        raise AwsError("InvalidParameterValueException", "The invoked function is enabled with tenancy "
                       "configuration. Add a valid tenant ID in your request and try again.")
    arn = fn.config["FunctionArn"] + (f":{qualifier}" if qualifier else "")
    now = time.time()
    return AsyncEvent(request_id or str(uuid.uuid4()), fn.name, target.version, qualifier, arn, payload,
                      tenant_id=tenant_id, created=now, due=now)
