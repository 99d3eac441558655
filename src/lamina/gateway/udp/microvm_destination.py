"""MicroVM destinations: one MicroVM instance per tenant, packets to it, its replies back to the senders.

Each packet's tenant id is Arguments.TenantIdExpression (BREX) rendered with TenantIdFormatter (or the
fixed Arguments.TenantId). The registry maps tenant -> instance of the destination's Image:

- the first packet of a tenant starts its instance through the MicroVM manager (in-process RunMicrovm)
  with the destination's policy: maximumDurationInSeconds = MaxDuration, idlePolicy = {MaxIdle,
  MaxSuspended, AutoResume} (no idle policy without MaxIdle). The clientToken is
  `udp:<listener id>:<destination>:<tenant>:<generation>`, so a repeated start returns the same
  instance instead of a second one; the generation moves on only when that instance is gone. The
  runHookPayload (what the image's /run hook receives) is {"TenantId", "ListenerId", "Destination"};
- one start in flight per tenant: packets arriving meanwhile are held (at most MAX_HELD per tenant,
  MAX_HELD_BYTES per destination; beyond that dropped and counted, DroppedHeld), then delivered in order;
- a TERMINATED (expired, crashed, terminated) instance is replaced on the tenant's next packet; a
  SUSPENDED one is resumed first (manager.enter: AWS's auto-resume — packets held meanwhile) when
  AutoResume is on, otherwise its packets are dropped (DroppedSuspended) until someone resumes it;
- a start that fails (no such image, over the memory quota, the app did not come up) drops the held
  packets (DroppedStart) and the tenant's packets for a back-off (1 s doubling to 30 s), so a broken
  image cannot become a start storm;
- every delivered packet counts as the instance's inbound activity for its idle policy.

Delivery `udp` (default): each packet is a datagram to 127.0.0.1:<Port> inside the instance's own network
namespace, sent from a socket created in that namespace (Instance.open_datagram). Each sender (remote
address) gets its own such socket — a "flow" — so the app's reply datagrams, which go back to the
flow's socket, are known to be for that sender and are sent to it from the listener's socket (its
address and port, as NAT expects). Flows are bounded per tenant (MAX_FLOWS_PER_TENANT) and in all
(MAX_FLOWS), the least recently used one closed first, and expire after FLOW_IDLE_S without packets.
(On the process backend, without root, instances share the host's network: their apps cannot all bind
the same Port, so use that backend with one tenant at a time.)

Delivery `http`: the tenant's packets are POSTed to http://127.0.0.1:<Port>/ in the instance as
`{"Messages": [...]}` (the function destination's event, Batching.Count packets at most per POST, one
POST in flight per tenant, on a kept-alive connection); the app answers `{"Replies": [{"Tag", "Data"}]}`
and each reply goes to the sender of the packet with that Tag.

The hot path (a RUNNING instance, a known sender) is a BREX call, two dict lookups and one sendto:
no task, timer or log line per packet. Work that must wait (a start, a resume, a new flow's socket)
is one task per tenant at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

import orjson

from lamina.gateway.udp import brex, formatters
from lamina.gateway.udp.config import MAX_BATCH_COUNT, DestinationConfig, valid_tenant_id
from lamina.gateway.udp.destination import TAGS, Complaints, Destination, IsoClock, Packet, ReplyChannel, send_replies
from lamina.gateway.udp.metrics import DestinationMetrics
from lamina.microvm.errors import ApiError
from lamina.microvm.manager import ProxyRefused

log = logging.getLogger("lamina.udp")

MAX_TENANTS = 10_000
MAX_HELD = 1024                       # packets held per tenant while its instance starts or resumes
MAX_HELD_BYTES = 32 * 1024 * 1024     # ... and their bytes, per destination
MAX_FLOWS_PER_TENANT = 256
MAX_FLOWS = 8192                      # in-namespace sockets per destination (file descriptors)
FLOW_IDLE_S = 120.0
SWEEP_S = 5.0
START_WAIT_S = 120.0                  # how long a start or resume may take before its packets are dropped
MAX_STARTING = 8                      # instance starts in flight per destination (the rest wait their turn)
RETRY_MIN_S = 1.0
RETRY_MAX_S = 30.0
FLOW_BUFFER = 1024 * 1024
MAX_TOKEN = 128                       # RunMicrovm's clientToken length limit
HTTP_TIMEOUT_S = 30.0
MAX_RESPONSE = 64 * 1024 * 1024
DEAD = ("TERMINATING", "TERMINATED")


class MicrovmMetrics(DestinationMetrics):
    """A MicroVM destination's counters: DestinationMetrics' and the registry's."""

    __slots__ = ("delivered", "instances_started", "instances_replaced", "instances_resumed", "start_failures",
                 "dropped_held", "dropped_start", "dropped_suspended", "tenants", "flows", "flows_closed", "held")

    def __init__(self) -> None:
        super().__init__()
        self.delivered = 0             # packets sent to an instance (datagrams, or messages of POSTs)
        self.instances_started = 0     # instances this destination ran (first ones and replacements)
        self.instances_replaced = 0    # ... of which replaced a TERMINATED instance of the same tenant
        self.instances_resumed = 0     # SUSPENDED instances resumed by their tenant's packets
        self.start_failures = 0        # starts or resumes that failed (the reason is in the server log)
        self.dropped_held = 0          # packets over the hold bound while their instance was starting/resuming
        self.dropped_start = 0         # packets of a tenant whose instance could not be started (or in back-off)
        self.dropped_suspended = 0     # packets to a SUSPENDED instance without AutoResume
        self.tenants = 0               # a gauge: tenants known
        self.flows = 0                 # a gauge: sender sockets open in instances
        self.flows_closed = 0          # flows closed: idle, least recently used, or their instance ended
        self.held = 0                  # a gauge: packets held now

    def doc(self) -> dict[str, int]:
        out = super().doc()
        out.update({"Delivered": self.delivered, "InstancesStarted": self.instances_started,
                    "InstancesReplaced": self.instances_replaced, "InstancesResumed": self.instances_resumed,
                    "StartFailures": self.start_failures, "DroppedHeld": self.dropped_held,
                    "DroppedStart": self.dropped_start, "DroppedSuspended": self.dropped_suspended,
                    "Tenants": self.tenants, "Flows": self.flows, "FlowsClosed": self.flows_closed,
                    "Held": self.held})
        return out


