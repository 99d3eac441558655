"""The event-stream encoder against botocore's decoder (which checks lengths and both CRCs)."""

from __future__ import annotations

import json

import pytest
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer

from lamina.api import eventstream


def _decode(data: bytes, step: int | None = None) -> list:
    buf = EventStreamBuffer()
    messages = []
    step = step or len(data) or 1
    for start in range(0, len(data), step):
        buf.add_data(data[start : start + step])
        messages.extend(buf)
    return messages


@pytest.mark.parametrize("payload", [b"", b"abc", bytes(range(256)) * 300])
def test_payload_chunk_round_trip(payload):
    (msg,) = _decode(eventstream.payload_chunk(payload))
    assert msg.payload == payload
    assert msg.headers == {":event-type": "PayloadChunk", ":content-type": "application/octet-stream",
                           ":message-type": "event"}
    assert msg.prelude.total_length == len(eventstream.payload_chunk(payload))


def test_invoke_complete_fields():
    (msg,) = _decode(eventstream.invoke_complete("Runtime.ExitError", "it died", "bG9n"))
    assert msg.headers[":event-type"] == "InvokeComplete"
    assert json.loads(msg.payload) == {"ErrorCode": "Runtime.ExitError", "ErrorDetails": "it died",
                                       "LogResult": "bG9n"}
    (msg,) = _decode(eventstream.invoke_complete())
    assert json.loads(msg.payload) == {}


def test_stream_of_messages_fed_byte_by_byte():
    data = eventstream.payload_chunk(b"one") + eventstream.payload_chunk(b"two") + eventstream.invoke_complete()
    messages = _decode(data, step=1)
    assert [m.payload for m in messages[:2]] == [b"one", b"two"]
    assert messages[2].headers[":event-type"] == "InvokeComplete"


def test_corruption_is_detected():
    data = bytearray(eventstream.payload_chunk(b"payload"))
    data[-6] ^= 0xFF
    with pytest.raises(ChecksumMismatch):
        _decode(bytes(data))
