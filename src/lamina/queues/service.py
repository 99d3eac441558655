"""The queue service: every queue of the server, and SQS's operations on them (spec/events.md §2).

What the SQS API (api/sqs*.py) calls, and what the event source mappings' pollers (events/esm.py), async
destinations and dead-letter queues use to receive, delete and send. State lives in memory (queue.py) and
every change is written to the store (store/messages.py): a send is answered once its message is committed
(durable with the `async_durability` policy); receives, visibility changes and deletes follow lazily.

Receives take what is visible now; with a wait (long polling, up to 20 s) they return as soon as something
becomes visible — a send, a delay or a visibility timeout running out — not on a polling tick.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from lamina.queues import attributes as attrs
from lamina.queues import errors
from lamina.queues.errors import SqsError
from lamina.queues.message import INFLIGHT as INFLIGHT_STATE
from lamina.queues.message import READY as READY_STATE
from lamina.queues.message import Message, attributes_md5, check_attributes, check_body, md5_hex, parse_handle
from lamina.queues.queue import DEDUP_WINDOW_S, Queue
from lamina.store.group_commit import Kind
from lamina.store.messages import DedupRow, MessageRow, MessageStore, QueueRow

log = logging.getLogger("lamina.queues")


@dataclass(slots=True)
class StagedSend:
    """QueueService.stage's work, for the send it prepares."""

    queue: Queue
    at: float
    results: list[dict | SqsError]
    new: list[Message]
    rows: list[MessageRow]

MAX_BATCH = 10
BATCH_ID = re.compile(r"[A-Za-z0-9_-]{1,80}")
GROUP_ID = re.compile(r"[\x21-\x7e]{1,128}")
MAX_TAGS = 50
SWEEP_S = 60.0
PURGE_INTERVAL_S = 60.0
DELETED_RECENTLY_S = 60.0


