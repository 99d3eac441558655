"""Function destinations: packets in batches to a Lambda function, replies back to their senders.

A batch closes at `Batching.Count` packets, `SizeInMb` payload bytes or `TimeoutInSeconds` after its
first packet, whichever comes first; without a window it closes at the end of the event-loop tick,
so the datagrams that arrived together still go together. One timer per batch, never per packet.
The batch becomes one invocation with the event

    {"Messages": [{"Tag": "0", "Remote": {"IpAddress": "192.0.2.7", "Port": 5353},
                   "Local": {"Domain": "127.0.0.1", "Port": 2141},
                   "ReceivedAt": "2026-03-11T14:23:01.412Z", "Formatter": "base64", "Data": "aGk="}, ...]}

(Tags are the packet's index in its batch: short, unique within the batch), run in-process through
the dispatcher as a RequestResponse invoke (no HTTP). The function answers
`{"Replies": [{"Tag": "0", "Data": "..."}]}`; each reply's Data, decoded with the destination's
Formatter, goes from the listener's own socket to the sender of the packet with that Tag. Replies
with unknown Tags are counted and ignored; a function without replies returns `{"Replies": []}`,
`{}` or null.

Tenancy: with Arguments.TenantId every invocation carries that tenant id; with TenantIdExpression
(BREX) + TenantIdFormatter each packet's tenant id is computed and batches are split per tenant,
so a PER_TENANT function's environment only ever sees its own tenant's packets. A packet whose
expression fails, or whose result is not a valid tenant id, is dropped and counted.

Failures never stop the gateway: function errors, timeouts, throttles and a missing or not yet
active function are counted and logged (rate-limited). At most MaxInFlightBatches invocations run
at once and as many closed batches (at least MIN_WAITING) wait; beyond that batches are dropped and counted
(DroppedOverload), so a slow function costs packets, never unbounded memory.

The `function-async` sink is this class with asynchronous=True: Event invocations (1 MB payload
limit) through the durable async queue (a batch counts as done once it is committed there), no replies.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from functools import partial

import orjson

from lamina.dispatch.invocation import Invocation, InvokeResult, Throttled
from lamina.functions.async_queue import no_sink
from lamina.functions.errors import AwsError
from lamina.functions.invoke import ASYNC_LIMIT, SYNC_LIMIT, check_tenant, ensure_invokable, event_for
from lamina.functions.registry import Function, FunctionService
from lamina.gateway.udp import brex, formatters
from lamina.gateway.udp.config import MAX_BATCH_COUNT, DestinationConfig, valid_tenant_id
from lamina.gateway.udp.destination import TAGS, Complaints, Destination, IsoClock, Packet, ReplyChannel, send_replies
from lamina.gateway.udp.metrics import DestinationMetrics

log = logging.getLogger("lamina.udp")

MIB = 1024 * 1024
# The event's bytes per message besides Data (Tag, Remote, Local, ReceivedAt, Formatter, punctuation)
# — an upper bound, used to keep a batch under Lambda's payload limit.
ENVELOPE_BYTES = 224
# How much Data grows when formatted into a JSON string: base64 4/3, hex 2, and for text a control
# character can become a six-byte \u00XX escape.
GROWTH = {"base64": 4 / 3 + 0.01, "hex": 2.0, "ascii": 6.0, "utf8": 6.0}
# Open (not yet closed) batches per destination: one per tenant seen in the current window.
MAX_OPEN_BATCHES = 4096
# Closed batches that may wait for a free invocation slot: MaxInFlightBatches, but at least this many.
MIN_WAITING = 4


class _Batch:
    __slots__ = ("packets", "size", "tenant", "key", "timer", "closed")

    def __init__(self, tenant: str | None, key: object) -> None:
        self.packets: list[Packet] = []
        self.size = 0
        self.tenant = tenant
        self.key = key                     # the tenant expression's raw bytes (None: the destination's one batch)
        self.timer: asyncio.Handle | None = None
        self.closed = False


class FunctionDestination(Destination):
    def __init__(self, config: DestinationConfig, channel: ReplyChannel, functions: FunctionService,
                 *, asynchronous: bool = False) -> None:
        if config.function is None:
            raise ValueError("a function destination needs a Function")
        self.config = config
        self.function = config.function
        self.metrics = DestinationMetrics()
        self.channel = channel
        self.functions = functions
        self.dispatcher = functions.dispatcher
        self.asynchronous = asynchronous
        self.loop = asyncio.get_running_loop()
        batching = config.batching
        self.max_count = batching.count or MAX_BATCH_COUNT
        self.timeout_s = batching.timeout_s
        limit = (ASYNC_LIMIT if asynchronous else SYNC_LIMIT) - 1024
        self.max_bytes = min(int(batching.size_mb * MIB), limit) if batching.size_mb else limit
        self.event_limit = limit
        self.growth = GROWTH[config.formatter]
        self.max_in_flight = config.max_in_flight
        self.max_waiting = max(MIN_WAITING, config.max_in_flight)
        self._waiting: deque[_Batch] = deque()
        self._batch: _Batch | None = None
        self._tenant_batches: dict[object, _Batch] = {}
        self._encode = formatters.encoder(config.formatter)
        self._decode = formatters.decoder(config.formatter)
        self._exact_encoding = config.formatter in ("base64", "hex")   # every byte string has an encoding
        # An IPv6 socket sees IPv4 clients as ::ffff:a.b.c.d; the event shows them as a.b.c.d.
        self._dual_stack = getattr(channel, "ipv6", False)
        self._clock = IsoClock()
        self._closed = False
        self.complain = Complaints(log, f"UDP destination {config.name} (function {config.function})")
        if config.tenant_expression is not None:
            self._expr = brex.compile(config.tenant_expression)
            self._tenant_encode = formatters.encoder(config.tenant_formatter)
            self.deliver = self._deliver_per_tenant  # type: ignore[method-assign]

    # ------------------------------------------------------------------ packets in (the hot path)

    def deliver(self, packet: Packet) -> None:
        m = self.metrics
        n = len(packet[0])
        m.packets += 1
        m.bytes += n
        batch = self._batch
        if batch is None:
            batch = self._batch = self._open(self.config.tenant_id, None)
        self._add(batch, packet, n)

    def _deliver_per_tenant(self, packet: Packet) -> None:
        m = self.metrics
        n = len(packet[0])
        m.packets += 1
        m.bytes += n
        try:
            key = self._expr(packet[0])
        except brex.BrexError:
            m.dropped_tenant += 1
            return
        batch = self._tenant_batches.get(key)
        if batch is None:
            try:
                tenant = self._tenant_encode(key)
            except ValueError:
                tenant = ""
            if not valid_tenant_id(tenant):
                m.dropped_tenant += 1
                return
            if len(self._tenant_batches) >= MAX_OPEN_BATCHES:
                m.dropped_overload += 1
                return
            batch = self._tenant_batches[key] = self._open(tenant, key)
        self._add(batch, packet, n)

    def _add(self, batch: _Batch, packet: Packet, n: int) -> None:
        packets = batch.packets
        packets.append(packet)
        batch.size += n
        count = len(packets)
        if (count >= self.max_count or batch.size >= self.max_bytes
                or batch.size * self.growth + count * ENVELOPE_BYTES >= self.event_limit):
            self._close_batch(batch)

    def _open(self, tenant: str | None, key: object) -> _Batch:
        batch = _Batch(tenant, key)
        if self.timeout_s > 0:
            batch.timer = self.loop.call_later(self.timeout_s, self._close_batch, batch)
        else:
            # No window: what arrives in this loop tick (uvloop reads a burst of datagrams per wakeup) goes together.
            batch.timer = self.loop.call_soon(self._close_batch, batch)
        return batch

    # ------------------------------------------------------------------ batches out

    def _close_batch(self, batch: _Batch) -> None:
        if batch.closed:
            return
        batch.closed = True
        if batch.timer is not None:
            batch.timer.cancel()
            batch.timer = None
        if batch.key is None:
            if self._batch is batch:
                self._batch = None
        elif self._tenant_batches.get(batch.key) is batch:
            del self._tenant_batches[batch.key]
        if self._closed:
            return
        if self.metrics.in_flight < self.max_in_flight:
            self._start(batch)
        elif len(self._waiting) < self.max_waiting:
            self._waiting.append(batch)
        else:
            self.metrics.dropped_overload += len(batch.packets)

    def _start(self, batch: _Batch) -> None:
        m = self.metrics
        payload = self._event(batch.packets)
        if payload is None:
            return      # every packet was dropped (the Formatter could not express it)
        m.batches += 1
        try:
            target, arn = self._resolve(batch.tenant)
            if self.asynchronous:
                future = self._queue(payload, batch.tenant)
            else:
                # keep_log: nobody reads a batch invocation's log tail (X-Amz-Log-Result), so it is not collected.
                inv = Invocation(str(uuid.uuid4()), payload, arn, tenant_id=batch.tenant, keep_log=False)
                inv.future = future = self.loop.create_future()
                self.dispatcher.submit(target.key, inv)
        except Throttled as exc:
            m.throttles += 1
            self.complain(f"throttled ({exc.reason}): {exc.message}")
            return
        except AwsError as exc:
            m.errors += 1
            self.complain(f"cannot invoke: {exc.code}: {exc.message}")
            return
        m.in_flight += 1
        future.add_done_callback(partial(self._done, batch))

    def _queue(self, payload: bytes, tenant: str | None) -> asyncio.Future:
        """function-async: the batch as an Event invoke into the durable async queue (retries, destinations and
        DLQ as configured for the function); the future is done once the event is committed."""
        sink = self.functions.event_sink
        if sink is None:
            raise no_sink()
        future = self.loop.create_future()

        def accepted(error: BaseException | None) -> None:
            if future.done():
                return
            if error is None:
                future.set_result(InvokeResult(b""))
            else:
                future.set_exception(error)
        sink.accept(event_for(self.functions, self.config.function or "", payload, tenant), accepted)
        return future

    def _resolve(self, tenant: str | None) -> tuple[Function, str]:
        """The version to run and the ARN the function sees as invoked (checked per batch: the function
        may be created, updated or deleted while the listener lives)."""
        fn, qualifier = self.functions.target(self.function)
        target = self.functions.pick(fn, qualifier)
        try:
            check_tenant(target, tenant)
        except AwsError as exc:
            hint = ("give the destination Arguments.TenantId or TenantIdExpression" if tenant is None
                    else "remove TenantId/TenantIdExpression from the destination")
            raise AwsError(exc.code, f"{exc.message} ({hint})") from None
        ensure_invokable(target, self.dispatcher)
        return target, fn.config["FunctionArn"] + (f":{qualifier}" if qualifier else "")

    def _event(self, packets: list[Packet]) -> bytes | None:
        local = self.channel.local
        fmt = self.config.formatter
        enc = self._encode
        iso = self._clock
        tags = TAGS
        if self._exact_encoding and not self._dual_stack:
            messages = [{"Tag": tags[i], "Remote": {"IpAddress": addr[0], "Port": addr[1]}, "Local": local,
                         "ReceivedAt": iso(t), "Formatter": fmt, "Data": enc(data)}
                        for i, (data, addr, t) in enumerate(packets)]
        else:
            messages = []
            for i, (data, addr, t) in enumerate(packets):
                try:
                    text = enc(data)
                except ValueError:
                    self.metrics.dropped_format += 1
                    continue
                ip = addr[0]
                if self._dual_stack and ip.startswith("::ffff:") and "." in ip:
                    ip = ip[7:]    # an IPv4 client of an IPv6 socket: show the address it has
                messages.append({"Tag": tags[i], "Remote": {"IpAddress": ip, "Port": addr[1]}, "Local": local,
                                 "ReceivedAt": iso(t), "Formatter": fmt, "Data": text})
            if not messages:
                return None
        return orjson.dumps({"Messages": messages})

    def _done(self, batch: _Batch, future: asyncio.Future) -> None:
        m = self.metrics
        try:
            if future.cancelled():
                m.errors += 1
                return
            exc = future.exception()
            if isinstance(exc, Throttled):
                m.throttles += 1
                self.complain(f"throttled ({exc.reason}): {exc.message}")
                return
            if exc is not None:
                m.errors += 1
                self.complain(f"invocation failed: {type(exc).__name__}: {exc}")
                return
            result: InvokeResult = future.result()
            if result.error_type is not None:
                m.errors += 1
                self.complain(f"function error {result.error_type}: {result.body[:300].decode(errors='replace')}")
                return
            m.invocations_ok += 1
            if not self.asynchronous:
                self._replies(batch.packets, result.body)
        finally:
            self._finished()

    def _finished(self) -> None:
        self.metrics.in_flight -= 1
        # A batch that fails at once (throttled, no such function) returns from _start without taking a
        # slot, so this loop, not recursion, moves on to the next waiting batch.
        while self._waiting and self.metrics.in_flight < self.max_in_flight and not self._closed:
            self._start(self._waiting.popleft())

    def _replies(self, packets: list[Packet], body: bytes) -> None:
        m = self.metrics
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            m.errors += 1
            self.complain(f"the function's result is not JSON: {body[:200]!r}")
            return
        if doc is None:
            return
        replies = doc.get("Replies") if isinstance(doc, dict) else False
        if replies is None:
            return
        if not isinstance(replies, list):
            m.errors += 1
            self.complain("the function's result is not {\"Replies\": [{\"Tag\": ..., \"Data\": ...}, ...]}: "
                          f"{body[:200]!r}")
            return
        send_replies(replies, packets, self._decode, self.channel, m, self.complain)

    def close(self) -> None:
        self._closed = True
        for batch in [b for b in (self._batch, *self._tenant_batches.values()) if b is not None]:
            batch.closed = True
            if batch.timer is not None:
                batch.timer.cancel()
        self._batch = None
        self._tenant_batches.clear()
        self._waiting.clear()
