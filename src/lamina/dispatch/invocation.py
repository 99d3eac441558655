"""One invocation on its way through the dispatcher, and its outcome."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field


@dataclass(slots=True)
class InvokeResult:
    body: bytes
    error_type: str | None = None     # set: the caller sees X-Amz-Function-Error: Unhandled
    log: str = ""                     # this invocation's log, START to REPORT
    executed_version: str = "$LATEST"


@dataclass(slots=True, eq=False)
class Invocation:
    id: str
    payload: bytes
    invoked_arn: str
    sync: bool = True
    client_context: dict | None = None
    trace_id: str | None = None
    future: asyncio.Future | None = None
    enqueued_at: float = field(default_factory=time.monotonic)
    done: bool = False

    def finish(self, result: InvokeResult) -> bool:
        """Resolve once; later outcomes (a crash after a timeout, say) are ignored."""
        if self.done:
            return False
        self.done = True
        if self.future is not None and not self.future.done():
            self.future.set_result(result)
        return True
