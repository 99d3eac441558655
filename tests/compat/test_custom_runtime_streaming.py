"""A custom runtime that streams its response (the Runtime API's streaming response mode: a chunked POST with
Lambda-Runtime-Function-Response-Mode: streaming): InvokeWithResponseStream and a RESPONSE_STREAM function URL pass
each piece on as it arrives, a failure part way ends the stream with the runtime's error, and a plain Invoke gets
the whole response."""

from __future__ import annotations

import http.client
import json
import re
import time

import pytest

from helpers import create_function, unique_name

pytestmark = pytest.mark.timeout(120)

PAUSE_S = 2.0

# Stdlib Python speaking the Runtime API by hand. The event says what to stream: "prelude" (an HTTP integration
# prelude, then the body), "raw" (bytes only) or "fail" (a piece, then the error in the trailers). Its pieces start
# with a capital letter: bytes that cannot begin JSON, which a function URL streams at once as octet-stream.
STREAMER = '''#!/usr/bin/python3
import base64, http.client, json, os, time
host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
conn = http.client.HTTPConnection(host, int(port))
while True:
    conn.request("GET", "/2018-06-01/runtime/invocation/next")
    resp = conn.getresponse()
    event = json.loads(resp.read())
    rid = resp.getheader("Lambda-Runtime-Aws-Request-Id")
    conn.putrequest("POST", f"/2018-06-01/runtime/invocation/{rid}/response")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.putheader("Lambda-Runtime-Function-Response-Mode", "streaming")
    conn.putheader("Trailer", "Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body")
    conn.endheaders()
    def chunk(data):
        conn.send(b"%x\\r\\n%b\\r\\n" % (len(data), data))
    params = event.get("queryStringParameters") or {}  # through a function URL: a payload 2.0 event
    mode = event.get("mode") or params.get("mode", "raw")
    pause = float(event.get("pause") or params.get("pause") or 0)
    if mode == "prelude":
        prelude = {"statusCode": 201, "headers": {"content-type": "text/plain", "x-streamed": "yes"},
                   "cookies": ["a=1"]}
        chunk(json.dumps(prelude).encode() + bytes(8))
    chunk(b"First\\n")
    time.sleep(pause)
    if mode == "fail":
        error = {"errorMessage": "broke mid-stream", "errorType": "Stream.Broke"}
        detail = base64.b64encode(json.dumps(error).encode())
        conn.send(b"0\\r\\nLambda-Runtime-Function-Error-Type: Stream.Broke\\r\\n"
                  b"Lambda-Runtime-Function-Error-Body: " + detail + b"\\r\\n\\r\\n")
    else:
        chunk(b"Last\\n")
        conn.send(b"0\\r\\n\\r\\n")
    conn.getresponse().read()
'''

URL_ID = re.compile(r"^http://([a-z0-9]{32})\.lambda-url\.")


@pytest.fixture(scope="module")
def streamer(lambda_client):
    name = unique_name("streamer")
    create_function(lambda_client, name, {"bootstrap": STREAMER}, Runtime="provided.al2023", handler="unused")
    url = lambda_client.create_function_url_config(FunctionName=name, AuthType="NONE",
                                                   InvokeMode="RESPONSE_STREAM")["FunctionUrl"]
    yield name, "/lamina/v1/url/" + URL_ID.match(url).group(1) + "/"
    lambda_client.delete_function(FunctionName=name)


def _stream_events(lambda_client, name: str, event: dict) -> list[tuple[float, dict]]:
    resp = lambda_client.invoke_with_response_stream(FunctionName=name, Payload=json.dumps(event))
    assert resp["StatusCode"] == 200
    return [(time.monotonic(), e) for e in resp["EventStream"]]


def test_invoke_with_response_stream_passes_pieces_on_as_they_come(lambda_client, streamer):
    name, _ = streamer
    events = _stream_events(lambda_client, name, {"mode": "raw", "pause": PAUSE_S})
    chunks = [(t, e["PayloadChunk"]["Payload"]) for t, e in events if "PayloadChunk" in e]
    assert b"".join(c for _, c in chunks) == b"First\nLast\n"
    assert chunks[0][1] == b"First\n"
    assert chunks[-1][0] - chunks[0][0] > PAUSE_S / 2  # the first piece came before the runtime sent the last
    assert set(events[-1][1]) == {"InvokeComplete"} and "ErrorCode" not in events[-1][1]["InvokeComplete"]


