"""InvokeWithResponseStream through boto3's EventStream, and the raw event-stream frames on the wire."""

from __future__ import annotations

import base64
import json

import pytest
from botocore.eventstream import EventStreamBuffer

from helpers import create_function, failure, raw_request, unique_name

pytestmark = pytest.mark.timeout(90)

STREAM_HANDLER = '''
def handler(event, context):
    if event.get("raise"):
        raise ValueError(event["raise"])
    if event.get("big"):
        return {"data": "x" * int(event["big"])}
    return {"echo": event, "request_id": context.aws_request_id}
'''


@pytest.fixture(scope="module")
def stream_fn(lambda_client):
    name = unique_name("stream")
    create_function(lambda_client, name, {"app.py": STREAM_HANDLER})
    yield name
    lambda_client.delete_function(FunctionName=name)


def _events(resp) -> list[dict]:
    return list(resp["EventStream"])


def test_stream_chunks_and_complete(lambda_client, stream_fn):
    resp = lambda_client.invoke_with_response_stream(FunctionName=stream_fn, Payload=json.dumps({"a": [1, 2]}))
    assert resp["StatusCode"] == 200
    assert resp["ExecutedVersion"] == "$LATEST"
    assert resp["ResponseStreamContentType"] == "application/vnd.amazon.eventstream"
    events = _events(resp)
    assert set(events[-1]) == {"InvokeComplete"}, events
    assert "ErrorCode" not in events[-1]["InvokeComplete"]
    chunks = [e["PayloadChunk"]["Payload"] for e in events[:-1]]
    assert chunks, events
    body = json.loads(b"".join(chunks))
    assert body["echo"] == {"a": [1, 2]}
    assert body["request_id"] == resp["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]


def test_stream_log_tail(lambda_client, stream_fn):
    resp = lambda_client.invoke_with_response_stream(FunctionName=stream_fn, Payload=b"{}", LogType="Tail")
    complete = _events(resp)[-1]["InvokeComplete"]
    log = base64.b64decode(complete["LogResult"]).decode()
    assert "START RequestId:" in log and "REPORT RequestId:" in log, log


def test_stream_large_result_spans_chunks(lambda_client, stream_fn):
    size = 3 * 1024 * 1024
    resp = lambda_client.invoke_with_response_stream(FunctionName=stream_fn, Payload=json.dumps({"big": size}))
    events = _events(resp)
    chunks = [e["PayloadChunk"]["Payload"] for e in events if "PayloadChunk" in e]
    assert len(chunks) > 1
    assert json.loads(b"".join(chunks))["data"] == "x" * size
    assert "InvokeComplete" in events[-1]


def test_result_over_the_synchronous_limit(lambda_client, stream_fn):
    resp = lambda_client.invoke(FunctionName=stream_fn, Payload=json.dumps({"big": 7 * 1024 * 1024}))
    assert resp["FunctionError"] == "Unhandled"
    err = json.loads(resp["Payload"].read())
    assert err["errorType"] == "Function.ResponseSizeTooLarge"
    assert err["errorMessage"].endswith("exceeded maximum allowed payload size (6291556 bytes).")


def test_stream_function_error(lambda_client, stream_fn):
    resp = lambda_client.invoke_with_response_stream(FunctionName=stream_fn, Payload=json.dumps({"raise": "kaput"}))
    assert resp["StatusCode"] == 200
    events = _events(resp)
    assert [list(e) for e in events] == [["InvokeComplete"]], events
    complete = events[0]["InvokeComplete"]
    assert complete["ErrorCode"] == "ValueError"
    details = json.loads(complete["ErrorDetails"])
    assert details["errorMessage"] == "kaput" and details["errorType"] == "ValueError"


def test_stream_request_errors(lambda_client, stream_fn):
    stream = lambda_client.invoke_with_response_stream
    assert failure(stream, FunctionName=unique_name("nope"), Payload=b"{}")[:2] == (404, "ResourceNotFoundException")
    assert failure(stream, FunctionName=stream_fn, Payload=b"{not json")[:2] == (400, "InvalidRequestContentException")
    assert failure(stream, FunctionName=stream_fn, Payload=b"{}", InvocationType="Event")[:2] == \
        (400, "InvalidParameterValueException")


def test_stream_dry_run(lambda_client, stream_fn):
    resp = lambda_client.invoke_with_response_stream(FunctionName=stream_fn, Payload=b"{}", InvocationType="DryRun")
    assert resp["StatusCode"] == 204
    assert _events(resp) == []


def test_stream_wire_frames(endpoint, stream_fn):
    resp = raw_request(endpoint, "POST", f"/2021-11-15/functions/{stream_fn}/response-streaming-invocations",
                       body=b'{"k": "v"}')
    assert resp.status == 200, resp.describe()
    assert resp.headers["content-type"] == "application/vnd.amazon.eventstream"
    buf = EventStreamBuffer()
    buf.add_data(resp.body)
    messages = list(buf)  # the decoder checks both CRCs and the lengths
    assert len(messages) == 2
    chunk, complete = messages
    assert chunk.headers == {":event-type": "PayloadChunk", ":content-type": "application/octet-stream",
                             ":message-type": "event"}
    assert json.loads(chunk.payload)["echo"] == {"k": "v"}
    assert complete.headers == {":event-type": "InvokeComplete", ":content-type": "application/json",
                                ":message-type": "event"}
    assert json.loads(complete.payload) == {}
