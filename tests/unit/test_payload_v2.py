"""Payload format 2.0 events and response mapping (pure functions of the function URL gateway)."""

from __future__ import annotations

import base64

import pytest

from lamina.httpevent.event import build_event, clf_time, is_text
from lamina.httpevent.response import BadResponse, map_response, stream_response


def _event(**kwargs) -> dict:
    req = {"method": "GET", "raw_path": "/", "raw_query": "", "raw_headers": [], "body": b"",
           "source_ip": "10.0.0.1", "protocol": "HTTP/1.1", "extra_headers": {}, **kwargs}
    return build_event(**req, url_id="u" * 32, domain="d.example", account="anonymous", request_id="rid", now=0.5)


def test_minimal_event():
    event = _event()
    assert event == {
        "version": "2.0", "routeKey": "$default", "rawPath": "/", "rawQueryString": "", "headers": {},
        "requestContext": {
            "accountId": "anonymous", "apiId": "u" * 32, "domainName": "d.example", "domainPrefix": "u" * 32,
            "http": {"method": "GET", "path": "/", "protocol": "HTTP/1.1", "sourceIp": "10.0.0.1", "userAgent": ""},
            "requestId": "rid", "routeKey": "$default", "stage": "$default", "time": "01/Jan/1970:00:00:00 +0000",
            "timeEpoch": 500},
        "isBase64Encoded": False,
    }


def test_headers_cookies_query():
    event = _event(raw_query="x=1&x=2&y=%26&z", raw_headers=[
        (b"X-A", b"1"), (b"x-a", b"2"), (b"cookie", b"a=1; b=2"), (b"Cookie", b"c=3"), (b"user-agent", b"ua")],
        extra_headers={"x-forwarded-for": "10.0.0.1"})
    assert event["headers"] == {"x-a": "1,2", "user-agent": "ua", "x-forwarded-for": "10.0.0.1"}
    assert event["cookies"] == ["a=1", "b=2", "c=3"]
    assert event["queryStringParameters"] == {"x": "1,2", "y": "&", "z": ""}
    assert event["rawQueryString"] == "x=1&x=2&y=%26&z"
    assert event["requestContext"]["http"]["userAgent"] == "ua"
    proxied = _event(raw_headers=[(b"x-forwarded-for", b"1.2.3.4")], extra_headers={"x-forwarded-for": "10.0.0.1"})
    assert proxied["headers"]["x-forwarded-for"] == "1.2.3.4,10.0.0.1"


@pytest.mark.parametrize("content_type,text", [
    ("application/json", True), ("text/html; charset=utf-8", True), ("application/vnd.api+json", True),
    ("application/xml", True), ("application/octet-stream", False), ("image/png", False),
    ("application/x-www-form-urlencoded", False), (None, False),
])
def test_body_encoding(content_type, text):
    headers = [(b"content-type", content_type.encode())] if content_type else []
    event = _event(method="POST", raw_headers=headers, body=b"hello")
    assert event["isBase64Encoded"] is (not text)
    assert event["body"] == ("hello" if text else base64.b64encode(b"hello").decode())
    assert is_text(content_type) is text


def test_text_type_with_invalid_utf8_falls_back_to_base64():
    event = _event(method="POST", raw_headers=[(b"content-type", b"text/plain")], body=b"\xff\xfe")
    assert event["isBase64Encoded"] is True and base64.b64decode(event["body"]) == b"\xff\xfe"


def test_clf_time():
    assert clf_time(1583348638.390) == "04/Mar/2020:19:03:58 +0000"


@pytest.mark.parametrize("payload", [b'"Hello"', b"[1,2]", b"3.5", b"null", b"true", b'{"message":"hi"}'])
def test_inferred(payload):
    resp = map_response(payload)
    assert (resp.status, resp.headers, resp.body) == (200, [(b"content-type", b"application/json")], payload)


def test_structured():
    resp = map_response(b'{"statusCode": 302, "headers": {"Location": "/x", "X-N": 1, "X-B": true, "Skip": null,'
                        b' "Content-Length": "999"}, "cookies": ["a=1", "b=2"], "body": "moved"}')
    assert resp.status == 302 and resp.body == b"moved"
    assert resp.headers == [(b"location", b"/x"), (b"x-n", b"1"), (b"x-b", b"true"), (b"set-cookie", b"a=1"),
                            (b"set-cookie", b"b=2"), (b"content-type", b"application/json")]
    multi = map_response(b'{"statusCode": "200", "multiValueHeaders": {"X-M": ["a", "b"]}, "body": null}')
    assert multi.status == 200 and multi.body == b""
    assert (b"x-m", b"a") in multi.headers and (b"x-m", b"b") in multi.headers
    binary = map_response(b'{"statusCode": 200, "isBase64Encoded": true, "body": "AAEC"}')
    assert binary.body == b"\x00\x01\x02"


@pytest.mark.parametrize("payload", [
    b"not json", b'{"statusCode": 99}', b'{"statusCode": "abc"}', b'{"statusCode": true}',
    b'{"statusCode": 200, "headers": []}', b'{"statusCode": 200, "headers": {"A": "x\\r\\nB: y"}}',
    b'{"statusCode": 200, "headers": {"bad name": "x"}}', b'{"statusCode": 200, "cookies": "a=1"}',
    b'{"statusCode": 200, "isBase64Encoded": true, "body": "***"}',
])
def test_bad_responses(payload):
    with pytest.raises(BadResponse):
        map_response(payload)


def test_stream_response_forms():
    prelude = b'{"statusCode": 201, "headers": {"content-type": "text/plain"}, "cookies": ["c=1"]}'
    resp = stream_response(prelude + b"\x00" * 8 + b"streamed body\x00with nul")
    assert resp.status == 201 and resp.body == b"streamed body\x00with nul"
    assert (b"set-cookie", b"c=1") in resp.headers and (b"content-type", b"text/plain") in resp.headers
    assert stream_response(b'{"statusCode": 204}').status == 204
    assert stream_response(b'{"a": 1}').body == b'{"a": 1}'
    raw = stream_response(b"plain bytes")
    assert (raw.status, raw.body) == (200, b"plain bytes")
    assert raw.headers == [(b"content-type", b"application/octet-stream")]
    with pytest.raises(BadResponse):
        stream_response(b'{"statusCode": "x"}')