def test_invoke_with_response_stream_failure_part_way(lambda_client, streamer):
    name, _ = streamer
    events = [e for _, e in _stream_events(lambda_client, name, {"mode": "fail"})]
    assert [list(e) for e in events] == [["PayloadChunk"], ["InvokeComplete"]], events
    assert events[0]["PayloadChunk"]["Payload"] == b"First\n"
    complete = events[1]["InvokeComplete"]
    assert complete["ErrorCode"] == "Stream.Broke"
    assert json.loads(complete["ErrorDetails"])["errorMessage"] == "broke mid-stream"


def test_plain_invoke_gets_the_whole_streamed_response(lambda_client, streamer):
    name, _ = streamer
    resp = lambda_client.invoke(FunctionName=name, Payload=json.dumps({"mode": "raw"}))
    assert "FunctionError" not in resp
    assert resp["Payload"].read() == b"First\nLast\n"


def _url_get(port: int, query: str, path: str) -> tuple[http.client.HTTPResponse, http.client.HTTPConnection, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", f"{path}?{query}")
    resp = conn.getresponse()
    return resp, conn, time.monotonic()


def test_function_url_streams_with_the_prelude_head(lamina_server, streamer):
    _, path = streamer
    resp, conn, head_at = _url_get(lamina_server.port, f"mode=prelude&pause={PAUSE_S}", path)
    try:
        assert resp.status == 201
        assert resp.getheader("content-type") == "text/plain"
        assert resp.getheader("x-streamed") == "yes" and resp.getheader("set-cookie") == "a=1"
        assert resp.getheader("transfer-encoding") == "chunked"
        assert resp.read() == b"First\nLast\n"
        assert time.monotonic() - head_at > PAUSE_S / 2  # the head came with the first piece, not at the end
    finally:
        conn.close()


def test_function_url_streams_raw_bytes_as_octet_stream(lamina_server, streamer):
    _, path = streamer
    resp, conn, head_at = _url_get(lamina_server.port, f"mode=raw&pause={PAUSE_S}", path)
    try:
        assert resp.status == 200 and resp.getheader("content-type") == "application/octet-stream"
        assert resp.read() == b"First\nLast\n"
        assert time.monotonic() - head_at > PAUSE_S / 2  # bytes that cannot be JSON go out as they come
        conn.request("GET", f"{path}?mode=raw")  # the connection stays usable
        assert conn.getresponse().read() == b"First\nLast\n"
    finally:
        conn.close()


def test_function_url_streams_on_the_asgi_path_too(lamina_server, streamer):
    # curl sends `Expect: 100-continue` with a body over 1 KB: such requests take the ASGI path, not the hot path.
    _, path = streamer
    conn = http.client.HTTPConnection("127.0.0.1", lamina_server.port, timeout=60)
    try:
        conn.request("POST", f"{path}?mode=raw&pause={PAUSE_S}", b"x" * 2048, {"Expect": "100-continue"})
        resp = conn.getresponse()
        head_at = time.monotonic()
        assert resp.status == 200 and resp.getheader("content-type") == "application/octet-stream"
        assert resp.read() == b"First\nLast\n"
        assert time.monotonic() - head_at > PAUSE_S / 2
        conn.request("POST", f"{path}?mode=fail", b"x" * 2048, {"Expect": "100-continue"})
        resp = conn.getresponse()
        with pytest.raises(http.client.IncompleteRead) as info:
            resp.read()
        assert info.value.partial == b"First\n"
    finally:
        conn.close()


def test_function_url_stream_cut_short_when_the_function_fails(lamina_server, streamer):
    _, path = streamer
    resp, conn, _ = _url_get(lamina_server.port, "mode=fail", path)
    try:
        assert resp.status == 200
        with pytest.raises(http.client.IncompleteRead) as info:
            resp.read()
        assert info.value.partial == b"First\n"
    finally:
        conn.close()