class _Failed(Exception):
    """The tenant's instance cannot take packets now (the message says why)."""


class _Flow(asyncio.DatagramProtocol):
    """One sender's socket inside one instance: what the app sends back to it goes to that sender."""

    __slots__ = ("dest", "tenant", "sender", "transport", "last", "sendto")

    def __init__(self, dest: MicrovmDestination, tenant: _Tenant, sender: tuple) -> None:
        self.dest = dest
        self.tenant = tenant
        self.sender = sender
        self.transport: asyncio.DatagramTransport | None = None
        self.last = time.time()
        self.sendto: Callable[..., None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.sendto = transport.sendto  # type: ignore[attr-defined]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        m = self.dest.metrics
        if self.dest.channel.send(data, self.sender):
            m.replies += 1
            m.reply_bytes += len(data)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable: nothing listens on Port in the instance (yet, or any more).
        self.dest.metrics.errors += 1
        self.dest.complain(f"tenant {self.tenant.tenant!r}: sending to port {self.dest.config.port} in its instance "
                           f"failed: {exc} (does the image's app listen on UDP port {self.dest.config.port}?)")

    def connection_lost(self, exc: Exception | None) -> None:
        self.sendto = None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        self.sendto = None


class _Tenant:
    __slots__ = ("key", "tenant", "prefix", "gen", "mvm", "flows", "held", "held_bytes", "task", "retry_at",
                 "failures", "last", "conn")

    def __init__(self, key: object, tenant: str, prefix: str) -> None:
        self.key = key
        self.tenant = tenant
        self.prefix = prefix                       # clientToken without the generation
        self.gen: int | None = None
        self.mvm: Any = None                       # the manager's Microvm (None before the first start)
        self.flows: dict[tuple, _Flow] = {}
        self.held: list[Packet] = []
        self.held_bytes = 0
        self.task: asyncio.Task | None = None
        self.retry_at = 0.0
        self.failures = 0
        self.last = time.time()
        self.conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None   # http delivery


class MicrovmDestination(Destination):
    metrics: MicrovmMetrics

    def __init__(self, config: DestinationConfig, channel: ReplyChannel, manager: Any, listener_id: str) -> None:
        if manager is None:
            raise ValueError("this server has no MicroVM manager")
        self.config = config
        self.metrics = MicrovmMetrics()
        self.channel = channel
        self.manager = manager
        self.listener_id = listener_id
        self.loop = asyncio.get_running_loop()
        self.complain = Complaints(log, f"UDP destination {config.name} (MicroVM image {config.image})")
        self._tenants: dict[object, _Tenant] = {}
        self._by_instance: dict[str, _Tenant] = {}
        self._held_bytes = 0
        self._flow_count = 0
        self._closed = False
        self._terminate_on_close = True
        self._starts = asyncio.Semaphore(MAX_STARTING)
        self._http = config.delivery == "http"
        self._max_batch = config.batching.count or MAX_BATCH_COUNT
        self._encode = formatters.encoder(config.formatter)
        self._decode = formatters.decoder(config.formatter)
        self._clock = IsoClock()
        self._monotonic = time.monotonic
        if config.tenant_expression is not None:
            self._expr: Callable[[bytes], bytes] | None = brex.compile(config.tenant_expression)
            self._tenant_encode = formatters.encoder(config.tenant_formatter)
        else:
            self._expr = None
        self._policy = self._run_policy()
        manager.on_terminated.append(self._instance_terminated)
        self._sweeper = self.loop.call_later(SWEEP_S, self._sweep)

    def _run_policy(self) -> dict:
        c = self.config
        body: dict = {"imageIdentifier": c.image, "maximumDurationInSeconds": c.max_duration}
        if c.max_idle is not None:
            body["idlePolicy"] = {"maxIdleDurationSeconds": c.max_idle, "suspendedDurationSeconds": c.max_suspended,
                                  "autoResumeEnabled": c.auto_resume}
        return body

    # ------------------------------------------------------------------ packets in (the hot path)

    def deliver(self, packet: Packet) -> None:
        m = self.metrics
        data = packet[0]
        m.packets += 1
        m.bytes += len(data)
        if self._expr is not None:
            try:
                key: object = self._expr(data)
            except brex.BrexError:
                m.dropped_tenant += 1
                return
        else:
            key = None
        t = self._tenants.get(key)
        if t is not None and t.task is None and not self._http:
            flow = t.flows.get(packet[1])
            if flow is not None and t.mvm.doc["state"] == "RUNNING":
                sendto = flow.sendto
                if sendto is not None:
                    # Inbound activity for the idle policy (what manager.touch does, without the call).
                    t.mvm.last_activity = self._monotonic()
                    flow.last = packet[2]
                    sendto(data)
                    m.delivered += 1
                    return
        self._hold(key, t, packet)

    def _hold(self, key: object, t: _Tenant | None, packet: Packet) -> None:
        """Everything but the hot path: a new tenant, a start or resume under way, a new sender, http delivery."""
        m = self.metrics
        if self._closed:
            return
        if t is None:
            t = self._new_tenant(key)
            if t is None:
                return
        t.last = packet[2]
        if t.task is None:
            if t.retry_at and self.loop.time() < t.retry_at:
                m.dropped_start += 1
                return
            mvm = t.mvm
            if (mvm is not None and mvm.doc["state"] == "SUSPENDED"
                    and not (mvm.doc.get("idlePolicy") or {}).get("autoResumeEnabled")):
                m.dropped_suspended += 1
                return
        n = len(packet[0])
        if len(t.held) >= MAX_HELD or self._held_bytes + n > MAX_HELD_BYTES:
            m.dropped_held += 1
            return
        t.held.append(packet)
        t.held_bytes += n
        self._held_bytes += n
        m.held += 1
        if t.task is None:
            t.task = self.loop.create_task(self._work(t))

    def _new_tenant(self, key: object) -> _Tenant | None:
        m = self.metrics
        if key is None:
            tenant = self.config.tenant_id or "default"
        else:
            try:
                tenant = self._tenant_encode(key)  # type: ignore[arg-type]
            except ValueError:
                tenant = ""
            if not valid_tenant_id(tenant):
                m.dropped_tenant += 1
                return None
        if len(self._tenants) >= MAX_TENANTS:
            m.dropped_overload += 1
            return None
        t = self._tenants[key] = _Tenant(key, tenant, self._token_prefix(tenant))
        m.tenants = len(self._tenants)
        return t

    def _token_prefix(self, tenant: str) -> str:
        prefix = f"udp:{self.listener_id}:{self.config.name}:{tenant}:"
        if len(prefix) + 8 > MAX_TOKEN:
            digest = hashlib.sha256(tenant.encode()).hexdigest()[:32]
            prefix = f"udp:{self.listener_id}:{self.config.name}:h{digest}:"
        return prefix

    # ------------------------------------------------------------------ the tenant's worker

    async def _work(self, t: _Tenant) -> None:
        """Deliver the tenant's held packets, starting, replacing or resuming its instance first as needed."""
        try:
            attempts = 0
            while t.held and not self._closed:
                try:
                    mvm = await self._running(t)
                    if self._http:
                        await self._post_held(t, mvm)
                    else:
                        await self._send_held(t, mvm)
                    t.failures = 0
                    t.retry_at = 0.0
                    attempts = 0
                except (OSError, ConnectionError) as exc:
                    # The instance went away under us (its namespace, its app): once more, which replaces it.
                    attempts += 1
                    if attempts > 1:
                        raise _Failed(f"cannot reach its instance: {exc}") from None
        except _Failed as exc:
            self._give_up(t, str(exc))
        except asyncio.CancelledError:
            self._drop_held(t)
            raise
        except Exception as exc:
            log.exception("UDP destination %s: tenant %r failed", self.config.name, t.tenant)
            self._give_up(t, f"{type(exc).__name__}: {exc}")
        finally:
            t.task = None

    def _give_up(self, t: _Tenant, why: str) -> None:
        m = self.metrics
        m.start_failures += 1
        m.dropped_start += len(t.held)
        self._drop_held(t)
        t.failures += 1
        delay = min(RETRY_MAX_S, RETRY_MIN_S * 2 ** (t.failures - 1))
        t.retry_at = self.loop.time() + delay
        self.complain(f"tenant {t.tenant!r}: {why} (its packets are dropped for {delay:g} s, then it is tried again)")

    def _drop_held(self, t: _Tenant) -> None:
        self.metrics.held -= len(t.held)
        self._held_bytes -= t.held_bytes
        t.held = []
        t.held_bytes = 0

    def _take_held(self, t: _Tenant, limit: int | None = None) -> list[Packet]:
        batch = t.held if limit is None or len(t.held) <= limit else t.held[:limit]
        t.held = [] if batch is t.held else t.held[len(batch):]
        n = sum(len(p[0]) for p in batch)
        t.held_bytes -= n
        self._held_bytes -= n
        self.metrics.held -= len(batch)
        return batch

    def _put_back(self, t: _Tenant, packets: list[Packet]) -> None:
        n = sum(len(p[0]) for p in packets)
        t.held[:0] = packets
        t.held_bytes += n
        self._held_bytes += n
        self.metrics.held += len(packets)

    async def _running(self, t: _Tenant) -> Any:
        """The tenant's instance, RUNNING: started or replaced, held while PENDING, resumed if SUSPENDED."""
        m = self.metrics
        for attempt in range(2):
            mvm = t.mvm
            fresh = mvm is None or mvm.doc["state"] in DEAD
            if fresh:
                async with self._starts:
                    if mvm is not None:
                        self._forget_instance(t)
                    mvm = self._start(t)
                    try:
                        got = await self.manager.enter(mvm.microvm_id, START_WAIT_S)
                    except ProxyRefused as exc:
                        raise _Failed(f"its instance {mvm.microvm_id} did not start: {exc.message}") from None
            else:
                was = mvm.doc["state"]
                try:
                    got = await self.manager.enter(mvm.microvm_id, START_WAIT_S)
                except ProxyRefused as exc:
                    if mvm.doc["state"] in DEAD and attempt == 0:
                        continue    # it ended while we waited: replace it
                    raise _Failed(f"its instance {mvm.microvm_id} cannot take packets: {exc.message}") from None
                if was == "SUSPENDED":
                    m.instances_resumed += 1
            self.manager.leave(got)
            return got
        raise _Failed("its instance ended twice while starting")

    def _start(self, t: _Tenant) -> Any:
        """RunMicrovm for the tenant (idempotent through the clientToken); the manager's Microvm."""
        m = self.metrics
        manager = self.manager
        if t.gen is None:
            t.gen = self._last_generation(t.prefix)
        for _ in range(3):
            token = f"{t.prefix}{t.gen}"
            known = token in manager.by_token
            # The app's /run hook learns whose instance it is (an app may serve only that tenant).
            payload = orjson.dumps({"TenantId": t.tenant, "ListenerId": self.listener_id,
                                    "Destination": self.config.name}).decode()
            try:
                doc = manager.run({**self._policy, "clientToken": token, "runHookPayload": payload})
            except ApiError as exc:
                raise _Failed(f"RunMicrovm failed: {exc.code}: {exc.message}") from None
            if doc["state"] in DEAD:
                t.gen += 1          # that instance is gone: the next generation's token
                continue
            mvm = manager.instances[doc["microvmId"]]
            if not known:
                m.instances_started += 1
                if t.mvm is not None or t.gen > 0:
                    m.instances_replaced += 1
            t.mvm = mvm
            self._by_instance[mvm.microvm_id] = t
            return mvm
        raise _Failed("RunMicrovm kept returning terminated instances")

    def _last_generation(self, prefix: str) -> int:
        """The highest generation a token of this tenant has (0 if none): after a server restart its
        instances are TERMINATED and the next start takes the next number."""
        best = 0
        for token in self.manager.by_token:
            if token.startswith(prefix):
                rest = token[len(prefix):]
                if rest.isdigit():
                    best = max(best, int(rest))
        return best

    # ------------------------------------------------------------------ udp delivery

    async def _send_held(self, t: _Tenant, mvm: Any) -> None:
        m = self.metrics
        batch = self._take_held(t)
        for i, packet in enumerate(batch):
            flow = t.flows.get(packet[1])
            if flow is None or flow.sendto is None:
                try:
                    flow = await self._open_flow(t, mvm, packet[1])
                except BaseException:
                    self._put_back(t, batch[i:])
                    raise
                if mvm.doc["state"] != "RUNNING":
                    # Suspended or ended while the socket was made: the worker's next round handles it.
                    self._put_back(t, batch[i:])
                    return
            flow.last = packet[2]
            flow.sendto(packet[0])  # type: ignore[misc]
            m.delivered += 1
        mvm.last_activity = self._monotonic()

    async def _open_flow(self, t: _Tenant, mvm: Any, sender: tuple) -> _Flow:
        old = t.flows.pop(sender, None)
        if old is not None:
            self._close_flow(old)
        if len(t.flows) >= MAX_FLOWS_PER_TENANT:
            self._close_flow(t.flows.pop(min(t.flows, key=lambda a: t.flows[a].last)))
        if self._flow_count >= MAX_FLOWS:
            self._close_oldest_flow()
        handle = mvm.handle
        if handle is None or not hasattr(handle, "open_datagram"):
            raise _Failed("its instance has no datagram path (this MicroVM engine cannot take UDP)")
        sock = await handle.open_datagram(self.config.port)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, FLOW_BUFFER)
        flow = _Flow(self, t, sender)
        try:
            await self.loop.create_datagram_endpoint(lambda: flow, sock=sock)
        except BaseException:
            sock.close()
            raise
        if self._closed or t.mvm is not mvm:
            flow.close()
            raise ConnectionError("the instance changed while its socket was made")
        t.flows[sender] = flow
        self._flow_count += 1
        self.metrics.flows = self._flow_count
        return flow

    def _close_flow(self, flow: _Flow) -> None:
        flow.close()
        self._flow_count -= 1
        self.metrics.flows = self._flow_count
        self.metrics.flows_closed += 1

    def _close_oldest_flow(self) -> None:
        oldest: tuple[float, _Tenant, tuple] | None = None
        for t in self._tenants.values():
            for addr, flow in t.flows.items():
                if oldest is None or flow.last < oldest[0]:
                    oldest = (flow.last, t, addr)
        if oldest is not None:
            self._close_flow(oldest[1].flows.pop(oldest[2]))

    # ------------------------------------------------------------------ http delivery

    async def _post_held(self, t: _Tenant, mvm: Any) -> None:
        if self.config.batching.timeout_s > 0 and len(t.held) < self._max_batch:
            await asyncio.sleep(self.config.batching.timeout_s)   # the batching window, once per batch
        batch = self._take_held(t, self._max_batch)
        if not batch:
            return
        body = self._event(batch)
        if body is None:
            return
        mvm.last_activity = self._monotonic()
        try:
            status, answer = await asyncio.wait_for(self._post(t, mvm, body), HTTP_TIMEOUT_S)
        except (OSError, EOFError, ValueError, TimeoutError, asyncio.IncompleteReadError) as exc:
            self._close_conn(t)
            if mvm.doc["state"] in DEAD:
                self._put_back(t, batch)
                raise ConnectionError(str(exc)) from None
            self.metrics.errors += 1
            self.complain(f"tenant {t.tenant!r}: POST to port {self.config.port} of {mvm.microvm_id} failed: "
                          f"{type(exc).__name__}: {exc}")
            return
        self.metrics.delivered += len(batch)
        self.metrics.batches += 1
        if status != 200:
            self.metrics.errors += 1
            self.complain(f"tenant {t.tenant!r}: the app answered HTTP {status}: {answer[:200]!r}")
            return
        self.metrics.invocations_ok += 1
        self._replies(batch, answer)

    def _event(self, packets: list[Packet]) -> bytes | None:
        local = self.channel.local
        fmt = self.config.formatter
        enc = self._encode
        iso = self._clock
        messages = []
        for i, (data, addr, received) in enumerate(packets):
            try:
                text = enc(data)
            except ValueError:
                self.metrics.dropped_format += 1
                continue
            ip = addr[0]
            if ip.startswith("::ffff:") and "." in ip:
                ip = ip[7:]
            messages.append({"Tag": TAGS[i], "Remote": {"IpAddress": ip, "Port": addr[1]}, "Local": local,
                             "ReceivedAt": iso(received), "Formatter": fmt, "Data": text})
        return orjson.dumps({"Messages": messages}) if messages else None

    async def _post(self, t: _Tenant, mvm: Any, body: bytes) -> tuple[int, bytes]:
        if t.conn is None:
            t.conn = await mvm.handle.open_connection(self.config.port)
        reader, writer = t.conn
        writer.write(f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{self.config.port}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        await writer.drain()
        line = await reader.readline()
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            raise ValueError(f"not an HTTP response: {line[:80]!r}")
        status = int(parts[1])
        length: int | None = None
        chunked = close = False
        while True:
            header = await reader.readline()
            if header in (b"\r\n", b"\n", b""):
                break
            name, _, value = header.partition(b":")
            name = name.strip().lower()
            value = value.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value:
                chunked = True
            elif name == b"connection" and value == b"close":
                close = True
        if chunked:
            answer = b""
            while True:
                size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    await reader.readline()
                    break
                answer += await reader.readexactly(size)
                await reader.readexactly(2)
                if len(answer) > MAX_RESPONSE:
                    raise ValueError("response too large")
        elif length is not None:
            if length > MAX_RESPONSE:
                raise ValueError("response too large")
            answer = await reader.readexactly(length)
        else:
            answer = await reader.read(MAX_RESPONSE)
            close = True
        if close:
            self._close_conn(t)
        return status, answer

    def _close_conn(self, t: _Tenant) -> None:
        if t.conn is not None:
            t.conn[1].close()
            t.conn = None

    def _replies(self, packets: list[Packet], body: bytes) -> None:
        m = self.metrics
        if not body.strip():
            return
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            m.errors += 1
            self.complain(f"the app's answer is not JSON: {body[:200]!r}")
            return
        replies = doc.get("Replies") if isinstance(doc, dict) else None
        if not isinstance(replies, list):
            return
        send_replies(replies, packets, self._decode, self.channel, m)

    # ------------------------------------------------------------------ housekeeping

    def _instance_terminated(self, microvm_id: str) -> None:
        """The manager's callback: an instance ended; its sockets go (the next packet replaces it)."""
        t = self._by_instance.get(microvm_id)
        if t is not None and t.mvm is not None and t.mvm.microvm_id == microvm_id:
            self._close_flows(t)

    def _forget_instance(self, t: _Tenant) -> None:
        if t.mvm is not None:
            self._by_instance.pop(t.mvm.microvm_id, None)
        self._close_flows(t)

    def _close_flows(self, t: _Tenant) -> None:
        for flow in t.flows.values():
            self._close_flow(flow)
        t.flows.clear()
        self._close_conn(t)

    def _sweep(self) -> None:
        """Every SWEEP_S: close idle flows; forget idle tenants whose instance has ended."""
        if self._closed:
            return
        try:
            cutoff = time.time() - FLOW_IDLE_S
            for key, t in list(self._tenants.items()):
                for addr in [a for a, f in t.flows.items() if f.last < cutoff]:
                    self._close_flow(t.flows.pop(addr))
                ended = t.mvm is None or t.mvm.doc["state"] == "TERMINATED"
                if ended and t.task is None and not t.flows and t.last < cutoff:
                    self._forget_instance(t)
                    del self._tenants[key]
            self.metrics.tenants = len(self._tenants)
        finally:
            self._sweeper = self.loop.call_later(SWEEP_S, self._sweep)

    def instance_of(self, tenant: str) -> str | None:
        """The id of the tenant's current instance (for `lamina udp` and tests), or None."""
        for t in self._tenants.values():
            if t.tenant == tenant and t.mvm is not None:
                return t.mvm.microvm_id
        return None

    def doc(self) -> dict:
        # Instances: tenant -> its live instance, for the first 100 tenants (the document stays small).
        out = super().doc()
        out["Instances"] = {t.tenant: t.mvm.microvm_id for t in list(self._tenants.values())[:100]
                            if t.mvm is not None and t.mvm.doc["state"] not in DEAD}
        return out

    def server_stopping(self) -> None:
        self._terminate_on_close = False     # the MicroVM manager terminates every instance itself

    def close(self) -> None:
        """Stop taking packets; close every socket; terminate the tenants' instances (the listener is gone,
        and nobody else can reach them) unless the server is stopping."""
        if self._closed:
            return
        self._closed = True
        self._sweeper.cancel()
        with contextlib.suppress(ValueError):
            self.manager.on_terminated.remove(self._instance_terminated)
        for t in self._tenants.values():
            if t.task is not None:
                t.task.cancel()
            self._close_flows(t)
            self._drop_held(t)
            if self._terminate_on_close and t.mvm is not None and t.mvm.doc["state"] not in DEAD:
                _spawn(self.manager.terminate(t.mvm.microvm_id, f"Its UDP listener's destination {self.config.name} "
                                              "was removed."))


_background: set[asyncio.Task] = set()


def _spawn(coro: Any) -> None:
    async def quietly() -> None:
        with contextlib.suppress(Exception):
            await coro

    task = asyncio.get_running_loop().create_task(quietly())
    _background.add(task)
    task.add_done_callback(_background.discard)
