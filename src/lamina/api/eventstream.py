"""AWS event-stream framing (application/vnd.amazon.eventstream), encoder side.

A message is: total length (u32), headers length (u32), CRC32 of those 8 bytes, the headers,
the payload, and a CRC32 of everything before it. A header is a 1-byte name length, the name,
a type byte (7 = string), a u16 value length and the value. All integers are big-endian.

InvokeWithResponseStream sends PayloadChunk events with the raw payload and ends with one
InvokeComplete event whose payload is JSON {ErrorCode, ErrorDetails, LogResult}.
"""

from __future__ import annotations

import struct
import zlib

import orjson

CONTENT_TYPE = "application/vnd.amazon.eventstream"
_U32 = struct.Struct(">I")
_PRELUDE = struct.Struct(">II")


def _string_header(name: str, value: str) -> bytes:
    raw_name, raw_value = name.encode(), value.encode()
    return bytes((len(raw_name),)) + raw_name + b"\x07" + struct.pack(">H", len(raw_value)) + raw_value


def event_headers(event_type: str, content_type: str) -> bytes:
    return (_string_header(":event-type", event_type) + _string_header(":content-type", content_type)
            + _string_header(":message-type", "event"))


def encode(headers: bytes, payload: bytes) -> bytes:
    """One complete message with the given (already encoded) headers."""
    prelude = _PRELUDE.pack(16 + len(headers) + len(payload), len(headers))
    head = prelude + _U32.pack(zlib.crc32(prelude)) + headers
    return b"".join((head, payload, _U32.pack(zlib.crc32(payload, zlib.crc32(head)))))


_PAYLOAD_CHUNK = event_headers("PayloadChunk", "application/octet-stream")
_INVOKE_COMPLETE = event_headers("InvokeComplete", "application/json")


def payload_chunk(data: bytes) -> bytes:
    return encode(_PAYLOAD_CHUNK, data)


def invoke_complete(error_code: str | None = None, error_details: str | None = None,
                    log_result: str | None = None) -> bytes:
    body: dict[str, str] = {}
    if error_code is not None:
        body["ErrorCode"] = error_code
    if error_details is not None:
        body["ErrorDetails"] = error_details
    if log_result is not None:
        body["LogResult"] = log_result
    return encode(_INVOKE_COMPLETE, orjson.dumps(body))
