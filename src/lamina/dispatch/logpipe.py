"""The read end of an environment's log pipe (its stdout and stderr), split into lines.

The server reads it itself (add_reader + os.read) rather than through an asyncio transport so it can
drain the pipe on demand: the runtime flushes its output before it sends a frame or posts a result,
so draining before handling that frame puts every line in the right invocation's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable

MAX_LINE = 256 * 1024


class LogPipe:
    def __init__(self, on_line: Callable[[str], None]) -> None:
        self._on_line = on_line
        self._loop = asyncio.get_running_loop()
        self.read_fd, self.write_fd = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(self.read_fd, False)
        self.partial = b""  # the end of what was read, a line still without its newline
        self._open = True
        self._loop.add_reader(self.read_fd, self.drain)

    def close_write_end(self) -> None:
        """The sandbox has its copy: the server's must go, or EOF would never come."""
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1

    def drain(self) -> None:
        while self._open:
            try:
                data = os.read(self.read_fd, 1 << 16)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._loop.remove_reader(self.read_fd)
                self._flush_partial()
                return
            self._feed(data)

    def _feed(self, data: bytes) -> None:
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        if len(self.partial) > MAX_LINE:  # a runaway line without a newline: cut it
            lines.append(self.partial)
            self.partial = b""
        for raw in lines:
            self._on_line(raw.decode("utf-8", "replace"))

    def end_line(self) -> None:
        """A frame boundary (a result, READY): text written without a newline so far belongs to what came
        before it, so it is a line of its own now rather than the start of the next invocation's first."""
        if self.partial:
            self._flush_partial()

    def _flush_partial(self) -> None:
        if self.partial:
            self._on_line(self.partial.decode("utf-8", "replace"))
            self.partial = b""

    def close(self) -> None:
        """Read what is left, then release both ends."""
        if not self._open:
            return
        self.drain()
        self._flush_partial()
        self._open = False
        with contextlib.suppress(ValueError, RuntimeError):
            self._loop.remove_reader(self.read_fd)
        os.close(self.read_fd)
        self.close_write_end()