class QueueService:
    def __init__(self, store: MessageStore, region: str, account: str) -> None:
        self.store = store
        self.region = region
        self.account = account
        self.queues: dict[tuple[str, str], Queue] = {}
        self.by_id: dict[int, Queue] = {}
        self.by_arn: dict[str, Queue] = {}
        self.deleted: dict[tuple[str, str], float] = {}
        self._next_id = 1
        self._next_seq = 1
        self._sweeper: asyncio.Task | None = None
        self.stopping = False
        # Called with a queue that is being deleted (event source mappings stop polling it).
        self.delete_hooks: list[Callable[[Queue], None]] = []
        self.sent = 0
        self.received = 0
        self.deleted_messages = 0
        self.moved_to_dlq = 0
        self.move_tasks: dict[str, dict] = {}   # StartMessageMoveTask's tasks, by handle (ListMessageMoveTasks)

    # ------------------------------------------------------------------ lifecycle

    def load(self) -> None:
        """Before start(): every queue and message from the store."""
        now = time.time()
        for row in self.store.queues():
            self._register(Queue(row, self.region, self.store))
            self._next_id = max(self._next_id, row.id + 1)
        n = 0
        for mr in self.store.messages():
            self._next_seq = max(self._next_seq, mr.seq + 1)
            q = self.by_id.get(mr.queue_id)
            if q is None:
                continue
            q.add(_message(mr), now)
            n += 1
        for d in self.store.dedups(now):
            q = self.by_id.get(d.queue_id)
            if q is not None:
                q.dedup[d.dedup_id] = (d.expires, d.message_id, d.seq)
                self._next_seq = max(self._next_seq, d.seq + 1)
        if self.queues:
            log.info("queues: %d queue(s), %d message(s) loaded", len(self.queues), n)

    def start(self) -> None:
        self.store.open(asyncio.get_running_loop())
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    def stop_waiting(self) -> None:
        """SIGTERM: long polls return now (empty), so the server's drain does not wait up to 20 s for them."""
        self.stopping = True
        for q in self.queues.values():
            q.close()

    async def close(self, timeout: float = 10.0) -> None:
        self.stop_waiting()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        loop = asyncio.get_running_loop()
        if not await loop.run_in_executor(None, self.store.flush, timeout):
            log.error("queues: the store did not finish its writes in %.0f s", timeout)
        self.store.close()

    async def _sweep(self) -> None:
        """Retention: messages older than MessageRetentionPeriod go; expired deduplication ids too."""
        while True:
            await asyncio.sleep(SWEEP_S)
            now = time.time()
            for q in list(self.queues.values()):
                q.expire(now)
            self.store.expire_dedups(now)

    # ------------------------------------------------------------------ queues

    def _register(self, q: Queue) -> None:
        self.queues[(q.account, q.name)] = q
        self.by_id[q.id] = q
        self.by_arn[q.arn] = q
        q.redrive_to = self._redrive

    def _unregister(self, q: Queue) -> None:
        self.queues.pop((q.account, q.name), None)
        self.by_id.pop(q.id, None)
        self.by_arn.pop(q.arn, None)

    def queue(self, account: str, name: str) -> Queue:
        q = self.queues.get((account, name))
        if q is None:
            raise errors.queue_missing()
        return q

    def queue_for_url(self, url: object) -> Queue:
        """The queue a QueueUrl names, whatever its host: the path's /ACCOUNT/NAME (a bare name: this account)."""
        if not isinstance(url, str) or not url:
            raise errors.missing_parameter("QueueUrl")
        path = url.split("://", 1)[-1]
        parts = [p for p in path.split("?", 1)[0].split("/") if p]
        if len(parts) >= 3 or (len(parts) == 2 and "://" not in url):
            return self.queue(parts[-2], parts[-1])
        if len(parts) == 1 and "://" not in url:
            return self.queue(self.account, parts[0])
        raise errors.invalid_parameter(f"Value {url} for parameter QueueUrl is invalid. Reason: Invalid URL.")

    def queue_for_arn(self, arn: str) -> Queue | None:
        return self.by_arn.get(arn)

    async def create_queue(self, account: str, name: object, raw: object, tags: object) -> Queue:
        given = raw if isinstance(raw, dict) else {}
        fifo = str(given.get("FifoQueue", "")).lower() == "true"
        name = attrs.check_name(name, fifo)
        values = attrs.check(raw, fifo, creating=True)
        values.pop("FifoQueue", None)
        tag_map = _check_tags(tags)
        if values.get("RedrivePolicy"):
            self._check_redrive(fifo, values["RedrivePolicy"], None)
        existing = self.queues.get((account, name))
        if existing is not None:
            for key, value in values.items():
                if existing.setting(key) != value:
                    raise errors.queue_exists(key)
            return existing
        gone = self.deleted.get((account, name))
        now = time.time()
        if gone is not None and now - gone < DELETED_RECENTLY_S:
            raise errors.deleted_recently()
        row = QueueRow(self._next_id, account, name, values, tag_map, now, now)
        self._next_id += 1
        q = Queue(row, self.region, self.store)
        self._register(q)   # at once: a concurrent create of the same name finds it
        try:
            await self._commit_queue(q)
        except BaseException:
            self._unregister(q)
            raise
        return q

    async def _commit_queue(self, q: Queue) -> None:
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self.store.put_queue(q.row(), future.set_result)
        _raise_failed(await future)

    def list_queues(self, account: str, prefix: str | None = None) -> list[Queue]:
        return sorted((q for (acct, name), q in self.queues.items()
                       if acct == account and (not prefix or name.startswith(prefix))), key=lambda q: q.name)

    async def delete_queue(self, q: Queue) -> None:
        self._unregister(q)
        self.deleted[(q.account, q.name)] = time.time()
        for hook in self.delete_hooks:
            hook(q)
        q.close()
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self.store.drop_queue(q.id, future.set_result)
        _raise_failed(await future)

    async def purge(self, q: Queue) -> None:
        now = time.time()
        if now - q.purged < PURGE_INTERVAL_S:
            raise errors.purge_in_progress(q.name)
        top = q.clear(now)
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self.store.purge(q.id, top, now, future.set_result)
        _raise_failed(await future)

    async def set_attributes(self, q: Queue, raw: object) -> None:
        if not isinstance(raw, dict) or not raw:
            raise errors.missing_parameter("Attributes")
        values = attrs.check(raw, q.fifo, creating=False)
        values.pop("FifoQueue", None)   # "true" on a FIFO queue: accepted, changes nothing
        if values.get("RedrivePolicy"):
            self._check_redrive(q.fifo, values["RedrivePolicy"], q)
        for key, value in values.items():
            if value == "" and key in attrs.FREE_TEXT:
                q.attributes.pop(key, None)
            else:
                q.attributes[key] = value
        q.configure()
        q.modified = time.time()
        await self._commit_queue(q)

    def _check_redrive(self, fifo: bool, text: str, source: Queue | None) -> None:
        policy = attrs.parse_redrive(text)
        target = self.by_arn.get(policy.target_arn)
        if target is None:
            raise errors.invalid_value("RedrivePolicy", text, "Dead-letter target does not exist.")
        if target.fifo != fifo:
            raise errors.invalid_value("RedrivePolicy", text, "Dead-letter queue must be same type of queue as the "
                                       "source.")
        if source is not None and target is source:
            raise errors.invalid_value("RedrivePolicy", text, "Dead-letter target can't be the source queue itself.")

    def get_attributes(self, q: Queue, names: object) -> dict[str, str]:
        if names is None:
            return {}
        if not isinstance(names, list):
            raise errors.invalid_parameter("AttributeNames must be a list.")
        for name in names:
            if name != "All" and name not in attrs.ALL:
                raise errors.invalid_attribute_name(name)
        wanted = list(attrs.READ_ONLY) + sorted(attrs.SETTABLE) if "All" in names else list(names)
        q.promote(time.time())
        out: dict[str, str] = {}
        for name in wanted:
            if name == "QueueArn":
                out[name] = q.arn
            elif name == "ApproximateNumberOfMessages":
                out[name] = str(q.depth)
            elif name == "ApproximateNumberOfMessagesNotVisible":
                out[name] = str(q.n_inflight)
            elif name == "ApproximateNumberOfMessagesDelayed":
                out[name] = str(q.n_delayed)
            elif name == "CreatedTimestamp":
                out[name] = str(int(q.created))
            elif name == "LastModifiedTimestamp":
                out[name] = str(int(q.modified))
            elif name in q.attributes:
                out[name] = q.attributes[name]
            elif name in attrs.DEFAULTS or (q.fifo and name in attrs.FIFO_DEFAULTS):
                out[name] = q.setting(name)
        return out

    def tag(self, q: Queue, tags: object) -> Callable[[], object]:
        tag_map = _check_tags(tags, required=True)
        if len({**q.tags, **tag_map}) > MAX_TAGS:
            raise errors.invalid_parameter(f"Too many tags added for queue {q.name}.")
        q.tags.update(tag_map)
        return lambda: self._commit_queue(q)

    def untag(self, q: Queue, keys: object) -> Callable[[], object]:
        if not isinstance(keys, list) or not keys:
            raise errors.missing_parameter("TagKeys")
        for key in keys:
            q.tags.pop(key, None)
        return lambda: self._commit_queue(q)

    def dead_letter_sources(self, q: Queue) -> list[Queue]:
        return sorted((s for s in self.queues.values() if s.redrive is not None and s.redrive.target_arn == q.arn),
                      key=lambda s: s.name)

    # ------------------------------------------------------------------ sending

    def stage(self, q: Queue, entries: list[dict]) -> StagedSend | None:
        """A standard queue's send prepared ahead of its moment (EventBridge prepares a minute's schedules shortly
        before they are due): the entries' checks, ids and digests now; send(staged=...) then only stamps the send
        time, commits and adds. None for a FIFO queue (its deduplication belongs to the moment of the send)."""
        if q.fifo:
            return None
        now = time.time()
        results: list[dict | SqsError] = []
        new: list[Message] = []
        for raw in entries:
            try:
                results.append(self._prepare(q, raw, now, new, []))
            except SqsError as exc:
                results.append(exc)
        return StagedSend(q, now, results, new, [_row(q.id, m) for m in new])

    async def send(self, q: Queue, entries: list[dict], also: tuple[Kind, Any] | None = None,
                   staged: StagedSend | None = None) -> list[dict | SqsError]:
        """Send checked entries (the JSON protocol's SendMessage fields); one result per entry: SendMessage's
        response fields, or the entry's error. Answers once the new messages are committed (with `also`, another
        store's write, in the same transaction). `staged`: these entries as stage() prepared them."""
        now = time.time()
        results: list[dict | SqsError] = []
        new: list[Message] = []
        dedups: list[DedupRow] = []
        rows: list[MessageRow] | None = None
        if staged is not None and staged.queue is q:
            shift = now - staged.at   # sent now: the delays run from now
            for m, row in zip(staged.new, staged.rows, strict=True):
                m.sent += shift
                m.visible += shift
                row.sent, row.visible = m.sent, m.visible
            results, new, rows = staged.results, staged.new, staged.rows
        else:
            for raw in entries:
                try:
                    results.append(self._prepare(q, raw, now, new, dedups))
                except SqsError as exc:
                    results.append(exc)
        if not new:
            return results
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()

        def committed(result: object) -> None:
            if isinstance(result, BaseException):
                for d in dedups:
                    q.dedup.pop(d.dedup_id, None)
            elif self.by_id.get(q.id) is q:
                t = time.time()
                for m in new:
                    q.add(m, t)
                self.sent += len(new)
            future.set_result(result)

        self.store.send(rows if rows is not None else [_row(q.id, m) for m in new], dedups, committed, also)
        failure = await future
        if isinstance(failure, BaseException):
            error = SqsError("InternalError", "InternalError", f"The message could not be stored: {failure}", 500,
                             sender=False)
            return [error if isinstance(r, dict) and r.get("_new") else r for r in results]
        for r in results:
            if isinstance(r, dict):
                r.pop("_new", None)
        return results

    def _prepare(self, q: Queue, raw: dict, now: float, new: list[Message], dedups: list[DedupRow]) -> dict:
        body = check_body(raw.get("MessageBody"))
        delay = raw.get("DelaySeconds")
        if delay is not None:
            delay = integer(delay, "DelaySeconds")
            if q.fifo:
                raise errors.invalid_value("DelaySeconds", delay, "The request include parameter that is not valid "
                                           "for this queue type.")
            if not 0 <= delay <= 900:
                raise errors.invalid_value("DelaySeconds", delay, "DelaySeconds must be >= 0 and <= 900.")
        attributes, attr_size = check_attributes(raw.get("MessageAttributes"))
        system, _ = check_attributes(raw.get("MessageSystemAttributes"), system=True)
        size = len(body.encode()) + attr_size
        if size > q.max_size:
            raise errors.invalid_parameter(f"One or more parameters are invalid. Reason: Message must be shorter "
                                           f"than {q.max_size} bytes.")
        group = raw.get("MessageGroupId")
        dedup = raw.get("MessageDeduplicationId")
        if group is not None and (not isinstance(group, str) or not GROUP_ID.fullmatch(group)):
            raise errors.invalid_value("MessageGroupId", group, "MessageGroupId can only include alphanumeric and "
                                       "punctuation characters. 1 to 128 in length.")
        if q.fifo:
            if group is None:
                raise errors.missing_parameter("MessageGroupId")
            if dedup is None:
                if not q.content_dedup:
                    raise errors.invalid_parameter("The queue should either have ContentBasedDeduplication enabled "
                                                   "or MessageDeduplicationId provided explicitly")
                dedup = hashlib.sha256(body.encode()).hexdigest()
            elif not isinstance(dedup, str) or not GROUP_ID.fullmatch(dedup):
                raise errors.invalid_value("MessageDeduplicationId", dedup, "MessageDeduplicationId can only include "
                                           "alphanumeric and punctuation characters. 1 to 128 in length.")
        elif dedup is not None:
            raise errors.invalid_value("MessageDeduplicationId", dedup, "The request include parameter that is not "
                                       "valid for this queue type.")
        out: dict = {"MD5OfMessageBody": md5_hex(body.encode())}
        if attributes:
            out["MD5OfMessageAttributes"] = attributes_md5(attributes)
        if system:
            out["MD5OfMessageSystemAttributes"] = attributes_md5(system)
        if q.fifo:
            key = f"{group}\x00{dedup}" if q.group_scope else str(dedup)
            seen = q.dedup.get(key)
            if seen is not None and seen[0] >= now:
                out["MessageId"] = seen[1]      # a duplicate: accepted, not queued again
                out["SequenceNumber"] = f"{seen[2]:020d}"
                return out
        seq = self._next_seq
        self._next_seq += 1
        m = Message(seq, str(uuid.uuid4()), body, attributes, out["MD5OfMessageBody"],
                    out.get("MD5OfMessageAttributes"), now, now + (delay if delay is not None else q.delay),
                    group=group, dedup=dedup if q.fifo else None,
                    trace=system["AWSTraceHeader"]["StringValue"] if system else None, size=size)
        new.append(m)
        out["MessageId"] = m.id
        out["_new"] = True
        if q.fifo:
            out["SequenceNumber"] = f"{seq:020d}"
            q.dedup[key] = (now + DEDUP_WINDOW_S, m.id, seq)
            dedups.append(DedupRow(q.id, key, m.id, seq, now + DEDUP_WINDOW_S))
        return out

    async def send_to(self, arn: str, body: str, attributes: dict | None = None) -> str:
        """Send one message to a queue by ARN (destinations, dead-letter queues); its message id. Raises SqsError."""
        q = self.by_arn.get(arn)
        if q is None:
            raise errors.queue_missing()
        entry: dict = {"MessageBody": body, "MessageAttributes": attributes}
        if q.fifo:
            entry["MessageGroupId"] = "lamina"
            entry["MessageDeduplicationId"] = str(uuid.uuid4())
        result = (await self.send(q, [entry]))[0]
        if isinstance(result, SqsError):
            raise result
        return str(result["MessageId"])

    # ------------------------------------------------------------------ receiving

    async def receive(self, q: Queue, n: int, visibility: int | None, wait: float,
                      attempt: str | None = None) -> list[Message]:
        """Up to n messages, in flight for `visibility` seconds (the queue's VisibilityTimeout if None); waits up to
        `wait` seconds for the first one to become visible. With an attempt id (a FIFO queue's
        ReceiveRequestAttemptId), a retry of an earlier receive gets that receive's messages again (Queue.retake)."""
        vt = q.visibility_timeout if visibility is None else visibility
        if attempt is not None:
            again = q.retake(attempt, vt, time.time())
            if again is not None:
                return again
            out = await self.receive(q, n, visibility, wait)
            if out and self.by_id.get(q.id) is q:
                q.remember(attempt, out, time.time())
            return out
        out = q.take(n, vt, time.time())
        if out or wait <= 0 or self.stopping:
            self.received += len(out)
            return out
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            left = deadline - loop.time()
            if left <= 0 or self.stopping:
                return []
            f = q.wait()
            timer = loop.call_later(left, _resolve, f)
            try:
                await f
            finally:
                timer.cancel()
                if not f.done():
                    f.cancel()
            if self.by_id.get(q.id) is not q:
                return []   # deleted meanwhile
            out = q.take(n, vt, time.time())
            if out:
                self.received += len(out)
                return out

    def delete_message(self, q: Queue, handle: object) -> None:
        queue_id, seq, receives = parse_handle(handle)
        if queue_id != q.id:
            raise errors.receipt_handle_invalid(str(handle))
        m = q.find(seq, receives)
        if m is not None and q.fifo and (m.state != INFLIGHT_STATE or m.visible <= time.time()):
            # Visible again: AWS refuses the handle on a FIFO queue (recorded), so the group's order holds.
            raise errors.invalid_value("ReceiptHandle", handle, "The receipt handle has expired.")
        if m is not None:   # an older handle: succeeds, the message stays (as AWS says it might)
            q.delete(m)
            self.deleted_messages += 1

    def delete_messages(self, q: Queue, messages: list[Message]) -> None:
        """Delete messages this server received (event source mappings), unless received again since."""
        for m in messages:
            if q.messages.get(m.seq) is m and m.handle:
                q.delete(m)
                self.deleted_messages += 1

    def change_visibility(self, q: Queue, handle: object, timeout: object) -> None:
        vt = integer(timeout, "VisibilityTimeout")
        if not 0 <= vt <= 43200:
            raise errors.invalid_value("VisibilityTimeout", vt, "VisibilityTimeout must be an integer between 0 and "
                                       "43200")
        queue_id, seq, receives = parse_handle(handle)
        if queue_id != q.id:
            raise errors.receipt_handle_invalid(str(handle))
        m = q.find(seq, receives)
        if m is None:
            raise errors.invalid_value("ReceiptHandle", handle, "Message does not exist or is not available for "
                                       "visibility timeout change.")
        q.change_visibility(m, vt, time.time())

    def release(self, q: Queue, messages: list[Message], uncount: bool) -> None:
        now = time.time()
        for m in messages:
            q.release(m, now, uncount)

    def _redrive(self, source: Queue, m: Message) -> bool:
        assert source.redrive is not None
        target = self.by_arn.get(source.redrive.target_arn)
        if target is None or target is source:
            return False
        now = time.time()
        source.detach(m)
        m.dlq_source = source.arn
        m.receives = 0
        m.first_receive = 0.0
        m.visible = now
        m.handle = ""
        system = m.system()
        self.store.move(m.seq, target.id, orjson.dumps(system) if system else None, 0, now)
        target.add(m, now)
        self.moved_to_dlq += 1
        return True

    async def move_messages(self, source_arn: str, destination_arn: object) -> tuple[int, str]:
        """StartMessageMoveTask: the visible messages of a dead-letter queue go back to the queue each came from (or to
        DestinationArn), at once; (how many moved, the task's handle)."""
        source = self.by_arn.get(source_arn)
        if source is None:
            raise SqsError("ResourceNotFoundException", "ResourceNotFoundException",
                           "The resource that you specified for the SourceArn parameter doesn't exist.", 404)
        destination = None
        if destination_arn:
            destination = self.by_arn.get(str(destination_arn))
            if destination is None:
                raise SqsError("ResourceNotFoundException", "ResourceNotFoundException",
                               "The resource that you specified for the DestinationArn parameter doesn't exist.", 404)
        if not self.dead_letter_sources(source):
            raise errors.invalid_parameter("Source queue must be configured as a Dead Letter Queue.")
        now = time.time()
        source.promote(now)
        moved = 0
        for m in list(source.messages.values()):
            target = destination or self.by_arn.get(m.dlq_source or "")
            if target is None or m.state != READY_STATE or target.fifo != source.fifo:
                continue
            source.detach(m)
            m.dlq_source = None
            m.receives = 0
            m.first_receive = 0.0
            m.visible = now
            m.handle = ""
            system = m.system()
            self.store.move(m.seq, target.id, orjson.dumps(system) if system else None, 0, now)
            target.add(m, now)
            moved += 1
        handle = base64.urlsafe_b64encode(f"{source.arn}:{uuid.uuid4()}".encode()).decode()
        return moved, handle

    # ------------------------------------------------------------------ figures

    def stats(self) -> dict:
        writer = getattr(self.store, "writer", None)
        return {"queues": len(self.queues), "messages": sum(len(q.messages) for q in self.queues.values()),
                "in_flight": sum(q.n_inflight for q in self.queues.values()),
                "sent": self.sent, "received": self.received, "deleted": self.deleted_messages,
                "moved_to_dead_letter": self.moved_to_dlq,
                "durability": getattr(self.store, "durability", None),
                "commits": getattr(writer, "commits", None)}

    def describe(self, q: Queue) -> dict:
        """A queue's figures for `lamina queue ls`: depth, in flight, delayed, the oldest message's age."""
        now = time.time()
        q.promote(now)
        oldest = q.oldest_sent()
        return {"Name": q.name, "Arn": q.arn, "Fifo": q.fifo, "Messages": q.depth, "InFlight": q.n_inflight,
                "Delayed": q.n_delayed, "OldestAgeSeconds": round(now - oldest, 3) if oldest is not None else None,
                "DeadLetterTarget": q.redrive.target_arn if q.redrive else None}


