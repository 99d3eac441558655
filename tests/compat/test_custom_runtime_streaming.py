"""A custom runtime that streams its response (the Runtime API's streaming response mode: a chunked POST with
Lambda-Runtime-Function-Response-Mode: streaming): InvokeWithResponseStream and a RESPONSE_STREAM function URL pass
each piece on as it arrives, a failure part way ends the stream with the runtime's error, and a plain Invoke gets
the whole response.

"As it arrives" is checked by order, not by time: asked to, the runtime sends its first piece and then waits for
a SIGUSR1 that the test sends to it (from the host) only once it holds that piece.
"""

from __future__ import annotations

import http.client
import json
import os
import signal

import pytest

from helpers import FunctionUrl, cmdline, create_function, descendants, environ, unique_name

pytestmark = pytest.mark.timeout(120)

GATE_WAIT_S = 30

# Stdlib Python speaking the Runtime API by hand. The event says what to stream: "prelude" (an HTTP integration
# prelude, then the body), "raw" (bytes only) or "fail" (a piece, then the error in the trailers). Its pieces start
# with a capital letter: bytes that cannot begin JSON, which a function URL streams at once as octet-stream. With
# "gate", it sends its last piece only once it got a SIGUSR1 sent after its first piece (or, if none comes within
# GATE_WAIT_S, says so instead).
STREAMER = '''#!/usr/bin/python3
import base64, http.client, json, os, signal
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})  # taken with sigtimedwait below
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
    gate = bool(event.get("gate") or params.get("gate"))
    if mode == "prelude":
        prelude = {"statusCode": 201, "headers": {"content-type": "text/plain", "x-streamed": "yes"},
                   "cookies": ["a=1"]}
        chunk(json.dumps(prelude).encode() + bytes(8))
    while signal.sigtimedwait({signal.SIGUSR1}, 0):  # only a signal sent after the first piece counts
        pass
    chunk(b"First\\n")
    last = b"Last\\n"
    if gate and signal.sigtimedwait({signal.SIGUSR1}, GATE_WAIT_S) is None:
        last = b"Gate never opened\\n"
    if mode == "fail":
        error = {"errorMessage": "broke mid-stream", "errorType": "Stream.Broke"}
        detail = base64.b64encode(json.dumps(error).encode())
        conn.send(b"0\\r\\nLambda-Runtime-Function-Error-Type: Stream.Broke\\r\\n"
                  b"Lambda-Runtime-Function-Error-Body: " + detail + b"\\r\\n\\r\\n")
    else:
        chunk(last)
        conn.send(b"0\\r\\n\\r\\n")
    conn.getresponse().read()
'''.replace("GATE_WAIT_S", str(GATE_WAIT_S))


@pytest.fixture(scope="module")
def streamer(lambda_client, endpoint):
    name = unique_name("streamer")
    create_function(lambda_client, name, {"bootstrap": STREAMER}, Runtime="provided.al2023", handler="unused",
                    Timeout=2 * GATE_WAIT_S)  # a gate never opened says so, rather than the stream being cut
    url = lambda_client.create_function_url_config(FunctionName=name, AuthType="NONE",
                                                   InvokeMode="RESPONSE_STREAM")["FunctionUrl"]
    yield name, FunctionUrl(endpoint, url)
    lambda_client.delete_function(FunctionName=name)


def _open_gate(server_pid: int, name: str) -> None:
    """SIGUSR1 to the function's runtime processes: the one that holds a gated stream sends its last piece."""
    marker = f"AWS_LAMBDA_FUNCTION_NAME={name}\0".encode()
    runtimes = [pid for pid in descendants(server_pid) if b"bootstrap" in cmdline(pid) and marker in environ(pid)]
    assert runtimes, "no runtime process of the function found under the server"
    for pid in runtimes:
        os.kill(pid, signal.SIGUSR1)


