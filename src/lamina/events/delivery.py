"""Asynchronous invocation: accept durably, then deliver with AWS's admission, retries and failure handling.

`AsyncInvoker` is the function core's EventSink (functions/async_queue.py). An accepted event is appended to
the durable queue (store/async_events.py) and its caller told once it is committed — that is when its 202
goes out. If fewer than `max_in_flight` events are being handled, the event is appended already claimed
by this server and its first attempt starts right after the commit (no second trip to the disk); otherwise
it waits in the queue and is claimed as room frees up, oldest due first.

An attempt goes through the dispatcher like a synchronous invoke, admission included. Then (events/retry.py):
- success: to the on-success destination, if any; done.
- function error or timeout: a retry after ~1 min, then ~2 min, up to MaximumRetryAttempts; else failure
  handling (RetriesExhausted, or EventAgeExceeded when the next wait would outlive the event).
- throttled (a reservation or the account limit, or no free environment in time) or a system error: back to
  the queue with a backoff from 1 s to 5 min; not an attempt.
- reserved concurrency 0: failure handling at once (ZeroReservedConcurrency, approximateInvokeCount 0).
Failure handling sends AWS's record to the on-failure destination and the event to the version's
dead-letter queue, then the event is done. The event leaves the queue only once all that is durable
elsewhere and its attempt's log lines are written: at least once, never lost, and the function's log
holds every run that finished before a crash. An event that was running when the server died runs again after
the restart; how many did is counted (`redelivered`, in health and `lamina events ls`).

Every wait is multiplied by `async_wait_scale` (1.0 = AWS's; tests use 0.01), the maximum event age too.
Each retry, throttle and final outcome is a line in the function's own log (stream `lamina/async`) beside
the START/END/REPORT lines of the attempts themselves.

Stopping (SIGTERM): no attempt starts from then on (an event claimed meanwhile goes back to the queue);
running attempts finish within the drain and their outcome is recorded; whatever has not finished then
stays queued, and runs after the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable
from functools import partial

import orjson

from lamina.config import Settings
from lamina.dispatch.invocation import Invocation, InvokeResult, Throttled
from lamina.events import retry
from lamina.events.destinations import DeliveryError, DestinationRouter, FunctionDestination
from lamina.events.records import dead_letter_attributes, record
from lamina.functions.errors import AwsError
from lamina.functions.event_invoke_config import EventInvokeConfigService, EventInvokeSettings
from lamina.functions.invoke import ensure_invokable
from lamina.functions.registry import LATEST, Function, FunctionService
from lamina.store.async_events import AsyncEvent, EventQueueStore

log = logging.getLogger("lamina.events")

LOG_STREAM = "lamina/async"
# Attempts started per loop turn (_start_soon, _next_turn): a turn also reads every request that arrived
# meanwhile, so under a burst of Event invokes the accepts (what a caller waits for) keep most of the core and the
# queue is drained as the burst lets up. Idle, the loop turns at once: the first event of a turn starts in it.
START_PER_TURN = 8
# A burst of accepts that saturates the loop: when the loop's thread was running or waiting for a CPU (the kernel's
# schedstat: its time on a CPU and its run-queue delay, so the writer thread's share of a shared core counts) for
# SATURATED of the last LOAD_WINDOW_S or more, and accepts came in that window, accepting comes first: attempts then
# start only with the commits of accepts, RUN_SHARE of their number (oldest first), and the rest of the burst's events
# wait (claimed, or in the queue) until it lets up. Committed, they are durable: the queue holds them. Measured with
# bench/async.py: ~20% less of the server's CPU per accepted event during such a burst, so ~25% more accepts per
# second; in all it costs more (~+15% per event, the drain included: a backlogged event is claimed back from the
# queue, and the table grows during the burst), so RUN_SHARE = 1 is the setting for the most events run per second
# rather than accepted. A loop that is not saturated (one client, a trickle, the backlog's drain itself) starts
# events as above, an event in the callback of its commit.
LOAD_WINDOW_S = 0.02
SATURATED = 0.8
RUN_SHARE = 0.5
# Completed events leave the queue together, at most this long after the first of them finished: one write of the
# functions' logs and one removal for all of them (a removal is lazy anyway: it rides along with the next commit
# someone waits for, or goes after the writer's LAZY_S). Until then an event would run again after a crash.
COMPLETE_EVERY_S = 0.01
# Queued events beyond max_in_flight are claimed (one SELECT and one UPDATE) up to this many at a time, and, while
# events claimed here wait to start, only once there is room for this many (or a quarter of max_in_flight).
CLAIM_BATCH = 256


class AsyncInvoker:
    def __init__(self, functions: FunctionService, configs: EventInvokeConfigService, store: EventQueueStore,
                 settings: Settings) -> None:
        self.functions = functions
        self.dispatcher = functions.dispatcher
        self.configs = configs
        self.store = store
        self.scale = settings.async_wait_scale
        self.max_in_flight = settings.async_max_in_flight
        self.router = DestinationRouter()
        self.router.destinations["lambda"] = FunctionDestination(functions, self)
        self.claimed: dict[str, AsyncEvent] = {}   # taken by this server: running, or on their way to it
        self.running = 0                           # attempts in the dispatcher
        self.stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._next_due: float | None = None        # the earliest due time of unclaimed events (epoch), if any
        self._noted: float | None = None           # due times noted while a claim was under way
        self._claiming = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._tasks: set[asyncio.Task] = set()
        self._ready: deque[AsyncEvent] = deque()  # claimed, waiting for a loop turn's budget to start
        self._started = 0                          # attempts started in this loop turn
        self._turn_scheduled = False
        self._saturated = False                    # see SATURATED
        self._window_start = 0.0
        self._window_busy = 0.0
        self._window_accepts = 0
        self._schedstat: int | None = None         # /proc/thread-self/schedstat of the loop's thread (_busy_s)
        self.saturated_windows = 0                 # windows in which accepting came first (health)
        self._completing: list[str] = []           # done this loop turn: removed once their logs are written
        self._dirty_logs: set[str] = set()
        self._completion: asyncio.TimerHandle | None = None   # _complete_now, due
        # Counters since start (health); redelivered is kept by the store across restarts.
        self.accepted = 0
        self.succeeded = 0
        self.failed = 0
        self.retries = 0
        self.throttled = 0
        self.destination_failures = 0
        self.redelivered_at_start = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Recover what a stop left running, then deliver whatever is due."""
        self._loop = asyncio.get_running_loop()
        with contextlib.suppress(OSError):
            self._schedstat = os.open("/proc/thread-self/schedstat", os.O_RDONLY | os.O_CLOEXEC)
        self.redelivered_at_start = self.store.recover()
        if self.redelivered_at_start:
            log.warning("async: %d event(s) were running when the server stopped; they run again (each may run "
                        "twice)", self.redelivered_at_start)
        self.store.open(self._loop)
        self._note_due(0.0)   # whatever is queued: look now
        self._pump()

    def stop(self) -> None:
        """SIGTERM: no new attempts; running ones finish (within the dispatcher's drain) and are recorded."""
        self.stopping = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def close(self, timeout: float = 10.0) -> None:
        """After the dispatcher's drain: wait for deliveries to destinations, then make everything durable."""
        self.stopping = True
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)
        if self._completion is not None:
            self._completion.cancel()
            self._complete_now()
        self._ready.clear()
        for event in list(self.claimed.values()):
            # Still claimed (its attempt did not end in the drain): leave it queued for the next start.
            self._release(event)
        loop = asyncio.get_running_loop()
        if not await loop.run_in_executor(None, self.store.flush, timeout):
            log.error("async: the event queue did not finish its writes in %.0f s", timeout)
        self.store.close()
        if self._schedstat is not None:
            os.close(self._schedstat)
            self._schedstat = None

    # ------------------------------------------------------------------ EventSink

    def accept(self, event: AsyncEvent, done) -> None:
        if not event.created or not event.due:
            now = time.time()
            event.created = event.created or now
            event.due = event.due or now
        if not self.stopping and len(self.claimed) < self.max_in_flight:
            event.claimed = True
            self.claimed[event.id] = event
        else:
            event.claimed = False
            self._note_due(event.due)
        self.store.add(event, done, self._appended)

    def _appended(self, pairs: list[tuple[AsyncEvent, Callable[[BaseException | None], None]]],
                  error: BaseException | None) -> None:
        """The events accept() handed in are committed (all those of one transaction at once): their callers are
        told (the 202s go out), then their attempts start (_start_soon)."""
        if error is not None:
            for event, done in pairs:
                self.claimed.pop(event.id, None)
                _call(done, AwsError("ServiceException", f"The event could not be queued: {error}", 500))
            return
        self.accepted += len(pairs)
        for _, done in pairs:
            try:
                done(None)
            except Exception:
                log.exception("async: an accept's callback failed")
        self._window_accepts += len(pairs)
        saturated = self._load_check()
        unclaimed = started = False
        ready = self._ready
        for event, _ in pairs:   # _start_soon(event) for each claimed one, inline
            if event.claimed:
                started = True
                if ready or self._started >= START_PER_TURN or self._saturated:
                    ready.append(event)
                else:
                    self._started += 1
                    self._attempt(event)
            else:
                unclaimed = True
        if started and not self._turn_scheduled:
            self._turn_scheduled = True
            asyncio.get_running_loop().call_soon(self._next_turn)
        if saturated and self._ready:
            # Accepting comes first: this commit's share of attempts, oldest first (RUN_SHARE).
            for _ in range(min(len(self._ready), math.ceil(len(pairs) * RUN_SHARE))):
                self._attempt(self._ready.popleft())
        if unclaimed:
            self._pump()

    def accept_many(self, events: list[AsyncEvent], done, also=None) -> None:
        """accept() for many events in one queue operation (EventBridge's fired schedules and matched rules), with
        `also` (another store's write) in the same transaction; done(None) once they are all committed."""
        now = time.time()
        for event in events:
            event.created = event.created or now
            event.due = event.due or now
            event.claimed = not self.stopping and len(self.claimed) < self.max_in_flight
            if event.claimed:
                self.claimed[event.id] = event
            else:
                self._note_due(event.due)
        self.store.append_many(events, partial(self._appended_many, events, done), also)

    def _appended_many(self, events: list[AsyncEvent], done, error: BaseException | None) -> None:
        if error is not None:
            for event in events:
                self.claimed.pop(event.id, None)
            done(AwsError("ServiceException", f"The events could not be queued: {error}", 500))
            return
        self.accepted += len(events)
        done(None)
        for event in events:
            if event.claimed:
                self._start_soon(event)
        self._pump()

    def stats(self) -> dict:
        s = self.store.stats()
        return {
            "depth": s.depth,
            "oldest_age_seconds": round(time.time() - s.oldest_created, 3) if s.oldest_created is not None else None,
            "running": self.running,
            "in_flight": len(self.claimed),
            "accepted": self.accepted,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "retries": self.retries,
            "throttled": self.throttled,
            "destination_failures": self.destination_failures,
            "waiting_to_start": len(self._ready),   # claimed here, waiting for a loop turn's budget (_start_soon)
            "saturated_windows": self.saturated_windows,   # LOAD_WINDOW_S windows in which accepting came first
            # Events run again because a stop cut them short (each may have run twice), ever and at this start.
            "redelivered": s.redelivered,
            "redelivered_at_start": self.redelivered_at_start,
            "wait_scale": self.scale,
            "durability": getattr(self.store, "durability", None),
            # Group commit: transactions (one fsync each) and the queue operations they carried.
            "commits": getattr(self.store, "commits", None),
            "committed_operations": getattr(self.store, "committed_ops", None),
        }

    def pending(self, function: str, limit: int = 100) -> list[dict]:
        now = time.time()
        out = []
        waiting = {e.id for e in self._ready}   # claimed, their attempt not started yet
        for e in self.store.pending(function, limit):
            mine = self.claimed.get(e.id)
            if mine is not None:
                e = mine
            state = "running" if e.claimed and e.id not in waiting else ("retrying" if e.due > now else "queued")
            out.append({"RequestId": e.id, "Version": e.version, "Qualifier": e.qualifier,
                        "AgeSeconds": round(now - e.created, 3), "Attempts": e.attempts, "Throttles": e.throttles,
                        "NextAttemptInSeconds": round(max(0.0, e.due - now), 3) if not e.claimed else 0.0,
                        "State": state, "LastError": e.last_error})
        return out

    # ------------------------------------------------------------------ attempts

    def _start_soon(self, event: AsyncEvent) -> None:
        """Start a claimed event's attempt now if this loop turn's budget allows, else in a later turn."""
        if self._ready or self._started >= START_PER_TURN or self._saturated:
            self._ready.append(event)
        else:
            self._started += 1
            self._attempt(event)
        if not self._turn_scheduled:
            self._turn_scheduled = True
            asyncio.get_running_loop().call_soon(self._next_turn)

    def _next_turn(self) -> None:
        """A new loop turn: a new budget of START_PER_TURN starts, first for the events waiting. A loop turn also
        serves every request that arrived meanwhile (the HTTP front door, the other front ends): under a burst of
        accepts, running events takes a bounded share of the server's core instead of starving the accepts, and the
        queue (the rest claimed here in memory, beyond max_in_flight in the store) is drained once it is over."""
        self._started = 0
        ready = self._ready
        if not ready:
            self._turn_scheduled = False
            return
        if self._load_check():
            # Saturated by accepts: their commits start the share (_appended); look again in a window, not at every
            # turn (that would keep a busy loop from ever waiting for I/O).
            asyncio.get_running_loop().call_later(LOAD_WINDOW_S, self._next_turn)
            return
        asyncio.get_running_loop().call_soon(self._next_turn)   # the next turn's budget, for the rest
        for _ in range(min(len(ready), START_PER_TURN)):
            self._started += 1
            self._attempt(ready.popleft())

    def _load_check(self) -> bool:
        """Whether accepts saturate the loop (see SATURATED); measured once a LOAD_WINDOW_S."""
        now = time.perf_counter()
        elapsed = now - self._window_start
        if elapsed >= LOAD_WINDOW_S:
            busy = self._busy_s()
            self._saturated = (self._window_accepts > 0 and elapsed < 4 * LOAD_WINDOW_S   # not across a pause
                               and busy - self._window_busy >= SATURATED * elapsed)
            self._window_start, self._window_busy, self._window_accepts = now, busy, 0
            if self._saturated:
                self.saturated_windows += 1
        return self._saturated

    def _busy_s(self) -> float:
        """Seconds the loop's thread has been on a CPU or waiting for one (schedstat), else its CPU time."""
        fd = self._schedstat
        if fd is not None:
            try:
                on_cpu, waiting, _ = os.pread(fd, 128, 0).split()
                return (int(on_cpu) + int(waiting)) / 1e9
            except (OSError, ValueError):
                os.close(fd)
                self._schedstat = None
        return time.thread_time()

    def _attempt(self, event: AsyncEvent) -> None:
        if self.stopping:
            self._release(event)
            return
        settings = self.configs.effective(event.function, event.qualifier)
        fn = self.functions.functions.get(event.function)   # _version(event), inline: once per attempt
        target = None if fn is None else fn if event.version == LATEST else fn.versions.get(event.version)
        if target is None:
            log.warning("async: event %s dropped: %s version %s no longer exists", event.id, event.function,
                        event.version)
            self._complete(event)
            return
        if retry.expired(time.time() - event.created, settings.max_age_s, self.scale):
            self._fail(event, retry.EVENT_AGE_EXCEEDED, None, settings)
            return
        if self.dispatcher.reserved.get(event.function) == 0:
            self._fail(event, retry.ZERO_RESERVED, None, settings)
            return
        try:
            ensure_invokable(target, self.dispatcher)
        except AwsError as exc:
            self._backoff(event, settings, f"{exc.code}: {exc.message}")
            return
        client_context = orjson.loads(event.client_context) if event.client_context else None
        inv = Invocation(event.id, event.payload, event.invoked_arn, sync=True, keep_log=False,
                         client_context=client_context, trace_id=event.trace_id, tenant_id=event.tenant_id)
        inv.on_done = partial(self._finished, event)
        event.attempts += 1
        try:
            self.dispatcher.submit(target.key, inv)
        except Throttled as exc:
            event.attempts -= 1
            self._backoff(event, settings, f"throttled: {exc.reason}")
            return
        self.running += 1
        if event.attempts > 1:
            self._log(event, f"ASYNC RequestId: {event.id} Attempt {event.attempts} of "
                             f"{settings.max_retries + 1}")

    def _version(self, event: AsyncEvent) -> Function | None:
        fn = self.functions.functions.get(event.function)
        if fn is None:
            return None
        return fn if event.version == LATEST else fn.versions.get(event.version)

    def _finished(self, event: AsyncEvent, outcome: InvokeResult | BaseException) -> None:
        self.running -= 1
        settings = self.configs.effective(event.function, event.qualifier)
        if isinstance(outcome, InvokeResult):
            if outcome.error_type is None:
                self.succeeded += 1
                event.last_error = None
                if settings.on_success:
                    self._spawn(self._to_destination(event, settings.on_success, retry.SUCCESS, outcome))
                else:
                    self._complete(event)
                return
            event.last_error = outcome.error_type
            decision = retry.after_function_error(event.attempts, time.time() - event.created,
                                                  settings.max_retries, settings.max_age_s, self.scale)
            if decision.retry:
                self.retries += 1
                self._log(event, f"ASYNC RequestId: {event.id} Attempt {event.attempts} failed "
                                 f"({outcome.error_type}); retrying in {decision.delay_s:.3g} s")
                event.due = time.time() + decision.delay_s
                self._release(event)
            else:
                self._fail(event, decision.condition or retry.RETRIES_EXHAUSTED, outcome, settings)
            return
        # Throttled in the queue, or a system error: the function did not run this event.
        event.attempts -= 1
        if self.stopping:
            self._release(event)
            return
        reason = f"throttled: {outcome.reason}" if isinstance(outcome, Throttled) else f"system error: {outcome}"
        self._backoff(event, settings, reason)

    def _backoff(self, event: AsyncEvent, settings: EventInvokeSettings, reason: str) -> None:
        self.throttled += 1
        event.throttles += 1
        event.last_error = reason
        decision = retry.after_throttle(event.throttles, time.time() - event.created, settings.max_age_s, self.scale)
        if not decision.retry:
            self._fail(event, retry.EVENT_AGE_EXCEEDED, None, settings)
            return
        self._log(event, f"ASYNC RequestId: {event.id} {reason}; retrying in {decision.delay_s:.3g} s")
        event.due = time.time() + decision.delay_s
        self._release(event)

    def _fail(self, event: AsyncEvent, condition: str, result: InvokeResult | None,
              settings: EventInvokeSettings) -> None:
        self.failed += 1
        target = self._version(event)
        dlq = ((target.config.get("DeadLetterConfig") or {}).get("TargetArn") if target is not None else None) or None
        where = [w for w in (settings.on_failure and f"on-failure destination {settings.on_failure}",
                             dlq and f"dead-letter queue {dlq}") if w]
        self._log(event, f"ASYNC RequestId: {event.id} {condition} after {event.attempts} attempt(s): "
                         + (", ".join(where) if where else "discarded (no on-failure destination or DLQ)"))
        if not where:
            self._complete(event)
            return
        self._spawn(self._to_failure(event, condition, result, settings.on_failure, dlq))

    # ------------------------------------------------------------------ destinations

    async def _to_destination(self, event: AsyncEvent, arn: str, condition: str, result: InvokeResult) -> None:
        await self._deliver(event, arn, condition, result)
        self._complete(event)

    async def _to_failure(self, event: AsyncEvent, condition: str, result: InvokeResult | None,
                          on_failure: str | None, dlq: str | None) -> None:
        if on_failure:
            await self._deliver(event, on_failure, condition, result)
        if dlq:
            reason = condition if result is None else (result.error_type or condition)
            try:
                await self.router.dead_letter(dlq, event.payload, dead_letter_attributes(event, result, reason))
            except DeliveryError as exc:
                self.destination_failures += 1
                self._log(event, f"ASYNC RequestId: {event.id} dead-letter queue {dlq} failed: {exc}")
        self._complete(event)

    async def _deliver(self, event: AsyncEvent, arn: str, condition: str, result: InvokeResult | None) -> None:
        try:
            await self.router.deliver(arn, record(event, condition, result))
        except DeliveryError as exc:
            # As on AWS (DestinationDeliveryFailures): the record is dropped, the event is done.
            self.destination_failures += 1
            self._log(event, f"ASYNC RequestId: {event.id} destination {arn} failed: {exc}")

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("async: a delivery failed", exc_info=task.exception())

    # ------------------------------------------------------------------ the queue

    def _complete(self, event: AsyncEvent) -> None:
        """The event is done. It leaves the queue only after its function's log lines are written out (once per
        COMPLETE_EVERY_S for all completions): after a crash, an event gone from the queue has its attempts in the
        log."""
        self.claimed.pop(event.id, None)
        self._completing.append(event.id)
        self._dirty_logs.add(event.function)
        if self._completion is None:
            self._completion = asyncio.get_running_loop().call_later(COMPLETE_EVERY_S, self._complete_now)
        self._pump()

    def _complete_now(self) -> None:
        self._completion = None
        for name in self._dirty_logs:
            if name in self.functions.functions:
                self.functions.logs.for_function(name).flush()
        self._dirty_logs.clear()
        ids, self._completing = self._completing, []
        if ids:
            self.store.complete_many(ids)

    def _release(self, event: AsyncEvent) -> None:
        self.claimed.pop(event.id, None)
        event.claimed = False
        self.store.release(event)
        self._note_due(event.due)
        self._pump()

    def _note_due(self, due: float) -> None:
        if self._next_due is None or due < self._next_due:
            self._next_due = due
        if self._claiming and (self._noted is None or due < self._noted):
            self._noted = due

    def _pump(self) -> None:
        """Claim due events while there is room; otherwise wake up when the next one is due."""
        if self.stopping or self._claiming or self._next_due is None:
            return
        room = self.max_in_flight - len(self.claimed)
        if room <= 0 or (room < min(CLAIM_BATCH, max(1, self.max_in_flight // 4)) and self._ready):
            # No room, or room for a few only while events claimed here still wait to start: claim a batch once
            # there is room for one, or nothing claimed waits (not a claim of a few rows per commit under a backlog).
            return
        now = time.time()
        if self._next_due > now:
            if self._timer is not None and self._timer_at > self._next_due:
                self._timer.cancel()   # something is due sooner than the timer was set for
                self._timer = None
            if self._timer is None:
                assert self._loop is not None
                self._timer_at = self._next_due
                self._timer = self._loop.call_later(self._next_due - now, self._wake)
            return
        self._claiming = True
        self._noted = None
        self.store.claim(now, min(room, CLAIM_BATCH), self._claimed)

    def _wake(self) -> None:
        self._timer = None
        self._pump()

    def _claimed(self, events: list[AsyncEvent] | BaseException, next_due: float | None) -> None:
        self._claiming = False
        if isinstance(events, BaseException):
            log.error("async: claiming queued events failed: %s", events)
            self._next_due = time.time() + 1.0   # try again in a second
            self._pump()
            return
        noted = self._noted
        self._next_due = next_due if noted is None else (noted if next_due is None else min(next_due, noted))
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for event in events:
            self.claimed[event.id] = event
            self._start_soon(event)
        self._pump()

    # ------------------------------------------------------------------ the function's log

    def _log(self, event: AsyncEvent, line: str) -> None:
        if event.function not in self.functions.functions:
            return
        flog = self.functions.logs.for_function(event.function)
        flog.append(LOG_STREAM, line)
        flog.flush_soon()


def _call(done: Callable[[BaseException | None], None], error: BaseException | None) -> None:
    try:
        done(error)
    except Exception:
        log.exception("async: an accept's callback failed")
