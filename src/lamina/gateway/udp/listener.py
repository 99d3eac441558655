"""A UDP listener: one socket on the server's event loop (uvloop), its client restrictions and destinations.

Each datagram is counted, checked against the allow-list (a cached dict lookup; skipped when everyone
is allowed), stamped with its arrival time and handed to every destination. Replies from the
destinations go out of this same socket, so they come from the address and port the client sent to
(what NAT and firewalls expect).

asyncio datagram transports have no write backpressure, so a reply is dropped and counted
(DroppedSend) while more than SEND_BUFFER_LIMIT bytes wait in the transport's buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import time

from lamina.functions.registry import FunctionService
from lamina.gateway.udp.config import DestinationConfig, ListenerConfig
from lamina.gateway.udp.destination import Destination
from lamina.gateway.udp.function_destination import FunctionDestination
from lamina.gateway.udp.metrics import ListenerMetrics
from lamina.gateway.udp.microvm_destination import MicrovmDestination
from lamina.gateway.udp.restrictions import AllowList
from lamina.gateway.udp.sinks import LogSink

log = logging.getLogger("lamina.udp")

SEND_BUFFER_LIMIT = 4 * 1024 * 1024
# Bursts arrive faster than one loop iteration reads them; a larger kernel buffer rides them out
# (capped by net.core.rmem_max unless root).
SOCKET_BUFFER = 8 * 1024 * 1024


class BindError(Exception):
    """The listener's address cannot be bound; `in_use` says whether the port is taken."""

    def __init__(self, message: str, in_use: bool) -> None:
        super().__init__(message)
        self.in_use = in_use


class _Protocol(asyncio.DatagramProtocol):
    __slots__ = ("metrics", "allows", "delivers", "listener")

    def __init__(self, listener: UdpListener) -> None:
        self.listener = listener
        self.metrics = listener.metrics
        self.allows = None if listener.allow.allow_all else listener.allow.allows
        self.delivers: tuple = ()

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        m = self.metrics
        m.packets_in += 1
        m.bytes_in += len(data)
        allows = self.allows
        if allows is not None and not allows(addr[0]):
            m.dropped_restricted += 1
            return
        packet = (data, addr, time.time())
        for deliver in self.delivers:
            deliver(packet)

    def connection_lost(self, exc: Exception | None) -> None:
        closed = self.listener._closed
        if closed is not None and not closed.done():
            closed.set_result(None)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors for earlier replies (port unreachable: the client left). Nothing to do but count.
        self.metrics.dropped_send += 1


class UdpListener:
    def __init__(self, config: ListenerConfig, functions: FunctionService, microvms: object = None) -> None:
        self.config = config
        self.functions = functions
        self.microvms = microvms          # the MicroVM manager, for microvm destinations
        self.metrics = ListenerMetrics()
        self.allow = AllowList(config.networks)
        self.transport: asyncio.DatagramTransport | None = None
        self.destinations: list[Destination] = []
        self.port = config.port
        self.local: dict = {"Domain": config.host, "Port": config.port}
        self.ipv6 = ":" in config.host
        self.state = "Stopped"
        self.reason = ""
        self._closed: asyncio.Future | None = None

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def name(self) -> str:
        return self.config.name

    async def start(self) -> None:
        """Bind and start delivering; raises BindError (port in use, address not on this host)."""
        loop = asyncio.get_running_loop()
        cfg = self.config
        family = socket.AF_INET6 if self.ipv6 else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
            sock.bind((cfg.host, cfg.port))
        except OSError as exc:
            sock.close()
            self.state, self.reason = "Failed", _bind_message(cfg.host, cfg.port, exc)
            raise BindError(self.reason, exc.errno == errno.EADDRINUSE) from None
        self.port = sock.getsockname()[1]
        self.local = {"Domain": cfg.host, "Port": self.port}
        # Destinations first, so that the very first datagram has somewhere to go.
        self.destinations = [self._destination(d) for d in cfg.destinations]
        protocol = _Protocol(self)
        protocol.delivers = tuple(d.deliver for d in self.destinations)
        self._closed = loop.create_future()
        transport, _ = await loop.create_datagram_endpoint(lambda: protocol, sock=sock)
        self.transport = transport
        self.state, self.reason = "Listening", ""
        log.info("UDP listener %s listening on %s", cfg.name, _addr(cfg.host, self.port))

    def _destination(self, d: DestinationConfig) -> Destination:
        if d.type == "log":
            return LogSink(d, self.config.name)
        if d.type == "microvm":
            return MicrovmDestination(d, self, self.microvms, self.config.id)
        return FunctionDestination(d, self, self.functions, asynchronous=d.type == "function-async")

    def send(self, data: bytes, addr: tuple) -> bool:
        """Send a reply from the listener's socket; False (and counted) when it cannot go now."""
        t = self.transport
        m = self.metrics
        # typeshed's DatagramTransport lacks get_write_buffer_size; asyncio's and uvloop's UDP transports have it.
        if t is None or t.is_closing() or t.get_write_buffer_size() > SEND_BUFFER_LIMIT:  # type: ignore[attr-defined]
            m.dropped_send += 1
            return False
        t.sendto(data, addr)
        m.packets_out += 1
        m.bytes_out += len(data)
        return True

    async def stop(self) -> None:
        """Close the socket and stop every destination; the port is free again when this returns."""
        for d in self.destinations:
            d.close()
        transport, self.transport = self.transport, None
        if transport is not None:
            transport.close()
            closed = self._closed
            assert closed is not None  # start() made it before the transport
            # The transport closes its socket on a later loop iteration: wait for that (connection_lost).
            try:
                await asyncio.wait_for(asyncio.shield(closed), timeout=2.0)
            except TimeoutError:
                log.warning("UDP listener %s: socket not closed after 2 s", self.config.name)
        if self.state == "Listening":
            self.state = "Stopped"

    def doc(self) -> dict:
        out = self.config.with_port(self.port).doc()
        out["Endpoint"] = _addr(self.config.host, self.port)
        out["State"] = self.state
        if self.reason:
            out["StateReason"] = self.reason
        out["Metrics"] = self.metrics.doc()
        if self.destinations:
            out["Destinations"] = [d.doc() for d in self.destinations]
        return out


def _addr(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _bind_message(host: str, port: int, exc: OSError) -> str:
    where = _addr(host, port)
    if exc.errno == errno.EADDRINUSE:
        return f"UDP port {where} is already in use; pick another Port (or 0 for any free port)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot bind {where}: {host} is not an address of this host; use one it has, or 0.0.0.0 / ::"
    if exc.errno == errno.EACCES:
        return f"cannot bind {where}: ports below 1024 need root (or CAP_NET_BIND_SERVICE); pick a higher Port"
    return f"cannot bind {where}: {exc.strerror or exc}"