def test_invoke_with_response_stream_passes_pieces_on_as_they_come(lambda_client, lamina_server, streamer):
    name, _ = streamer
    resp = lambda_client.invoke_with_response_stream(FunctionName=name, Payload=json.dumps({"gate": True}))
    assert resp["StatusCode"] == 200
    events = []
    for event in resp["EventStream"]:
        events.append(event)
        if len(events) == 1:  # the first piece is here while the runtime waits to send the last
            assert event == {"PayloadChunk": {"Payload": b"First\n"}}, event
            _open_gate(lamina_server.pid, name)
    assert b"".join(e["PayloadChunk"]["Payload"] for e in events if "PayloadChunk" in e) == b"First\nLast\n"
    assert set(events[-1]) == {"InvokeComplete"} and "ErrorCode" not in events[-1]["InvokeComplete"]


def test_invoke_with_response_stream_failure_part_way(lambda_client, streamer):
    name, _ = streamer
    resp = lambda_client.invoke_with_response_stream(FunctionName=name, Payload=json.dumps({"mode": "fail"}))
    assert resp["StatusCode"] == 200
    events = list(resp["EventStream"])
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


def _gated(lamina_server, streamer, method: str, query: str, body: bytes | None = None,
           headers: list[tuple[str, str]] | None = None) -> tuple[http.client.HTTPResponse, bytes]:
    """Through the function URL (path form), a gated stream: (response, the whole body), having opened the gate
    only once the first piece was here."""
    name, url = streamer
    conn = url.send(method, f"/?{query}&gate=1", body, headers, form="path")
    try:
        resp = conn.getresponse()
        first = resp.read(len(b"First\n"))
        assert first == b"First\n", (resp.status, first)
        _open_gate(lamina_server.pid, name)
        return resp, first + resp.read()
    finally:
        conn.close()


def test_function_url_streams_with_the_prelude_head(lamina_server, streamer):
    # The head comes with the first piece, not at the end.
    resp, body = _gated(lamina_server, streamer, "GET", "mode=prelude")
    assert resp.status == 201
    assert resp.getheader("content-type") == "text/plain"
    assert resp.getheader("x-streamed") == "yes" and resp.getheader("set-cookie") == "a=1"
    assert resp.getheader("transfer-encoding") == "chunked"
    assert body == b"First\nLast\n"


def test_function_url_streams_raw_bytes_as_octet_stream(lamina_server, streamer):
    # Bytes that cannot be JSON go out as they come.
    resp, body = _gated(lamina_server, streamer, "GET", "mode=raw")
    assert resp.status == 200 and resp.getheader("content-type") == "application/octet-stream"
    assert body == b"First\nLast\n"
    _, url = streamer
    conn = url.send("GET", "/?mode=raw", form="path")
    try:
        resp = conn.getresponse()
        assert resp.read() == b"First\nLast\n"
        conn.request("GET", f"/lamina/v1/url/{url.url_id}/?mode=raw")  # the connection stays usable
        assert conn.getresponse().read() == b"First\nLast\n"
    finally:
        conn.close()


def test_function_url_streams_on_the_asgi_path_too(lamina_server, streamer):
    # curl sends `Expect: 100-continue` with a body over 1 KB: such requests take the ASGI path, not the hot path.
    expect = [("Expect", "100-continue")]
    resp, body = _gated(lamina_server, streamer, "POST", "mode=raw", b"x" * 2048, expect)
    assert resp.status == 200 and resp.getheader("content-type") == "application/octet-stream"
    assert body == b"First\nLast\n"
    _, url = streamer
    conn = url.send("POST", "/?mode=fail", b"x" * 2048, expect, form="path")
    try:
        resp = conn.getresponse()
        with pytest.raises(http.client.IncompleteRead) as info:
            resp.read()
        assert info.value.partial == b"First\n"
    finally:
        conn.close()


def test_function_url_stream_cut_short_when_the_function_fails(streamer):
    _, url = streamer
    conn = url.send("GET", "/?mode=fail", form="path")
    try:
        resp = conn.getresponse()
        assert resp.status == 200
        with pytest.raises(http.client.IncompleteRead) as info:
            resp.read()
        assert info.value.partial == b"First\n"
    finally:
        conn.close()
