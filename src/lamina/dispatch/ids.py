"""Request ids and X-Ray trace ids for the invoke hot path, without a getrandom(2) per id.

uuid.uuid4() costs a system call and a UUID object per id, and an invocation through a function URL needs
three ids. These come from a pool of random bytes refilled 4 KiB at a time. The ids identify requests;
they are not secrets (tokens are made elsewhere, with `secrets`).
"""

from __future__ import annotations

import os
import time

_POOL_BYTES = 4096
_pool = ""     # hex digits of random bytes, two per byte: slicing a str costs less than bytes.hex() per id
_pos = 2 * _POOL_BYTES


def _reset() -> None:
    global _pool, _pos
    _pool, _pos = "", 2 * _POOL_BYTES


os.register_at_fork(after_in_child=_reset)  # a forked child must not repeat its parent's ids


def _random_hex(n: int) -> str:
    """n random bytes as 2n hex digits."""
    global _pool, _pos
    pos, end = _pos, _pos + 2 * n
    if end > len(_pool):
        _pool, pos, end = os.urandom(_POOL_BYTES).hex(), 0, 2 * n
    _pos = end
    return _pool[pos:end]


def request_id() -> str:
    """A random (version 4) UUID string, as str(uuid.uuid4()) gives."""
    global _pool, _pos
    pos = _pos
    if pos + 32 > len(_pool):
        _pool, pos = os.urandom(_POOL_BYTES).hex(), 0
    _pos = pos + 32
    h = _pool
    return (f"{h[pos : pos + 8]}-{h[pos + 8 : pos + 12]}-4{h[pos + 13 : pos + 16]}-"
            f"{_VARIANT[h[pos + 16]]}{h[pos + 17 : pos + 20]}-{h[pos + 20 : pos + 32]}")


_VARIANT = {d: "89ab"[int(d, 16) & 3] for d in "0123456789abcdef"}  # the RFC 4122 variant bits


_trace_prefix: tuple[int, str] = (-1, "")


def trace_id() -> str:
    """An X-Ray trace header value for a request that came without one: Root=1-<epoch seconds hex>-<96 random bits>."""
    global _trace_prefix
    second = int(time.time())
    if _trace_prefix[0] != second:  # formatted once a second, not per request
        _trace_prefix = (second, f"Root=1-{second:08x}-")
    return _trace_prefix[1] + _random_hex(12)
