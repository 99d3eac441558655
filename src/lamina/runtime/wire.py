"""The environment channel's wire format: the one frame codec of the server and the Python runtime.

A Python runtime talks to the server over a stream socket it inherits (its "channel"); a zygote does too. Every
message is one frame:

    >I length of the rest | B kind | >I header length | header (a JSON object) | body (bytes)

Environment -> server: READY, RESULT, ERROR, HTTP_RESULT, INIT_ERROR. Server -> environment: INVOKE. A RESULT,
ERROR or HTTP_RESULT frame also means "give me the next one": posting a result and pulling the next invocation is
one round trip. Server -> zygote: FORK (with the new environment's descriptors, SCM_RIGHTS); zygote -> server:
FORKED, EXITED. The Runtime API (dispatch/runtime_api.py) turns a custom runtime's HTTP calls into the same frames
in the server, STREAM among them.

Stdlib only: the runtime imports this module inside the sandbox, the server (lamina.dispatch) imports it too. Each
side brings its own JSON functions (the server orjson, the runtime the stdlib's json); the framing is this module's.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from typing import Any

KIND_READY = 1
KIND_INVOKE = 2
KIND_RESULT = 3
KIND_ERROR = 4
KIND_INIT_ERROR = 5
KIND_FORK = 6      # server -> zygote: {env, stream, init_type, tmp_mb, batch, nfds}; fds: channel, log, cgroup.procs
KIND_FORKED = 7    # zygote -> server: {env, pid}
KIND_EXITED = 8    # zygote -> server: {env, status} (negative: killed by that signal)
KIND_HTTP_RESULT = 9  # environment -> server: a function-URL response, mapped by the runtime (http_result.py)
KIND_STREAM = 10  # Runtime API -> environment, in the server: a piece of a streamed response (runtime_api.py)

# Every frame starts with this: the length of the rest, the kind, the header's length.
PREFIX = struct.Struct(">IBI")
PREFIX_SIZE = PREFIX.size
# A KIND_HTTP_RESULT body: >H status | >I header block length | header block ("name: value\r\n"...) | body
HTTP_PREFIX = struct.Struct(">HI")

Frame = tuple[int, dict[str, Any], bytes]


def compact_json(header: dict[str, Any]) -> bytes:
    """The stdlib's JSON without spaces: the runtime's (and any stdlib-only side's) header encoder."""
    return json.dumps(header, separators=(",", ":")).encode()


def encode_frame(kind: int, header: dict[str, Any], body: bytes = b"",
                 dumps: Callable[[dict[str, Any]], bytes] = compact_json) -> bytes:
    """One frame; `dumps` encodes the header (the server passes orjson.dumps)."""
    head = dumps(header)
    return PREFIX.pack(5 + len(head) + len(body), kind, len(head)) + head + body


class FrameDecoder:
    """Incremental decoder: feed bytes, get (kind, header, body) frames; `loads` decodes a header.

    Whole frames are parsed straight from the bytes received; a partial frame waits in `pending` (a bytearray)
    until the length its prefix announced has arrived, so a large frame that comes in many reads is copied once.
    Both ends read one whole frame per read nearly always: they check `pending` is empty and parse such a read
    themselves, inline (a call less per frame on the hot path), and feed everything else here."""

    __slots__ = ("pending", "_need", "_loads")

    def __init__(self, loads: Callable[[bytes], Any] = json.loads) -> None:
        self.pending = bytearray()  # the start of a frame waiting for the rest; empty between frames
        self._need = PREFIX_SIZE
        self._loads = loads

    def feed(self, data: bytes) -> list[Frame]:
        if self.pending:
            self.pending += data
            if len(self.pending) < self._need:
                return []
            buf = bytes(self.pending)
            self.pending = bytearray()
        else:
            buf = data
        frames: list[Frame] = []
        pos, end = 0, len(buf)
        unpack, loads = PREFIX.unpack_from, self._loads
        need = PREFIX_SIZE
        while end - pos >= PREFIX_SIZE:
            total, kind, hlen = unpack(buf, pos)
            stop = pos + 4 + total
            if end < stop:
                need = 4 + total
                break
            header = loads(buf[pos + 9 : pos + 9 + hlen]) if hlen else {}  # 9: PREFIX_SIZE
            frames.append((kind, header, buf[pos + 9 + hlen : stop]))
            pos = stop
        if pos < end:
            self.pending = bytearray(buf[pos:])
            self._need = need
        return frames
