"""Event and request ids for EventBridge's hot paths: version-4 UUIDs (RFC 4122 layout) from Python's PRNG,
seeded from the OS at import, formatted directly, rather than uuid.uuid4() (an os.urandom syscall and a UUID
object per id): a PutEvents of 10 entries needs ~20 ids. The ids name events; they are not secrets."""

from __future__ import annotations

import random

_bits = random.Random().getrandbits   # seeded from os.urandom
# The version (4) and variant (10xx) bits set in the integer before it is formatted.
_KEEP = ~((0xF << 76) | (0x3 << 62)) & ((1 << 128) - 1)
_SET = (0x4 << 76) | (0x2 << 62)


def new_id() -> str:
    h = f"{_bits(128) & _KEEP | _SET:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
