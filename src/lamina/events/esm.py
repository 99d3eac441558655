"""Event source mapping pollers: a Lamina queue feeds its function in batches (spec/events.md §3.2–3.3).

One Poller per enabled mapping. Unlike AWS's pollers, it does not poll: it waits on the queue like a long poll,
and is woken the moment a message becomes visible (a send's commit, a delay or visibility timeout running out),
so a message reaches its function within milliseconds. With MaximumBatchingWindowInSeconds set, a batch is
gathered for up to that long (or until BatchSize or 6 MB) before the invoke, as on AWS.

Each batch is one synchronous invoke through the dispatcher (admission included) with AWS's SQS event. Then:
- success: the batch is deleted; with ReportBatchItemFailures, only the messages the function did not name in
  batchItemFailures (FIFO: a group's first failure and every later message of that group stay);
- a function error (or a malformed batchItemFailures response): the messages stay in flight and come back when
  their visibility timeout runs out; the queue's redrive policy moves a message to its dead-letter queue after
  maxReceiveCount receives;
- throttled (reserved or account concurrency, or no environment in time) or a system error: the messages are
  visible again at once and the receive does not count, and the poller halves its concurrency and backs off
  (1 s doubling to 30 s) — a throttled function slows the poller down instead of burning receives.
Messages that match none of the mapping's filters are deleted without an invoke (as AWS does).

Concurrency: like AWS, a poller starts with 5 concurrent batches and adds one (at most 5 a second, AWS's 300 a
minute) while every batch slot is busy and messages wait, up to ScalingConfig.MaximumConcurrency (or 1,000).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import TypeAlias

import orjson

from lamina.config import Settings
from lamina.dispatch.invocation import Invocation, InvokeResult
from lamina.eventpattern import Pattern, compile_pattern
from lamina.functions.errors import AwsError
from lamina.functions.event_source_mappings import EventSourceMappingService
from lamina.functions.invoke import ensure_invokable
from lamina.functions.registry import FunctionService
from lamina.queues.message import Message
from lamina.queues.queue import Queue
from lamina.queues.service import QueueService

log = logging.getLogger("lamina.events")

START_CONCURRENCY = 5
MAX_CONCURRENCY = 1000
GROWTH_INTERVAL_S = 0.2          # one more concurrent batch per 200 ms at most: AWS's 300 a minute
BATCH_BYTES = 6 * 1024 * 1024
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 30.0
LONG_WAIT_S = 20.0
FUNCTION_RECHECK_S = 30.0        # a poller whose function is gone looks again at least this often


# A batch's invoke once started: its outcome's future, what kept it from starting, or None (nothing to invoke).
Pending: TypeAlias = asyncio.Future[InvokeResult] | BaseException | None


def record(m: Message, q: Queue, region: str, account: str) -> dict:
    """One message as the SQS event's record (AWS's field order and shapes)."""
    attributes = {"ApproximateReceiveCount": str(m.receives), "SentTimestamp": str(int(m.sent * 1000)),
                  "SenderId": account, "ApproximateFirstReceiveTimestamp": str(int(m.first_receive * 1000))}
    if m.group is not None:
        attributes["MessageGroupId"] = m.group
    if m.dedup is not None:
        attributes["SequenceNumber"] = f"{m.seq:020d}"
        attributes["MessageDeduplicationId"] = m.dedup
    if m.trace is not None:
        attributes["AWSTraceHeader"] = m.trace
    if m.dlq_source is not None:
        attributes["DeadLetterQueueSourceArn"] = m.dlq_source
    message_attributes = {}
    for name, value in (m.attributes or {}).items():
        entry: dict = {}
        if "StringValue" in value:
            entry["stringValue"] = value["StringValue"]
        else:
            entry["binaryValue"] = value["BinaryValue"]
        entry.update(stringListValues=[], binaryListValues=[], dataType=value["DataType"])
        message_attributes[name] = entry
    return {"messageId": m.id, "receiptHandle": m.handle, "body": m.body, "attributes": attributes,
            "messageAttributes": message_attributes, "md5OfMessageAttributes": m.md5_attributes,
            "md5OfBody": m.md5_body, "eventSource": "aws:sqs", "eventSourceARN": q.arn, "awsRegion": region}


def _filter_view(rec: dict) -> dict:
    """What filters see: the record, with a JSON body decoded (a plain-text body stays a string)."""
    body = rec["body"]
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError:
        return rec
    return {**rec, "body": decoded}


def failed_items(body: bytes, ids: list[str]) -> set[str] | None:
    """The messageIds a ReportBatchItemFailures response names; None when the response makes the whole batch fail
    (AWS's rules: not JSON, not an object, an empty / null / unknown itemIdentifier, a wrong key)."""
    if not body.strip():
        return set()
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if doc is None:
        return set()
    if not isinstance(doc, dict):
        return None
    items = doc.get("batchItemFailures")
    if items is None:
        return set()
    if not isinstance(items, list):
        return None
    known = set(ids)
    out = set()
    for item in items:
        if not isinstance(item, dict):
            return None
        ident = item.get("itemIdentifier")
        if not isinstance(ident, str) or not ident or ident not in known:
            return None
        out.add(ident)
    return out


class Poller:
    """Feeds one mapping's function from its queue until stopped."""

    def __init__(self, runner: EsmRunner, config: dict) -> None:
        self.runner = runner
        self.id = config["UUID"]
        self.configure(config)
        self.active = 0                  # batches being invoked
        self.limit = min(START_CONCURRENCY, self.cap)
        self.peak = 0                    # the most batches invoked at once (figures)
        self.invokes = 0
        self.filtered = 0
        self.failures = 0
        self.throttles = 0
        self.last_error: str | None = None
        self._grown_at = 0.0
        self._backoff = 0.0
        self._slot = asyncio.Event()
        self._slot.set()
        self._task: asyncio.Task | None = None
        self._batches: set[asyncio.Task] = set()
        self.stopping = False

    def configure(self, config: dict) -> None:
        self.source_arn = config["EventSourceArn"]
        self.function_arn = config["FunctionArn"]
        self.batch_size = config["BatchSize"]
        self.window = config["MaximumBatchingWindowInSeconds"]
        self.report_failures = "ReportBatchItemFailures" in config.get("FunctionResponseTypes", [])
        self.cap = (config.get("ScalingConfig") or {}).get("MaximumConcurrency", MAX_CONCURRENCY)
        self.filters: list[Pattern] = [compile_pattern(f["Pattern"])
                                       for f in (config.get("FilterCriteria") or {}).get("Filters", [])]
        if hasattr(self, "limit"):
            self.limit = min(max(self.limit, 1), self.cap)
            self._slot.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        """No new batches; the ones being invoked finish (their outcome is applied)."""
        self.stopping = True
        if self._task is not None:
            self._task.cancel()

    async def wait_batches(self, timeout: float) -> None:
        if self._batches:
            await asyncio.wait(list(self._batches), timeout=timeout)

    # ------------------------------------------------------------------ the loop

    async def _run(self) -> None:
        queues = self.runner.queues
        while not self.stopping:
            if self._backoff:
                await asyncio.sleep(self._backoff)
            while self.active >= self.limit:
                self._slot.clear()
                await self._slot.wait()
            q = queues.queue_for_arn(self.source_arn)
            if q is None:
                self.last_error = "the queue does not exist"
                await asyncio.sleep(1.0)
                continue
            if not self.runner.function_exists(self.function_arn):
                # Deleted (the mapping outlives it, as on AWS): nothing is received until a function of that name
                # is there again.
                self.last_error = "the function does not exist"
                await self.runner.function_settled()
                self._backoff = 0.0
                continue
            visibility = self._visibility(q)
            messages = await queues.receive(q, self.batch_size, visibility, LONG_WAIT_S)
            if not messages:
                if queues.stopping:
                    return   # the server is stopping: receives answer at once from now on
                continue
            if self.window and len(messages) < self.batch_size:
                messages += await self._gather(q, visibility, len(messages), sum(m.size for m in messages))
            self._launch(q, messages)

    def _visibility(self, q: Queue) -> int:
        """The queue's visibility timeout; at least window + function timeout + 30 s when those exceed it (AWS)."""
        timeout = self.runner.function_timeout(self.function_arn)
        if self.window + timeout > q.visibility_timeout:
            return int(self.window + timeout + 30)
        return q.visibility_timeout

    async def _gather(self, q: Queue, visibility: int, have: int, size: int) -> list[Message]:
        """More messages for the batch, until the window closes, the batch is full or 6 MB."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.window
        out: list[Message] = []
        while (have + len(out) < self.batch_size and size < BATCH_BYTES and not self.stopping
               and not self.runner.queues.stopping):
            left = deadline - loop.time()
            if left <= 0:
                break
            more = await self.runner.queues.receive(q, self.batch_size - have - len(out), visibility, left)
            out += more
            size += sum(m.size for m in more)
        return out

    def _launch(self, q: Queue, messages: list[Message]) -> None:
        self.active += 1
        self.peak = max(self.peak, self.active)
        # The invocation is handed to the dispatcher here, in the step that received the batch (a send's commit
        # wakes it ahead of writing the send's 200): the task only waits for the outcome.
        kept, pending = self._start(q, messages)
        task = asyncio.get_running_loop().create_task(self._batch(q, kept, pending))
        self._batches.add(task)
        task.add_done_callback(self._batch_done)
        now = time.monotonic()
        if (self.active >= self.limit and self.limit < self.cap and q.depth > 0
                and now - self._grown_at >= GROWTH_INTERVAL_S):
            self.limit += 1
            self._grown_at = now

    def _batch_done(self, task: asyncio.Task) -> None:
        self._batches.discard(task)
        self.active -= 1
        self._slot.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("event source mapping %s: a batch failed", self.id, exc_info=task.exception())

    # ------------------------------------------------------------------ one batch

    def _start(self, q: Queue, messages: list[Message]) -> tuple[list[Message], Pending]:
        """The batch's event, less what no filter matches (deleted), submitted: (the messages in it, the invoke's
        future, or what stopped it from being submitted, or None when nothing is left to invoke)."""
        runner = self.runner
        try:
            records = [record(m, q, runner.region, runner.account) for m in messages]
            if self.filters:
                keep_messages, keep_records, dropped = [], [], []
                for m, rec in zip(messages, records, strict=True):
                    view = _filter_view(rec)
                    if any(f.matches(view) for f in self.filters):
                        keep_messages.append(m)
                        keep_records.append(rec)
                    else:
                        dropped.append(m)
                if dropped:
                    runner.queues.delete_messages(q, dropped)   # AWS deletes what no filter matches
                    self.filtered += len(dropped)
                messages, records = keep_messages, keep_records
                if not messages:
                    return messages, None
            return messages, runner.submit(self.function_arn, orjson.dumps({"Records": records}))
        except Exception as exc:  # Throttled, AwsError (not invokable now), a system error
            return messages, exc

    async def _batch(self, q: Queue, messages: list[Message], pending: Pending) -> None:
        if pending is None:
            return
        runner = self.runner
        queues = runner.queues
        try:
            if isinstance(pending, BaseException):
                raise pending
            result = await pending
        except Exception as exc:  # Throttled, AwsError (not invokable now), a system error
            # Not run: the messages are visible again and this receive does not count; slow down.
            queues.release(q, messages, uncount=True)
            if not runner.function_exists(self.function_arn):
                self.last_error = "the function does not exist"
                return   # deleted meanwhile: the loop waits for it, no backoff
            self.throttles += 1
            self.last_error = f"throttled: {exc}"
            self.limit = max(1, self.limit // 2)
            self._backoff = min(BACKOFF_MAX_S, max(BACKOFF_FIRST_S, self._backoff * 2))
            return
        self._backoff = 0.0
        self.invokes += 1
        if result.error_type is not None:
            self.failures += 1
            self.last_error = f"function error: {result.error_type}"
            return   # every message comes back after its visibility timeout
        if not self.report_failures:
            queues.delete_messages(q, messages)
            return
        failed = failed_items(result.body, [m.id for m in messages])
        if failed is None:
            self.failures += 1
            self.last_error = "the batchItemFailures response is invalid: the whole batch failed"
            return
        if failed and q.fifo:
            failed = _fifo_failures(messages, failed)
        if failed:
            self.failures += 1
            self.last_error = f"{len(failed)} of {len(messages)} message(s) reported failed"
        queues.delete_messages(q, [m for m in messages if m.id not in failed])

    def stats(self) -> dict:
        return {"UUID": self.id, "EventSourceArn": self.source_arn, "FunctionArn": self.function_arn,
                "Concurrency": self.active, "ConcurrencyLimit": self.limit, "PeakConcurrency": self.peak,
                "Invocations": self.invokes, "Filtered": self.filtered, "FailedBatches": self.failures,
                "Throttled": self.throttles, "LastError": self.last_error}


def _fifo_failures(messages: list[Message], failed: set[str]) -> set[str]:
    """FIFO: a group's first failed message and every later message of that group in the batch stay queued."""
    out = set(failed)
    broken: set[str | None] = set()
    for m in messages:
        if m.group in broken:
            out.add(m.id)
        elif m.id in failed:
            broken.add(m.group)
    return out


