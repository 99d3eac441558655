"""Event and request ids for EventBridge's hot paths: version-4 UUIDs (RFC 4122 layout) from Python's PRNG,
seeded from the OS at import, formatted directly, rather than uuid.uuid4() (an os.urandom syscall and a UUID
object per id): a PutEvents of 10 entries needs ~20 ids. The ids name events; they are not secrets."""

from __future__ import annotations

import random

_bits = random.Random().getrandbits   # seeded from os.urandom


def new_id() -> str:
    h = f"{_bits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"
