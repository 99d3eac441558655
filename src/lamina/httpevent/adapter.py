"""The Lambda Web Adapter's mapping, for an HTTP-app function invoked through the Invoke API: an event as an HTTP
request to the app (an API Gateway payload 2.0 / 1.0 or ALB event becomes that request; any other event is POSTed
as it is to the pass-through path), and the app's response as the result the event's source expects."""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote, urlencode

from lamina.httpevent.headers import HOP_BY_HOP


class AdapterSettings(Protocol):
    """The adapter's settings the mapping follows (dispatch's HttpAppConfig: AWS_LWA_PASS_THROUGH_PATH,
    AWS_LWA_REMOVE_BASE_PATH, AWS_LWA_AUTHORIZATION_SOURCE)."""

    @property
    def pass_through_path(self) -> str: ...

    @property
    def base_path(self) -> str: ...

    @property
    def authorization_source(self) -> str: ...


@dataclass
class EventRequest:
    method: str
    target: str                                 # path and query, as sent on the request line
    headers: list[tuple[bytes, bytes]]
    body: bytes
    shape: str                                  # v2 | v1 | alb | raw: how to answer
    context: dict | None


def _b(text: object) -> bytes:
    return str(text).replace("\r", "").replace("\n", "").encode("utf-8", "replace")


def event_request(payload: bytes, app: AdapterSettings) -> EventRequest:
    """The HTTP request an event stands for, as LWA makes it."""
    try:
        doc = json.loads(payload) if payload.strip() else {}
    except ValueError:
        doc = None
    ctx: dict[str, Any] = {}
    if isinstance(doc, dict):
        if isinstance(doc.get("requestContext"), dict):
            ctx = doc["requestContext"]
        if isinstance(ctx.get("http"), dict) and "rawPath" in doc:      # payload 2.0 (function URLs, HTTP APIs)
            method = str(ctx["http"].get("method") or "GET")
            path = str(doc.get("rawPath") or "/")
            query = str(doc.get("rawQueryString") or "")
            headers = [(str(k).lower().encode(), _b(v)) for k, v in (doc.get("headers") or {}).items()]
            if doc.get("cookies"):
                headers = [h for h in headers if h[0] != b"cookie"]
                headers.append((b"cookie", _b("; ".join(map(str, doc["cookies"])))))
            shape = "v2"
        elif "httpMethod" in doc:                                          # REST API (1.0) and ALB
            method = str(doc["httpMethod"])
            path = quote(str(doc.get("path") or "/"), safe="/%:@!$&'()*+,;=-._~")
            multi_q = doc.get("multiValueQueryStringParameters") or {}
            single_q = doc.get("queryStringParameters") or {}
            if multi_q:
                query = urlencode([(k, v) for k, vs in multi_q.items() for v in (vs or [])])
            else:
                query = urlencode(list(single_q.items()))
            multi_h = doc.get("multiValueHeaders") or {}
            if multi_h:
                headers = [(str(k).lower().encode(), _b(v)) for k, vs in multi_h.items() for v in (vs or [])]
            else:
                headers = [(str(k).lower().encode(), _b(v)) for k, v in (doc.get("headers") or {}).items()]
            shape = "alb" if "elb" in ctx else "v1"
        else:
            doc = None
    if not isinstance(doc, dict):
        # Not an HTTP event (SQS, a schedule, anything): POSTed as is to the pass-through path.
        return EventRequest("POST", app.pass_through_path, [(b"content-type", b"application/json")], payload,
                            "raw", None)
    raw_body = doc.get("body") or ""
    if doc.get("isBase64Encoded") and isinstance(raw_body, str):
        try:
            body = base64.b64decode(raw_body)
        except (binascii.Error, ValueError):
            body = raw_body.encode()
    else:
        body = raw_body.encode() if isinstance(raw_body, str) else json.dumps(raw_body).encode()
    if app.base_path and (path == app.base_path or path.startswith(app.base_path + "/")):
        path = path[len(app.base_path):] or "/"
    if app.authorization_source:
        source = app.authorization_source.encode()
        headers = [(b"authorization" if k == source else k, v) for k, v in headers if k != b"authorization"
                   or not any(n == source for n, _ in headers)]
    headers = [(k, v) for k, v in headers if k not in HOP_BY_HOP and k not in (b"content-length", b"expect")]
    target = path + (f"?{query}" if query else "")
    return EventRequest(method, target, headers, body, shape, ctx or None)


_TEXTUAL = ("text/", "application/json", "application/javascript", "application/xml", "application/xhtml+xml",
            "image/svg+xml", "application/x-javascript")


def _is_text(content_type: bytes | None) -> bool:
    if not content_type:
        return True
    ct = content_type.split(b";", 1)[0].strip().lower().decode("latin-1")
    return ct.startswith(_TEXTUAL) or ct.endswith(("+json", "+xml"))


def response_payload(shape: str, status: int, headers: list[tuple[bytes, bytes]], body: bytes,
                     invoke_mode: str) -> bytes:
    """The app's response as the event source expects it (LWA / lambda_http's shapes)."""
    if shape == "raw":
        return body
    single: dict[str, str] = {}
    multi: dict[str, list[str]] = {}
    cookies: list[str] = []
    content_type = None
    for name, value in headers:
        if name in HOP_BY_HOP or name == b"content-length":
            continue
        key, text = name.decode("latin-1"), value.decode("latin-1")
        if name == b"content-type":
            content_type = value
        if name == b"set-cookie" and shape == "v2":
            cookies.append(text)
            continue
        multi.setdefault(key, []).append(text)
        single[key] = f"{single[key]},{text}" if key in single and shape == "v2" else text
    if invoke_mode == "response_stream":
        prelude = {"statusCode": status, "headers": single, "cookies": cookies}
        return json.dumps(prelude).encode() + b"\x00" * 8 + body
    out: dict = {"statusCode": status, "headers": single}
    if shape != "v2":
        out["multiValueHeaders"] = multi
    if shape == "alb":
        from http import HTTPStatus

        with contextlib.suppress(ValueError):
            out["statusDescription"] = f"{status} {HTTPStatus(status).phrase}"
    if cookies:
        out["cookies"] = cookies
    if _is_text(content_type):
        try:
            out["body"] = body.decode()
            out["isBase64Encoded"] = False
        except UnicodeDecodeError:
            out["body"] = base64.b64encode(body).decode()
            out["isBase64Encoded"] = True
    else:
        out["body"] = base64.b64encode(body).decode()
        out["isBase64Encoded"] = True
    return json.dumps(out).encode()