class EsmRunner:
    """Runs a Poller for every enabled mapping; follows the mappings as they change."""

    def __init__(self, functions: FunctionService, mappings: EventSourceMappingService, queues: QueueService,
                 settings: Settings) -> None:
        self.functions = functions
        self.mappings = mappings
        self.queues = queues
        self.region = settings.region
        self.account = settings.account_id
        self.pollers: dict[str, Poller] = {}
        self.stopping = False
        self._settled: list[asyncio.Future[None]] = []   # pollers waiting for their function to exist again

    def start(self) -> None:
        self.mappings.listeners.append(self._changed)
        self.functions.state_listeners.append(self._function_settled)
        for mapping_id in list(self.mappings.mappings):
            self._changed(mapping_id)

    def stop(self) -> None:
        self.stopping = True
        for poller in self.pollers.values():
            poller.stop()

    async def close(self, timeout: float = 30.0) -> None:
        self.stop()
        for poller in list(self.pollers.values()):
            await poller.wait_batches(timeout)
            if poller._task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await poller._task

    def _changed(self, mapping_id: str) -> None:
        config = self.mappings.mappings.get(mapping_id)
        poller = self.pollers.get(mapping_id)
        run = (config is not None and config.get("_Enabled", True) and config["State"] != "Deleting"
               and not self.stopping)
        if not run:
            if poller is not None:
                poller.stop()
                del self.pollers[mapping_id]
            return
        assert config is not None
        if poller is not None and poller.source_arn == config["EventSourceArn"]:
            poller.configure(config)
            self._function_settled(None)   # it may name another function now: one a waiting poller can feed
            return
        if poller is not None:
            poller.stop()
        poller = self.pollers[mapping_id] = Poller(self, config)
        poller.start()

    def stats(self) -> list[dict]:
        return [p.stats() for p in self.pollers.values()]

    # ------------------------------------------------------------------ the mapped functions

    def function_exists(self, function_arn: str) -> bool:
        try:
            fn, qualifier = self.functions.target(function_arn)
            self.functions.resolve(fn, qualifier)
        except (AwsError, KeyError):
            return False
        return True

    async def function_settled(self) -> None:
        """Wait until some function settles (created or updated: Active or Failed), or FUNCTION_RECHECK_S."""
        f: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._settled.append(f)
        try:
            await asyncio.wait_for(f, FUNCTION_RECHECK_S)
        except TimeoutError:
            pass
        finally:
            with contextlib.suppress(ValueError):
                self._settled.remove(f)

    def _function_settled(self, fn: object) -> None:
        waiting, self._settled = self._settled, []
        for f in waiting:
            if not f.done():
                f.set_result(None)

    # ------------------------------------------------------------------ invoking

    def function_timeout(self, function_arn: str) -> int:
        try:
            fn, qualifier = self.functions.target(function_arn)
            return int(self.functions.resolve(fn, qualifier).config.get("Timeout", 3))
        except (AwsError, KeyError):
            return 3

    def submit(self, function_arn: str, payload: bytes) -> asyncio.Future[InvokeResult]:
        """Start one synchronous invoke: its outcome's future. Raises Throttled or AwsError when the function
        cannot run now."""
        fn, qualifier = self.functions.target(function_arn)
        target = self.functions.pick(fn, qualifier)
        ensure_invokable(target, self.functions.dispatcher)
        inv = Invocation(str(uuid.uuid4()), payload, function_arn, sync=True, keep_log=False)
        future: asyncio.Future[InvokeResult] = asyncio.get_running_loop().create_future()
        inv.future = future
        self.functions.dispatcher.submit(target.key, inv)
        return future
