"""The runtime's end of its channel to the server (frames: wire.py), and its log pipe's quiet check.

Before every frame it sends, the runtime flushes stdout/stderr into its log pipe; the server drains that pipe before
handling the frame, so every log line lands in the right invocation's log even though logs and frames travel on
different file descriptors. A RESULT or ERROR frame whose header says `"q":1` ("quiet") tells the server that the
pipe held no unread byte when the frame was sent (the runtime asked the kernel, FIONREAD, after flushing: this covers
C-level writes to fd 1/2 and child processes' output too), so the server may skip that drain: everything written
before the check has already been read and logged.
"""

from __future__ import annotations

import select
import socket
import sys
from fcntl import ioctl
from typing import Any

from .fast_json import json_str, loads
from .wire import PREFIX, Frame, FrameDecoder, encode_frame

try:
    from termios import FIONREAD as _FIONREAD

    FIONREAD: int | None = _FIONREAD
except ImportError:  # an interpreter built without termios: results are never quiet, the server always drains
    FIONREAD = None

_NO_BYTES = b"\0\0\0\0"


class Channel:
    def __init__(self, fd: int, log_fd: int = -1) -> None:
        self._sock = socket.socket(fileno=fd)
        self._decoder = FrameDecoder(loads)  # frames that came in pieces
        self._frames: list[Frame] = []
        # The runtime waits for its next frame in poll(2) for input only, then reads: a task blocked in recv(2) on
        # a unix socket is also woken whenever the peer reads what it sent (the kernel's unix_write_space wakes
        # the socket's waiters for "writable"), so every result the server read would wake the idle runtime for
        # nothing, a context switch on its CPU and a cross-CPU wakeup on the server's. poll's wait filters by event.
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN)
        # The runtime's own descriptor of its log pipe (fd 1 and 2 are the handler's to redirect): asked
        # whether the pipe is empty before a result goes out, see quiet(). -1: unknown, never quiet.
        self.log_fd = log_fd

    @staticmethod
    def flush_output() -> None:
        # What the handler printed must be in the log pipe before the frame leaves.
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                continue

    def quiet(self) -> bool:
        """Whether the log pipe holds no unread byte (after flush_output): every line written so far, from
        Python, C code or a child process, has been read by the server, which then need not drain it."""
        if self.log_fd < 0 or FIONREAD is None:
            return False
        try:
            return ioctl(self.log_fd, FIONREAD, _NO_BYTES) == _NO_BYTES
        except OSError:  # closed by the handler, say: the server drains as before
            self.log_fd = -1
            return False

    def send(self, kind: int, header: dict[str, Any], body: bytes = b"") -> None:
        self.flush_output()
        self._sock.sendall(encode_frame(kind, header, body))

    def send_result(self, kind: int, request_id: str, rss_kb: int, body: bytes) -> None:
        """RESULT or ERROR (the hot path): the header written by hand, marked quiet when the pipe is empty."""
        self.flush_output()
        head = b'{"id":%b,"rss_kb":%d%b}' % (json_str(request_id).encode(), rss_kb, b',"q":1' if self.quiet() else b"")
        # wire.encode_frame, inlined: a call less per result
        self._sock.sendall(PREFIX.pack(5 + len(head) + len(body), kind, len(head)) + head + body)

    def close(self) -> None:
        self._sock.close()

    def recv(self) -> Frame | None:
        """The next frame; None at EOF. The server sends one INVOKE at a time and waits for its result, so a
        frame usually arrives whole in one recv(2) and is parsed straight from it; anything else goes through
        the decoder."""
        frames, decoder = self._frames, self._decoder
        while not frames:
            self._poll.poll()
            data = self._sock.recv(1 << 16)
            if not data:
                return None
            if not decoder.pending and len(data) >= 9:  # 9: wire.PREFIX_SIZE
                total, kind, hlen = PREFIX.unpack_from(data)
                if len(data) == 4 + total:
                    return kind, (loads(data[9 : 9 + hlen]) if hlen else {}), data[9 + hlen :]
            frames.extend(decoder.feed(data))
        return frames.pop(0)
