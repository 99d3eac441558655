"""One invocation on its way through the dispatcher, and its outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass


class Throttled(Exception):
    """Over a concurrency limit, or waited too long for an environment: AWS's 429 with this Reason."""

    def __init__(self, reason: str, message: str = "Rate Exceeded.", retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.retry_after_s = retry_after_s


@dataclass(slots=True)
class InvokeResult:
    body: bytes
    error_type: str | None = None     # set: the caller sees X-Amz-Function-Error: Unhandled
    log: str = ""                     # this invocation's log, START to REPORT
    executed_version: str = "$LATEST"
    # A function-URL response the runtime mapped (Invocation.http): (status, checked header block); body is the
    # response body then. None: body is the function's JSON result.
    http: tuple[int, bytes] | None = None
    # The runtime streamed the response and it went to Invocation.stream as it came: body holds nothing of it.
    streamed: bool = False


@dataclass(slots=True, eq=False)
class Invocation:
    id: str                                          # a UUID Lamina made, never a caller's (logs rely on it)
    payload: bytes
    invoked_arn: str
    sync: bool = True
    client_context: dict | None = None
    trace_id: str | None = None
    tenant_id: str | None = None                     # X-Amz-Tenant-Id (PER_TENANT functions)
    future: asyncio.Future | None = None
    # Called with the result (or the exception) instead of resolving a future: the HTTP hot path
    # answers from here without a task or a loop iteration (gateway/http/fast_http.py).
    on_done: Callable[[InvokeResult | BaseException], None] | None = None
    keep_log: bool = True                            # collect the log for X-Amz-Log-Result (sync only)
    http: bool = False                               # a Python runtime may answer with the mapped HTTP response
    # Where a response the runtime streams goes, piece by piece as it arrives (InvokeWithResponseStream,
    # RESPONSE_STREAM function URLs); None: the pieces are joined into the result's body.
    stream: Callable[[bytes], None] | None = None
    done: bool = False
    release: Callable[[str], None] | None = None     # the dispatcher's in-flight count: release(counted_as)
    counted_as: str = ""
    queued_at: float = 0.0                           # loop time it was queued at (a sync one's deadline runs from it)

    def _close(self) -> None:
        self.done = True
        if self.release is not None:
            release, self.release = self.release, None
            release(self.counted_as)

    def finish(self, result: InvokeResult) -> bool:
        """Resolve once; later outcomes (a crash after a timeout, say) are ignored."""
        if self.done:
            return False
        self.done = True   # _close(), inline: once per invocation
        release = self.release
        if release is not None:
            self.release = None
            release(self.counted_as)
        on_done = self.on_done
        if on_done is not None:
            on_done(result)
        elif self.future is not None and not self.future.done():
            self.future.set_result(result)
        return True

    def fail(self, exc: Exception) -> bool:
        """End without running (throttled while queued); the caller gets exc."""
        if self.done:
            return False
        self._close()
        if self.on_done is not None:
            self.on_done(exc)
        elif self.future is not None and not self.future.done():
            self.future.set_exception(exc)
        return True
