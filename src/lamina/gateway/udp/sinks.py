"""Sinks: destinations that take packets and send nothing back.

- `function-async`: a function invoked asynchronously (Event) with batches of the same
  {"Messages": [...]} events — FunctionDestination(asynchronous=True) in function_destination.py.
- `log` (this module): one line per packet in the server's log (logger `lamina.udp.log`, stderr of
  `lamina serve`), at most MaxLinesPerSecond lines a second per destination. Packets over the rate are
  counted (Suppressed) and one line a second says how many were left out. The server log rather than
  a file per listener: it is where an operator already looks, and the rate bound keeps it readable.
  Each line: `udp <listener>/<destination> <ip>:<port> <n> bytes <formatter>:<data, first 256 chars>`.
"""

from __future__ import annotations

import asyncio
import logging

from lamina.gateway.udp import formatters
from lamina.gateway.udp.config import DestinationConfig
from lamina.gateway.udp.destination import Destination, Packet
from lamina.gateway.udp.metrics import DestinationMetrics

log = logging.getLogger("lamina.udp.log")

SHOWN_CHARS = 256


class LogSink(Destination):
    def __init__(self, config: DestinationConfig, listener_name: str) -> None:
        self.config = config
        self.metrics = DestinationMetrics()
        self.where = f"{listener_name}/{config.name}"
        self.rate = config.max_lines_per_s
        self.loop = asyncio.get_running_loop()
        self._encode = formatters.encoder(config.formatter)
        self._second = -1
        self._lines = 0
        self._left_out = 0
        self._summary: asyncio.TimerHandle | None = None

    def deliver(self, packet: Packet) -> None:
        m = self.metrics
        data, addr, _ = packet
        m.packets += 1
        m.bytes += len(data)
        second = int(self.loop.time())
        if second != self._second:
            self._second, self._lines = second, 0
        if self._lines >= self.rate:
            m.suppressed += 1
            self._left_out += 1
            if self._summary is None:
                self._summary = self.loop.call_later(1.0, self._say_left_out)
            return
        self._lines += 1
        try:
            text = self._encode(data[:SHOWN_CHARS])
        except ValueError:
            text = "(not " + self.config.formatter + "; hex) " + data[:SHOWN_CHARS // 2].hex()
        log.info("udp %s %s:%s %d bytes %s:%s", self.where, addr[0], addr[1], len(data), self.config.formatter,
                 text[:SHOWN_CHARS])

    def _say_left_out(self) -> None:
        self._summary = None
        if self._left_out:
            log.info("udp %s: %d packet(s) not logged (over %d lines/s)", self.where, self._left_out, self.rate)
            self._left_out = 0

    def close(self) -> None:
        if self._summary is not None:
            self._summary.cancel()
            self._summary = None
