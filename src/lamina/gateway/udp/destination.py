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
from collections.abc import Callable
from typing import Protocol

from lamina.gateway.udp.config import MAX_BATCH_COUNT, DestinationConfig
from lamina.gateway.udp.metrics import DestinationMetrics

Packet = tuple[bytes, tuple, float]

# Tags "0", "1", ... made once: the event is built per packet, and str(i) there costs as much as a dict.
TAGS = [str(i) for i in range(MAX_BATCH_COUNT)]


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

    def server_stopping(self) -> None:
        """Called before close() when the whole server stops (not when the listener is removed): a destination
        that cleans up on removal (the MicroVM destination terminates its instances) leaves that to its owner."""

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


def tag_index(tag: object, n: int) -> int:
    """The packet a reply's Tag names (its index in the batch as a canonical decimal string), or -1."""
    if type(tag) is not str or not 0 < len(tag) <= 6 or not tag.isascii() or not tag.isdigit():
        return -1
    if tag[0] == "0" and len(tag) > 1:
        return -1
    index = int(tag)
    return index if index < n else -1


def send_replies(replies: list, packets: list[Packet], decode: Callable[[str], bytes], channel: ReplyChannel,
                 metrics: DestinationMetrics, complain: Callable[[str], None] | None = None) -> None:
    """Send each {"Tag", "Data"} reply to the sender of the packet its Tag names, counting what is sent and
    what is not (bad_replies, unknown_tags); `complain`, when given, hears why a reply's Data was refused."""
    m = metrics
    n = len(packets)
    send = channel.send
    for reply in replies:
        if not isinstance(reply, dict):
            m.bad_replies += 1
            continue
        index = tag_index(reply.get("Tag"), n)
        if index < 0:
            m.unknown_tags += 1
            continue
        try:
            data = decode(reply.get("Data"))  # type: ignore[arg-type]
        except ValueError as exc:
            m.bad_replies += 1
            if complain is not None:
                complain(f"reply to Tag {reply.get('Tag')!r} not sent: {exc}")
            continue
        if send(data, packets[index][1]):
            m.replies += 1
            m.reply_bytes += len(data)
