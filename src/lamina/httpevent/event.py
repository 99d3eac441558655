"""An HTTP request as the API Gateway payload format 2.0 event a function URL sends a function."""

from __future__ import annotations

import base64
import time
from urllib.parse import parse_qsl

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def is_text(content_type: str | None) -> bool:
    """Bodies of these types reach the function as text; everything else is base64 (as on AWS)."""
    if not content_type:
        return False
    ct = content_type.split(";", 1)[0].strip().lower()
    return (ct.startswith("text/") or ct in ("application/json", "application/javascript", "application/xml")
            or ct.endswith(("+json", "+xml")))


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
        try:  # this runs for every header of every function-URL request
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
