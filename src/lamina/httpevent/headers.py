"""HTTP headers in the event <-> HTTP mapping: what is never passed through, and the check of a header block the
Python runtime mapped itself (lamina.runtime.http_result)."""

from __future__ import annotations

import re

# Hop-by-hop headers (RFC 9110 §7.6.1) and what Lamina frames itself: never forwarded either way between a client
# and an HTTP app.
HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te", b"trailer", b"trailers",
                        b"transfer-encoding", b"upgrade", b"proxy-authenticate", b"proxy-authorization"})

# Set by Lamina, never passed through from a function's result. The Python runtime keeps a copy
# (lamina.runtime.http_result.HTTP_DROPPED: it cannot import this package); a unit test checks they agree.
DROPPED = frozenset({b"content-length", b"transfer-encoding", b"connection", b"keep-alive", b"upgrade"})

TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Control characters other than tab (CR, LF and NUL among them): what uvicorn refuses in a header value, so a
# response mapped here needs no second check when the HTTP hot path writes it (gateway/http/fast_http.py).
CONTROL = rb"\x00-\x08\x0a-\x1f\x7f"
BAD_VALUE = re.compile(rb"[" + CONTROL + rb"]")

# A header block as the Python runtime sends a mapped function-URL response (KIND_HTTP_RESULT): lower-case token
# names, none of the headers Lamina sets itself, values without control characters but tab. The runtime is the
# function's own process, so the server checks the block before it goes out.
_BLOCK = re.compile(rb"(?:(?!(?:" + b"|".join(re.escape(name) for name in sorted(DROPPED)) + rb"):)"
                    rb"[!#$%&'*+\-.^_`|~0-9a-z]+: [^" + CONTROL + rb"]*\r\n)*")


def header_block_ok(block: bytes) -> bool:
    """Whether a mapped response's header block may be written as it is (see _BLOCK)."""
    return _BLOCK.fullmatch(block) is not None
