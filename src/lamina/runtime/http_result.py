"""A function-URL result mapped in the runtime (KIND_HTTP_RESULT), so the server need not decode and map it.

An INVOKE whose header says "http" comes from a BUFFERED function URL: the server wants the handler's result as the
HTTP response payload format 2.0 makes of it (lamina.httpevent.response.map_response). http_response() maps the
results that are plainly valid (a dict of statusCode, headers, multiValueHeaders, cookies, body and isBase64Encoded
with simple values) to exactly what map_response would give for their JSON; for anything else it returns None and
the result goes back as JSON (RESULT), mapped by the server as before, errors and all. The server checks the header
block it gets either way (lamina.httpevent.headers.header_block_ok).
"""

from __future__ import annotations

import re
from typing import Any

_HTTP_KEYS = frozenset(("statusCode", "headers", "multiValueHeaders", "cookies", "body", "isBase64Encoded"))
# Set by Lamina, never passed through from the function: lamina.httpevent.headers.DROPPED, which the runtime cannot
# import (a unit test checks the two agree).
HTTP_DROPPED = frozenset(("content-length", "transfer-encoding", "connection", "keep-alive", "upgrade"))
_HTTP_LIMIT = 6 * 1024 * 1024
_http_names: dict[str, str] = {}
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-z]+")
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f]")


class _NotMapped(Exception):
    pass


def _http_name(name: Any) -> str:
    if name.__class__ is not str:
        raise _NotMapped
    raw = _http_names.get(name)
    if raw is None:
        raw = name.lower()
        if not raw.isascii() or not _TOKEN.fullmatch(raw):
            raise _NotMapped
        if len(_http_names) >= 4096:
            _http_names.clear()
        _http_names[name] = raw
    return raw


def _http_value(value: Any) -> str:
    cls = value.__class__
    if cls is str:
        text = value
    elif cls is bool:
        text = "true" if value else "false"
    elif cls is int and -(1 << 63) <= value < (1 << 64):
        text = str(value)
    else:
        raise _NotMapped  # floats (NaN, exponents) and everything else: the server's mapping decides
    if _CONTROL.search(text):  # a control character but tab: what uvicorn refuses
        raise _NotMapped
    return text


def http_response(result: Any) -> tuple[int, bytes, bytes] | None:
    """(status, header block, body) for a plainly valid {statusCode, ...} result, else None (see above)."""
    if result.__class__ is not dict or "statusCode" not in result or not result.keys() <= _HTTP_KEYS:
        return None
    try:
        status = result["statusCode"]
        if status.__class__ is str and status.isdigit():
            status = int(status)
        if status.__class__ is not int or not 100 <= status <= 599:
            return None
        lines = []
        typed = False
        headers = result.get("headers")
        if headers is None:
            headers = {}
        elif headers.__class__ is not dict:
            return None
        for name, value in headers.items():
            if value is None:
                if name.__class__ is not str:
                    return None
                continue
            raw = _http_name(name)
            if raw not in HTTP_DROPPED:
                lines.append(f"{raw}: {_http_value(value)}\r\n")
                if raw == "content-type":
                    typed = True
        multi = result.get("multiValueHeaders")
        if multi is not None:
            if multi.__class__ is not dict:
                return None
            for name, values in multi.items():
                raw = _http_name(name)
                if values.__class__ is not list:
                    return None
                checked = [_http_value(v) for v in values if v is not None]
                if raw in HTTP_DROPPED or name in headers:
                    continue
                lines.extend(f"{raw}: {v}\r\n" for v in checked)
                if raw == "content-type" and checked:
                    typed = True
        cookies = result.get("cookies")
        if cookies is not None:
            if cookies.__class__ is not list:
                return None
            lines.extend(f"set-cookie: {_http_value(c)}\r\n" for c in cookies)
        if not typed:
            lines.append("content-type: application/json\r\n")
        base64_flag = result.get("isBase64Encoded")
        if base64_flag is not None and base64_flag.__class__ not in (bool, str, int):
            return None
        body = result.get("body")
        if body is None:
            raw_body = b""
        elif body.__class__ is str:
            if base64_flag is True:
                import base64
                import binascii

                try:
                    raw_body = base64.b64decode(body, validate=True)
                except (binascii.Error, ValueError):
                    return None
            else:
                raw_body = body.encode()
        else:
            return None
        if len(raw_body) > _HTTP_LIMIT:
            return None
        return status, "".join(lines).encode(), raw_body
    except (_NotMapped, UnicodeEncodeError, ValueError):  # ValueError: int() of a digit string it cannot read
        return None
