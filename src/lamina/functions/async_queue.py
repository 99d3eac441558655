"""Where the function core hands asynchronous (Event) invocations: the sink the events/ front end provides.

The core does not import events/ (it sits above the core): the server composes them, setting
FunctionService.event_sink to the durable queue (events/delivery.py). Invoke's Event path, InvokeAsync
and the UDP gateway's `function-async` destination all accept through it, and answer only once the
event is committed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from lamina.functions.errors import AwsError
from lamina.store.async_events import AsyncEvent, QueueStats
from lamina.store.group_commit import Kind

__all__ = ["AsyncEvent", "EventSink", "QueueStats", "no_sink"]


class EventSink(Protocol):
    def accept(self, event: AsyncEvent, done: Callable[[BaseException | None], None]) -> None:
        """Queue an accepted event. Called on the event loop; done(None) is called on the event loop once the event
        is durable (its 202 may go out then), done(exc) if it could not be queued. Raises AwsError when the queue
        takes nothing now (the server is stopping)."""
        ...

    def accept_many(self, events: list[AsyncEvent], done: Callable[[BaseException | None], None],
                    also: tuple[Kind, Any] | None = None) -> None:
        """accept() for many events in one commit, with another store's write (`also`) in the same transaction."""
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

