"""The Python runtime maps a BUFFERED function URL's result itself (KIND_HTTP_RESULT): what it maps must be what
the server's httpevent.response.map_response makes of the same result's JSON, and what it cannot map it leaves to
the server."""

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lamina.dispatch.environment import _http_result
from lamina.httpevent.headers import DROPPED, header_block_ok
from lamina.httpevent.response import BadResponse, map_response
from lamina.runtime.http_result import HTTP_DROPPED, http_response
from lamina.runtime.wire import HTTP_PREFIX


def server_view(result):
    """(status, header block, body) as the server maps the result's JSON, or None where it answers 502."""
    try:
        response = map_response(json.dumps(result).encode())
    except BadResponse:
        return None
    block = b"".join(b"%b: %b\r\n" % (name, value) for name, value in response.headers)
    return response.status, block, response.body


CASES = [
    {"statusCode": 200, "headers": {"content-type": "text/plain"}, "body": "Hello, world!"},
    {"statusCode": "201", "body": "created"},
    {"statusCode": 204},
    {"statusCode": 200, "headers": {"X-Up": "A", "Content-Length": "5", "Connection": "close", "x-none": None}},
    {"statusCode": 200, "headers": {"x-b": True, "x-i": 42, "x-big": 2 ** 63 - 1}, "body": "é ✓"},
    {"statusCode": 302, "multiValueHeaders": {"Location": ["/a"], "X-Two": ["1", None, "2"]},
     "cookies": ["a=1", "b=2"]},
    {"statusCode": 200, "headers": {"x-m": "h"}, "multiValueHeaders": {"x-m": ["ignored"]}},
    {"statusCode": 200, "multiValueHeaders": {"Content-Type": ["text/html"]}, "body": "<p>"},
    {"statusCode": 200, "body": base64.b64encode(b"\x00\x01\xff").decode(), "isBase64Encoded": True},
    {"statusCode": 200, "body": "not base64 but flag is 1", "isBase64Encoded": 1},
    {"statusCode": 200, "headers": {"x-tab": "a\tb"}},
    {"statusCode": 599, "headers": {}},
]

FALLBACK = [  # left to the server (which answers 502 for most of them, or maps what the runtime does not)
    {"statusCode": 200, "headers": {"x-bad": "a\r\nb"}},
    {"statusCode": 200, "headers": {"x-ctl": "a\x01"}},
    {"statusCode": 200, "headers": {"bad name": "x"}},
    {"statusCode": 200, "headers": {"x-f": 1.5}},
    {"statusCode": 200, "headers": {1: "x"}},
    {"statusCode": 600},
    {"statusCode": True},
    {"statusCode": "²"},
    {"statusCode": 200, "body": {"json": "body"}},
    {"statusCode": 200, "body": "***", "isBase64Encoded": True},
    {"statusCode": 200, "cookies": [None]},
    {"statusCode": 200, "extra": "key"},
    {"statusCode": 200, "headers": ["not", "a", "dict"]},
    {"statusCode": 200, "multiValueHeaders": {"x": "not a list"}},
    {"statusCode": 200, "body": "\ud800"},
    {"body": "no statusCode"},
    ["inferred"],
    "inferred",
]


@pytest.mark.parametrize("result", CASES)
def test_mapped_like_the_server(result):
    mapped = http_response(result)
    assert mapped is not None
    assert mapped == server_view(result)
    assert header_block_ok(mapped[1])


@pytest.mark.parametrize("result", FALLBACK, ids=repr)
def test_left_to_the_server(result):
    assert http_response(result) is None


simple = st.one_of(st.none(), st.booleans(), st.integers(-(2 ** 70), 2 ** 70), st.floats(), st.text(max_size=8))
names = st.one_of(st.sampled_from(["Content-Type", "content-length", "X-A", "x-a", "Set-Cookie", "bad name", "é"]),
                  st.text(max_size=6))
results = st.fixed_dictionaries(
    {"statusCode": st.one_of(st.integers(90, 610), st.sampled_from(["200", "404", "x"]), simple)},
    optional={"headers": st.one_of(st.dictionaries(names, simple, max_size=4), simple),
              "multiValueHeaders": st.one_of(st.dictionaries(names, st.one_of(st.lists(simple, max_size=3), simple),
                                                             max_size=3), simple),
              "cookies": st.one_of(st.lists(simple, max_size=3), simple),
              "body": simple,
              "isBase64Encoded": simple})


@settings(max_examples=400, deadline=None)
@given(results)
def test_never_maps_differently(result):
    mapped = http_response(result)
    if mapped is not None:
        assert mapped == server_view(result)


def frame(status, block, body=b"b"):
    return HTTP_PREFIX.pack(status, len(block)) + block + body


def test_server_sends_only_checked_blocks():
    assert _http_result(frame(200, b"content-type: text/plain\r\nx-a: 1\r\n")) == \
        ((200, b"content-type: text/plain\r\nx-a: 1\r\n"), b"b")
    for bad in (b"x-a: 1\r\nx-b: 2\r\n\r\nHTTP/1.1 200 OK\r\n", b"content-length: 0\r\n", b"Transfer-Encoding: x\r\n",
                b"X-Upper: 1\r\n", b"x-a: 1\n", b"x-a: \x00\r\n", b"x-a 1\r\n", b"connection: close\r\n"):
        assert _http_result(frame(200, bad))[0] is None, bad
    assert _http_result(frame(99, b""))[0] is None
    assert _http_result(b"\x00")[0] is None
    assert _http_result(HTTP_PREFIX.pack(200, 50) + b"short")[0] is None


def test_runtime_drops_the_headers_the_server_drops():
    """The runtime keeps its own copy of the headers Lamina sets itself (it cannot import lamina.httpevent)."""
    assert {name.encode() for name in HTTP_DROPPED} == DROPPED
