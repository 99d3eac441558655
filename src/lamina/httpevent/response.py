"""A function's result as an HTTP response, by payload format 2.0's rules (function URLs).

`map_response` turns what the function returned into status, headers and body (the "inferred response" rules for
anything that is not a {statusCode, ...} object); `stream_response` does the same for RESPONSE_STREAM, where a
function may also send an HTTP-integration prelude (JSON, then eight NUL bytes, then the body), and `stream_head` /
`StreamStart` tell a streamed response's head from its first bytes.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

import orjson

from lamina.httpevent.headers import BAD_VALUE, DROPPED, TOKEN

STREAM_DELIMITER = b"\x00" * 8


@dataclass
class HttpResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


class BadResponse(ValueError):
    """The function's result cannot be turned into an HTTP response (the client gets a 502)."""


def _header_value(value: object) -> bytes:
    if value.__class__ is str:  # nearly always
        raw = value.encode()
    elif isinstance(value, bool):
        raw = b"true" if value else b"false"
    elif isinstance(value, (int, float)):
        raw = str(value).encode()
    elif isinstance(value, str):
        raw = value.encode()
    else:
        raise BadResponse(f"header value {value!r} is not a string")
    if BAD_VALUE.search(raw):
        raise BadResponse("header value contains a control character (CR, LF, NUL or another)")
    return raw


_NAMES: dict[str, bytes] = {}  # header names already checked (a function sends the same few every time)


def _header_name(name: object) -> bytes:
    if not isinstance(name, str):
        raise BadResponse(f"header name {name!r} is not a string")
    raw = _NAMES.get(name)
    if raw is not None:
        return raw
    raw = name.lower().encode()
    if not TOKEN.fullmatch(raw):
        raise BadResponse(f"invalid header name {name!r}")
    if len(_NAMES) >= 4096:
        _NAMES.clear()
    _NAMES[name] = raw
    return raw


def _status(value: object) -> int:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 100 <= value <= 599:
        raise BadResponse(f"statusCode {value!r} is not an HTTP status")
    return value


def _prelude_headers(doc: dict) -> list[tuple[bytes, bytes]]:
    """headers, multiValueHeaders and cookies of a {statusCode, ...} document, as raw header pairs."""
    out: list[tuple[bytes, bytes]] = []
    headers = doc.get("headers")
    headers = {} if headers is None else headers
    if not isinstance(headers, dict):
        raise BadResponse("headers must be an object")
    typed = False
    for name, value in headers.items():
        if value is None:
            continue
        raw_name = _header_name(name)
        if raw_name not in DROPPED:
            out.append((raw_name, _header_value(value)))
            if raw_name == b"content-type":
                typed = True
    multi = doc.get("multiValueHeaders")
    multi = {} if multi is None else multi
    if not isinstance(multi, dict):
        raise BadResponse("multiValueHeaders must be an object")
    for name, values in multi.items():
        raw_name = _header_name(name)
        if raw_name in DROPPED or name in headers or not isinstance(values, list):
            continue
        before = len(out)
        out.extend((raw_name, _header_value(value)) for value in values if value is not None)
        if raw_name == b"content-type" and len(out) > before:
            typed = True
    cookies = doc.get("cookies")
    cookies = [] if cookies is None else cookies
    if not isinstance(cookies, list):
        raise BadResponse("cookies must be a list")
    out.extend((b"set-cookie", _header_value(cookie)) for cookie in cookies)
    if not typed:
        out.append((b"content-type", b"application/json"))
    return out


def _structured(doc: dict) -> HttpResponse:
    status = _status(doc["statusCode"])
    headers = _prelude_headers(doc)
    body = doc.get("body")
    if body is None:
        raw = b""
    elif isinstance(body, str):
        if doc.get("isBase64Encoded") is True:
            try:
                raw = base64.b64decode(body, validate=True)
            except (binascii.Error, ValueError):
                raise BadResponse("body is not valid base64") from None
        else:
            raw = body.encode()
    else:
        raw = orjson.dumps(body)
    return HttpResponse(status, headers, raw)