def integer(value: object, name: str) -> int:
    """An integer parameter (the query protocol sends strings)."""
    if isinstance(value, bool):
        raise errors.invalid_value(name, value, "Must be an integer.")
    if isinstance(value, int):
        return value
    try:
        return int(str(value))
    except ValueError:
        raise errors.invalid_value(name, value, "Must be an integer.") from None


def _check_tags(tags: object, required: bool = False) -> dict[str, str]:
    if tags is None or tags == {}:
        if required:
            raise errors.missing_parameter("Tags")
        return {}
    if not isinstance(tags, dict):
        raise errors.invalid_parameter("Tags must be a map.")
    if len(tags) > MAX_TAGS:
        raise errors.invalid_parameter("Too many tags added for queue.")
    out = {}
    for key, value in tags.items():
        if not isinstance(key, str) or not 1 <= len(key) <= 128 or not isinstance(value, str) or len(value) > 256:
            raise errors.invalid_parameter(f"Tag {key} is invalid.")
        out[key] = value
    return out


def _resolve(f: asyncio.Future[None]) -> None:
    if not f.done():
        f.set_result(None)


def _raise_failed(result: object) -> None:
    if isinstance(result, BaseException):
        raise SqsError("InternalError", "InternalError", f"The change could not be stored: {result}", 500,
                       sender=False)


def _row(queue_id: int, m: Message) -> MessageRow:
    system = m.system()
    return MessageRow(m.seq, queue_id, m.id, m.body, orjson.dumps(m.attributes) if m.attributes else None,
                      orjson.dumps(system) if system else None, m.sent, m.visible)


def _message(r: MessageRow) -> Message:
    attributes = orjson.loads(r.attributes) if r.attributes else None
    system = orjson.loads(r.system) if r.system else {}
    m = Message(r.seq, r.id, r.body, attributes, md5_hex(r.body.encode()),
                attributes_md5(attributes) if attributes else None, r.sent, r.visible, r.receives, r.first_receive,
                group=system.get("group"), dedup=system.get("dedup"), trace=system.get("trace"),
                dlq_source=system.get("dlq"))
    m.size = len(r.body.encode()) + sum(len(k) + len(str(v)) for k, v in (attributes or {}).items())
    return m
