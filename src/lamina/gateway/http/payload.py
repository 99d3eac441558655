"""API Gateway HTTP API payload format 2.0, as Lambda function URLs use it.

`build_event` turns an HTTP request into the 2.0 event; `map_response` turns what the function
returned into status, headers and body (the "inferred response" rules for anything that is not a
{statusCode, ...} object); `stream_response` does the same for RESPONSE_STREAM, where a function
may also send an HTTP-integration prelude (JSON, then eight NUL bytes, then the body).
Pure functions: no I/O, so they are cheap to test.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from dataclasses import dataclass
from urllib.parse import parse_qsl

import orjson

from lamina.runtime.http_result import HTTP_DROPPED

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Control characters other than tab (CR, LF and NUL among them): what uvicorn refuses in a header value, so a
# response mapped here needs no second check when the HTTP hot path writes it (gateway/http/fast_http.py).
_CONTROL = rb"\x00-\x08\x0a-\x1f\x7f"
_BAD_VALUE = re.compile(rb"[" + _CONTROL + rb"]")
# Set by Lamina, never passed through from the function.
_DROPPED = {name.encode() for name in HTTP_DROPPED}
STREAM_DELIMITER = b"\x00" * 8


def is_text(content_type: str | None) -> bool:
    """Bodies of these types reach the function as text; everything else is base64 (as on AWS)."""
    if not content_type:
        return False
    ct = content_type.split(";", 1)[0].strip().lower()
    return (ct.startswith("text/") or ct in ("application/json", "application/javascript", "application/xml")
            or ct.endswith(("+json", "+xml")))


def _text(raw: bytes) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return raw.decode("latin-1")


_clf_cache: tuple[int, str] = (-1, "")


def clf_time(now: float) -> str:
    global _clf_cache
    second = int(now)
    if _clf_cache[0] == second:  # one formatting per second, not per request
        return _clf_cache[1]
    t = time.gmtime(second)
    text = f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"
    _clf_cache = (second, text)
    return text


def build_event(method: str, raw_path: str, raw_query: str, raw_headers: list[tuple[bytes, bytes]], body: bytes,
                source_ip: str, protocol: str, extra_headers: dict[str, str], url_id: str, domain: str, account: str,
                request_id: str, now: float | None = None) -> dict:
    """The payload 2.0 event of one function-URL request (headers as the HTTP parser gives them)."""
    now = time.time() if now is None else now
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for raw_name, raw_value in raw_headers:
        name = raw_name.decode("latin-1").lower()
        try:  # _text(), inlined: this runs for every header of every function-URL request
            value = raw_value.decode()
        except UnicodeDecodeError:
            value = raw_value.decode("latin-1")
        if name == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    for name, value in extra_headers.items():
        headers[name] = f"{headers[name]},{value}" if name in headers and name == "x-forwarded-for" else value
    event: dict = {"version": "2.0", "routeKey": "$default", "rawPath": raw_path,
                   "rawQueryString": raw_query}
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    if raw_query:
        params: dict[str, str] = {}
        for key, value in parse_qsl(raw_query, keep_blank_values=True, errors="replace"):
            params[key] = f"{params[key]},{value}" if key in params else value
        event["queryStringParameters"] = params
    event["requestContext"] = {
        "accountId": account,
        "apiId": url_id,
        "domainName": domain,
        "domainPrefix": url_id,
        "http": {"method": method, "path": raw_path, "protocol": protocol, "sourceIp": source_ip,
                 "userAgent": headers.get("user-agent", "")},
        "requestId": request_id,
        "routeKey": "$default",
        "stage": "$default",
        "time": clf_time(now),
        "timeEpoch": int(now * 1000),
    }
    if body:
        if is_text(headers.get("content-type")):
            try:
                event["body"] = body.decode()
                event["isBase64Encoded"] = False
                return event
            except UnicodeDecodeError:
                pass
        event["body"] = base64.b64encode(body).decode()
        event["isBase64Encoded"] = True
    else:
        event["isBase64Encoded"] = False
    return event


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
    if _BAD_VALUE.search(raw):
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
    if not _TOKEN.fullmatch(raw):
        raise BadResponse(f"invalid header name {name!r}")
    if len(_NAMES) >= 4096:
        _NAMES.clear()
    _NAMES[name] = raw
    return raw


# A header block as the Python runtime sends a mapped function-URL response (KIND_HTTP_RESULT): lower-case token
# names, none of the headers Lamina sets itself, values without control characters but tab. The runtime is the
# function's own process, so the server checks the block before it goes out.
_BLOCK = re.compile(rb"(?:(?!(?:" + b"|".join(re.escape(name) for name in sorted(_DROPPED)) + rb"):)"
                    rb"[!#$%&'*+\-.^_`|~0-9a-z]+: [^" + _CONTROL + rb"]*\r\n)*")


def header_block_ok(block: bytes) -> bool:
    """Whether a mapped response's header block may be written as it is (see _BLOCK)."""
    return _BLOCK.fullmatch(block) is not None


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
        if raw_name not in _DROPPED:
            out.append((raw_name, _header_value(value)))
            if raw_name == b"content-type":
                typed = True
    multi = doc.get("multiValueHeaders")
    multi = {} if multi is None else multi
    if not isinstance(multi, dict):
        raise BadResponse("multiValueHeaders must be an object")
    for name, values in multi.items():
        raw_name = _header_name(name)
        if raw_name in _DROPPED or name in headers or not isinstance(values, list):
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