def map_response(payload: bytes) -> HttpResponse:
    """BUFFERED mode: the function's JSON result to an HTTP response; BadResponse if it cannot be."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise BadResponse("the function's response is not valid JSON") from None
    if isinstance(doc, dict) and "statusCode" in doc:
        return _structured(doc)
    # Inferred response: any other valid JSON is the body of a 200 application/json.
    return HttpResponse(200, [(b"content-type", b"application/json")], payload)


# A streamed response that starts like JSON but shows no prelude within this many bytes is mapped whole.
PRELUDE_MAX = 64 * 1024
_JSON_START = frozenset(b'{["-0123456789tfn')


class WholeResponse(Exception):
    """Only the whole streamed response can say how it maps to HTTP (stream_response)."""


def stream_head(start: bytes) -> tuple[HttpResponse, int] | None:
    """RESPONSE_STREAM mode while the response streams in: from its first bytes, the head stream_response would
    give the whole response (with an empty body) and where the body begins in `start`, or None while these bytes
    cannot tell yet. A prelude gives the head; bytes that cannot be JSON are application/octet-stream. Raises
    WholeResponse when only the end can tell (JSON without a prelude), and BadResponse for a prelude that cannot
    be sent."""
    first = start.lstrip()[:1]
    if not first or (first == b"{" and start[:1] == b"{"):
        cut = start.find(STREAM_DELIMITER) if first else -1
        if cut < 0:
            if len(start) > PRELUDE_MAX:
                raise WholeResponse
            return None
        try:
            prelude = orjson.loads(start[:cut])
        except orjson.JSONDecodeError:
            raise WholeResponse from None
        if not isinstance(prelude, dict):
            raise WholeResponse
        status = _status(prelude.get("statusCode", 200))
        return HttpResponse(status, _prelude_headers(prelude), b""), cut + len(STREAM_DELIMITER)
    if first[0] in _JSON_START:
        raise WholeResponse
    return HttpResponse(200, [(b"content-type", b"application/octet-stream")], b""), 0


def bodiless(method: str, status: int) -> bool:
    """Whether a response has no body to send (a HEAD request's, or a 1xx, 204 or 304)."""
    return method == "HEAD" or status in (204, 304) or status < 200


class StreamStart:
    """A RESPONSE_STREAM response as its pieces arrive: kept until stream_head can tell its head (`head`, and
    rest() the body seen so far), or kept whole when only the end can tell (payload() at the end)."""

    __slots__ = ("start", "parts", "head", "offset", "whole")

    def __init__(self) -> None:
        self.start = b""
        self.parts: list[bytes] = []
        self.head: HttpResponse | None = None
        self.offset = 0
        self.whole = False

    def feed(self, piece: bytes) -> bool:
        """Keep a piece; True when it made the head known."""
        if self.whole or self.head is not None:
            self.parts.append(piece)
            return False
        self.start += piece
        try:
            told = stream_head(self.start)
        except (WholeResponse, BadResponse):  # BadResponse: the end answers it (a 502)
            self.keep_whole()
            return False
        if told is None:
            return False
        self.head, self.offset = told
        return True

    def rest(self) -> bytes:
        """The body bytes that came with the head (once)."""
        rest, self.start = self.start[self.offset :], b""
        return rest

    def keep_whole(self) -> None:
        """Not to be streamed after all: keep everything for payload()."""
        self.whole = True
        self.parts.insert(0, self.start)
        self.start = b""

    def payload(self) -> bytes:
        """Everything kept: the whole response, when it was not sent as it came."""
        return b"".join(self.parts) if self.whole else self.start


def stream_response(payload: bytes) -> HttpResponse:
    """RESPONSE_STREAM mode: an HTTP-integration prelude, a {statusCode, ...} result, inferred JSON,
    or (not JSON at all) the raw bytes as application/octet-stream."""
    if payload[:1] == b"{":
        cut = payload.find(STREAM_DELIMITER)
        if cut > 0:
            try:
                prelude = orjson.loads(payload[:cut])
            except orjson.JSONDecodeError:
                prelude = None
            if isinstance(prelude, dict):
                status = _status(prelude.get("statusCode", 200))
                return HttpResponse(status, _prelude_headers(prelude), payload[cut + len(STREAM_DELIMITER):])
    try:
        return map_response(payload)
    except BadResponse:
        try:
            orjson.loads(payload)
        except orjson.JSONDecodeError:
            return HttpResponse(200, [(b"content-type", b"application/octet-stream")], payload)
        raise
