"""What a listener hands its packets to, and the pieces every destination shares.

A packet is a plain tuple `(data: bytes, addr: tuple, received_at: float)` — addr as the socket gives
it ((ip, port) or (ip, port, flowinfo, scope_id)), received_at from time.time() — because the listener
makes one per datagram and a tuple is the cheapest object Python has.

A destination's deliver(packet) runs on the event loop for each accepted packet: it must not block,
await, log or start a timer per packet. Function batches, the async function and log sinks are
destinations; the MicroVM destination will be one too (a tenant's packets to that tenant's instance).
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

from lamina.gateway.udp.config import DestinationConfig
from lamina.gateway.udp.metrics import DestinationMetrics

Packet = tuple[bytes, tuple, float]


class ReplyChannel(Protocol):
    """The listener, as a destination sees it: replies go out of its own socket."""

    local: dict           # the event's "Local": {"Domain", "Port"}
    ipv6: bool            # an IPv6 socket (IPv4 senders appear as ::ffff:a.b.c.d)

    def send(self, data: bytes, addr: tuple) -> bool: ...


class Destination:
    config: DestinationConfig
    metrics: DestinationMetrics

    def deliver(self, packet: Packet) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Stop taking packets: batches not yet sent are dropped (in-flight invocations finish)."""

    def doc(self) -> dict:
        return {**self.config.doc(), "Metrics": self.metrics.doc()}


class IsoClock:
    """ReceivedAt as ISO-8601 with milliseconds and Z: formatted once per millisecond (packets of a batch
    mostly share one), the seconds part once per second."""

    __slots__ = ("_second", "_prefix", "_ms", "_text")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""
        self._ms = -1
        self._text = ""

    def __call__(self, t: float) -> str:
        ms = int(t * 1000)
        if ms == self._ms:
            return self._text
        second = ms // 1000
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second))
        self._ms = ms
        self._text = text = f"{self._prefix}{ms % 1000:03d}Z"
        return text


class Complaints:
    """Problems worth a log line, at most one line per `every` seconds per destination (the rest are counted
    and mentioned in the next line), so a failing function cannot flood the server log."""

    def __init__(self, logger: logging.Logger, what: str, every: float = 5.0) -> None:
        self.log = logger
        self.what = what
        self.every = every
        self._last = -1e9
        self._quiet = 0

    def __call__(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last < self.every:
            self._quiet += 1
            return
        more = f" ({self._quiet} more since the last message)" if self._quiet else ""
        self._last, self._quiet = now, 0
        self.log.warning("%s: %s%s", self.what, message, more)
