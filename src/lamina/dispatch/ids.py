"""Request ids and X-Ray trace ids for the invoke hot path, without a getrandom(2) per id.

uuid.uuid4() costs a system call and a UUID object per id, and an invocation through a function URL needs
three ids. These come from a pool of random bytes refilled 4 KiB at a time. The ids identify requests;
they are not secrets (tokens are made elsewhere, with `secrets`).
"""

from __future__ import annotations

import os
import time

_POOL_BYTES = 4096
_pool = b""
_pos = _POOL_BYTES


def _reset() -> None:
    global _pool, _pos
    _pool, _pos = b"", _POOL_BYTES


os.register_at_fork(after_in_child=_reset)  # a forked child must not repeat its parent's ids


def _random_hex(n: int) -> str:
    """n random bytes as 2n hex digits."""
    global _pool, _pos
    if _pos + n > len(_pool):
        _pool, _pos = os.urandom(_POOL_BYTES), 0
    chunk = _pool[_pos : _pos + n]
    _pos += n
    return chunk.hex()


def request_id() -> str:
    """A random (version 4) UUID string, as str(uuid.uuid4()) gives."""
    h = _random_hex(16)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


def trace_id() -> str:
    """An X-Ray trace header value for a request that came without one: Root=1-<epoch seconds hex>-<96 random bits>."""
    return f"Root=1-{int(time.time()):08x}-{_random_hex(12)}"
