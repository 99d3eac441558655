"""One queue in memory: its messages and who can receive what, when (SQS's semantics; the store keeps it durable).

Standard queue: visible messages wait in `ready` (send order, a message whose visibility ran out goes first);
delayed and in-flight ones in the `timed` heap until their time comes. FIFO queue: each message group is a
deque in send order; a group gives out messages from its head, and none while one of its messages is in flight
(strict order per group); groups take turns.

Everything runs on the event loop. Removals from `ready` and `timed` are lazy: an entry whose message is gone, or
has moved on (another receive, another visibility change), is skipped when it comes up.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import time
from collections import deque
from collections.abc import Callable

from lamina.queues import attributes as attrs
from lamina.queues import errors
from lamina.queues.message import DELAYED, INFLIGHT, READY, Message, new_handle
from lamina.store.messages import MessageStore, QueueRow

DEDUP_WINDOW_S = 300.0
MAX_INFLIGHT = 120_000
MAX_INFLIGHT_FIFO = 120_000


class Attempt:
    """A FIFO receive made with a ReceiveRequestAttemptId: what it returned, as (message, receives, visible) each."""

    __slots__ = ("expires", "taken")

    def __init__(self, expires: float, messages: list[Message]) -> None:
        self.expires = expires
        self.taken = [(m, m.receives, m.visible) for m in messages]


class Queue:
    def __init__(self, row: QueueRow, region: str, store: MessageStore) -> None:
        self.id = row.id
        self.account = row.account
        self.name = row.name
        self.fifo = row.name.endswith(".fifo")
        self.attributes = dict(row.attributes)      # as set (defaults are applied when read)
        self.tags = dict(row.tags)
        self.created = row.created
        self.modified = row.modified
        self.purged = row.purged
        self.arn = f"arn:aws:sqs:{region}:{row.account}:{row.name}"
        self.store = store
        self.messages: dict[int, Message] = {}
        self.ready: deque[Message] = deque()            # standard queues
        self.groups: dict[str, deque[Message]] = {}     # FIFO queues
        self.group_busy: dict[str, int] = {}            # FIFO: in-flight messages per group
        self.timed: list[tuple[float, int, int]] = []   # (visible at, seq, receives) of delayed and in-flight ones
        self.n_inflight = 0
        self.n_delayed = 0
        self.dedup: dict[str, tuple[float, str, int]] = {}   # FIFO: dedup key -> (expires, message id, seq)
        self.attempts: dict[str, Attempt] = {}   # FIFO: ReceiveRequestAttemptId -> what that receive returned
        self.waiters: deque[asyncio.Future[None]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        # Where redrive sends a message (set by the service): returns False when the dead-letter queue is gone.
        self.redrive_to: Callable[[Queue, Message], bool] | None = None
        self.configure()

    # ------------------------------------------------------------------ settings

    def setting(self, name: str) -> str:
        value = self.attributes.get(name)
        if value is None:
            value = attrs.FIFO_DEFAULTS.get(name) if self.fifo else None
            value = value if value is not None else attrs.DEFAULTS.get(name, "")
        return value

    def configure(self) -> None:
        """Cache the settings the hot paths read."""
        self.visibility_timeout = int(self.setting("VisibilityTimeout"))
        self.delay = int(self.setting("DelaySeconds"))
        self.retention = int(self.setting("MessageRetentionPeriod"))
        self.max_size = int(self.setting("MaximumMessageSize"))
        self.wait_default = int(self.setting("ReceiveMessageWaitTimeSeconds"))
        self.content_dedup = self.setting("ContentBasedDeduplication") == "true"
        self.group_scope = self.setting("DeduplicationScope") == "messageGroup"
        policy = self.attributes.get("RedrivePolicy")
        self.redrive = attrs.parse_redrive(policy) if policy else None

    def row(self) -> QueueRow:
        return QueueRow(self.id, self.account, self.name, self.attributes, self.tags, self.created, self.modified,
                        self.purged)

    # ------------------------------------------------------------------ counts

    @property
    def depth(self) -> int:
        """ApproximateNumberOfMessages: visible now."""
        return len(self.messages) - self.n_inflight - self.n_delayed

    def oldest_sent(self) -> float | None:
        return next(iter(self.messages.values())).sent if self.messages else None

    # ------------------------------------------------------------------ adding

    def add(self, m: Message, now: float) -> None:
        """A committed message joins the queue (or a message moved here from its source queue)."""
        self.messages[m.seq] = m
        if self.fifo:
            group = m.group or ""
            dq = self.groups.get(group)
            if dq is None:
                dq = self.groups[group] = deque()
            dq.append(m)
        if m.visible > now:
            m.state = INFLIGHT if m.receives else DELAYED   # (loaded after a restart: still in flight)
            if m.state == INFLIGHT:
                self.n_inflight += 1
                if self.fifo:
                    self.group_busy[m.group or ""] = self.group_busy.get(m.group or "", 0) + 1
            else:
                self.n_delayed += 1
            heapq.heappush(self.timed, (m.visible, m.seq, m.receives))
            self._arm()
        else:
            m.state = READY
            if not self.fifo:
                self.ready.append(m)
            self.wake()

    # ------------------------------------------------------------------ receiving

    def promote(self, now: float) -> None:
        """Delayed and in-flight messages whose time has come become visible."""
        heap = self.timed
        while heap and heap[0][0] <= now:
            visible, seq, receives = heapq.heappop(heap)
            m = self.messages.get(seq)
            if m is None or m.state == READY or m.visible != visible or m.receives != receives:
                continue
            self._make_ready(m, retry=m.state == INFLIGHT)

    def _make_ready(self, m: Message, retry: bool) -> None:
        if m.state == INFLIGHT:
            self.n_inflight -= 1
            if self.fifo:
                self._group_done(m.group or "")
        elif m.state == DELAYED:
            self.n_delayed -= 1
        m.state = READY
        if not self.fifo:
            if retry:
                self.ready.appendleft(m)   # an expired receive goes first: the oldest work
            else:
                self.ready.append(m)

    def _group_done(self, group: str) -> None:
        left = self.group_busy.get(group, 1) - 1
        if left > 0:
            self.group_busy[group] = left
        else:
            self.group_busy.pop(group, None)

    def take(self, n: int, visibility: int, now: float) -> list[Message]:
        """Receive up to n visible messages, in flight for `visibility` seconds from now."""
        self.promote(now)
        if self.n_inflight >= (MAX_INFLIGHT_FIFO if self.fifo else MAX_INFLIGHT):
            raise errors.over_limit(f"Too many messages in flight on {self.name}: the limit is "
                                    f"{MAX_INFLIGHT_FIFO if self.fifo else MAX_INFLIGHT}.")
        out: list[Message] = []
        expiry = now - self.retention
        redrive = self.redrive
        if not self.fifo:
            ready = self.ready
            messages = self.messages
            while ready and len(out) < n:
                m = ready.popleft()
                if m.state != READY or messages.get(m.seq) is not m:
                    continue
                if m.sent <= expiry:
                    self._remove(m)
                    continue
                if redrive is not None and m.receives >= redrive.max_receive_count and self._redrive(m):
                    continue
                self._deliver(m, visibility, now)
                out.append(m)
            return out
        for group in list(self.groups):
            if len(out) >= n:
                break
            if self.group_busy.get(group):
                continue
            dq = self.groups.get(group)
            took = False
            i = 0
            while dq and i < len(dq) and len(out) < n:
                m = dq[i]
                if m.state != READY:
                    break
                if m.sent <= expiry:
                    self._remove(m)
                    continue
                if redrive is not None and m.receives >= redrive.max_receive_count and self._redrive(m):
                    continue
                self._deliver(m, visibility, now)
                out.append(m)
                took = True
                i += 1
            if took and group in self.groups:
                self.groups[group] = self.groups.pop(group)   # groups take turns
        return out

    def _deliver(self, m: Message, visibility: int, now: float) -> None:
        m.receives += 1
        if not m.first_receive:
            m.first_receive = now
        m.visible = now + visibility
        m.state = INFLIGHT
        self.n_inflight += 1
        if self.fifo:
            group = m.group or ""
            self.group_busy[group] = self.group_busy.get(group, 0) + 1
        heapq.heappush(self.timed, (m.visible, m.seq, m.receives))
        m.handle = new_handle(self.id, m.seq, m.receives)
        self.store.update_visibility(m.seq, m.visible, m.receives, m.first_receive)

    def retake(self, attempt_id: str, visibility: int, now: float) -> list[Message] | None:
        """A receive retried with the ReceiveRequestAttemptId of an earlier one (FIFO, within 5 minutes): the same
        messages with the same receipt handles, in flight for `visibility` from now again, if none of them was deleted,
        received again or had its visibility changed since; None otherwise (the retry is a new receive)."""
        attempt = self.attempts.get(attempt_id)
        if attempt is None:
            return None
        if attempt.expires < now or any(self.messages.get(m.seq) is not m or m.receives != receives
                                         or m.visible != visible for m, receives, visible in attempt.taken):
            del self.attempts[attempt_id]
            return None
        self.promote(now)
        out = []
        for m, _, _ in attempt.taken:
            if m.state != INFLIGHT:   # its visibility ran out: in flight again, without a new receive
                m.state = INFLIGHT
                self.n_inflight += 1
                group = m.group or ""
                self.group_busy[group] = self.group_busy.get(group, 0) + 1
            m.visible = now + visibility
            heapq.heappush(self.timed, (m.visible, m.seq, m.receives))
            self.store.update_visibility(m.seq, m.visible, m.receives, m.first_receive)
            out.append(m)
        attempt.taken = [(m, m.receives, m.visible) for m in out]
        return out

    def remember(self, attempt_id: str, messages: list[Message], now: float) -> None:
        self.attempts[attempt_id] = Attempt(now + DEDUP_WINDOW_S, messages)

    def _redrive(self, m: Message) -> bool:
        """Past maxReceiveCount: to the dead-letter queue (True), unless it is gone."""
        if self.redrive_to is None:
            return False
        return self.redrive_to(self, m)

    # ------------------------------------------------------------------ handles

    def find(self, seq: int, receives: int) -> Message | None:
        """The message a receipt handle names, if it is still here and the handle is its latest."""
        m = self.messages.get(seq)
        if m is None or m.receives != receives:
            return None
        return m

    def delete(self, m: Message) -> None:
        self._remove(m)

    def change_visibility(self, m: Message, timeout: int, now: float) -> None:
        if m.state != INFLIGHT:
            raise errors.not_inflight()
        m.visible = now + timeout
        self.store.update_visibility(m.seq, m.visible, m.receives, m.first_receive)
        if timeout == 0:
            self._make_ready(m, retry=True)
            self.wake()
        else:
            heapq.heappush(self.timed, (m.visible, m.seq, m.receives))
            self._arm()

    def release(self, m: Message, now: float, uncount: bool) -> None:
        """Back to visible now (an event source mapping that could not invoke the function); with uncount, the
        receive does not count (ApproximateReceiveCount, maxReceiveCount)."""
        if m.state != INFLIGHT or self.messages.get(m.seq) is not m:
            return
        if uncount and m.receives > 0:
            m.receives -= 1
            if m.receives == 0:
                m.first_receive = 0.0
        m.visible = now
        self.store.update_visibility(m.seq, m.visible, m.receives, m.first_receive)
        self._make_ready(m, retry=True)
        self.wake()

    # ------------------------------------------------------------------ removing

    def _remove(self, m: Message, store: bool = True) -> None:
        """The message leaves the queue (deleted, expired, moved, purged)."""
        if self.messages.pop(m.seq, None) is None:
            return
        if m.state == INFLIGHT:
            self.n_inflight -= 1
            if self.fifo:
                self._group_done(m.group or "")
        elif m.state == DELAYED:
            self.n_delayed -= 1
        if self.fifo:
            group = m.group or ""
            dq = self.groups.get(group)
            if dq is not None:
                if dq and dq[0] is m:
                    dq.popleft()
                else:
                    with contextlib.suppress(ValueError):
                        dq.remove(m)
                if not dq:
                    del self.groups[group]
            if m.state == INFLIGHT:
                self.wake()   # its group may be free now
        m.state = READY
        if store:
            self.store.delete(m.seq)

    def detach(self, m: Message) -> None:
        """Out of this queue without touching the store (it moves to another queue)."""
        self._remove(m, store=False)

    def expire(self, now: float) -> int:
        """Drop messages past the retention period (any state); returns how many."""
        cutoff = now - self.retention
        old = [m for m in self.messages.values() if m.sent <= cutoff]
        for m in old:
            self._remove(m)
        for key in [k for k, v in self.dedup.items() if v[0] < now]:
            del self.dedup[key]
        for key in [k for k, a in self.attempts.items() if a.expires < now]:
            del self.attempts[key]
        return len(old)

    def clear(self, now: float) -> int:
        """PurgeQueue: every message goes; returns the highest seq removed (the store removes up to it)."""
        top = max(self.messages, default=0)
        for m in self.messages.values():
            m.state = READY
        self.messages.clear()
        self.ready.clear()
        self.groups.clear()
        self.group_busy.clear()
        self.timed.clear()
        self.n_inflight = self.n_delayed = 0
        self.purged = now
        return top

    # ------------------------------------------------------------------ waiting (long polls, event source mappings)

    def wake(self) -> None:
        n = self.depth
        waiters = self.waiters
        while waiters and n > 0:
            f = waiters.popleft()
            if not f.done():
                f.set_result(None)
                n -= 1

    def wait(self) -> asyncio.Future[None]:
        """A future done when messages may have become visible (the caller tries again and waits again)."""
        f: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(f)
        self._arm()
        return f

    def _arm(self) -> None:
        """A timer for the next delayed or in-flight message, while someone waits."""
        if not self.timed or not self.waiters:
            return
        at = self.timed[0][0]
        if self._timer is not None:
            if self._timer_at <= at:
                return
            self._timer.cancel()
        self._timer_at = at
        self._timer = asyncio.get_running_loop().call_later(max(0.0, at - time.time()), self._fire)

    def _fire(self) -> None:
        self._timer = None
        now = time.time()
        self.promote(now)
        if self.depth:
            self.wake()
        self._arm()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self.waiters:
            f = self.waiters.popleft()
            if not f.done():
                f.set_result(None)
