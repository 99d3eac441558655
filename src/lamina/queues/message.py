"""One message: its in-memory record, AWS's checksums, the checks on what a sender gives, receipt handles."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import struct
from dataclasses import dataclass

from lamina.queues import errors

READY, DELAYED, INFLIGHT = 0, 1, 2

MAX_ATTRIBUTES = 10
ATTRIBUTE_NAME = re.compile(r"[A-Za-z0-9_\-.]{1,256}")
# What a message body may contain (AWS's list), as the characters that are NOT allowed.
INVALID_BODY = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(slots=True, eq=False)
class Message:
    seq: int                          # enqueue order; a FIFO queue's SequenceNumber
    id: str
    body: str
    attributes: dict | None           # {name: {"DataType", "StringValue" | "BinaryValue" (base64)}}
    md5_body: str
    md5_attributes: str | None
    sent: float                       # epoch seconds
    visible: float                    # epoch seconds it can be received from (delay, or end of its visibility)
    receives: int = 0
    first_receive: float = 0.0
    group: str | None = None          # MessageGroupId
    dedup: str | None = None          # MessageDeduplicationId (FIFO)
    trace: str | None = None          # AWSTraceHeader
    dlq_source: str | None = None     # DeadLetterQueueSourceArn, once moved to a dead-letter queue
    state: int = READY
    handle: str = ""                  # the receipt handle of its latest receive
    size: int = 0                     # body + attributes, bytes (the 6 MB batch cap of event source mappings)

    def system(self) -> dict | None:
        out = {k: v for k, v in (("group", self.group), ("dedup", self.dedup), ("trace", self.trace),
                                 ("dlq", self.dlq_source)) if v is not None}
        return out or None


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _field(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def attributes_md5(attributes: dict) -> str:
    """MD5OfMessageAttributes: per attribute, sorted by name: name, data type, transport type (1 string, 2 binary),
    value — each length-prefixed (4 bytes, big-endian)."""
    out = bytearray()
    for name in sorted(attributes):
        attr = attributes[name]
        out += _field(name.encode()) + _field(attr["DataType"].encode())
        if "BinaryValue" in attr:
            out += b"\x02" + _field(base64.b64decode(attr["BinaryValue"]))
        else:
            out += b"\x01" + _field(attr["StringValue"].encode())
    return md5_hex(bytes(out))


def check_body(body: object) -> str:
    if not isinstance(body, str):
        raise errors.missing_parameter("MessageBody")
    if not body:
        raise errors.invalid_parameter("The request must contain the parameter MessageBody.")
    if INVALID_BODY.search(body):
        raise errors.invalid_contents()
    return body


def check_attributes(raw: object, system: bool = False) -> tuple[dict | None, int]:
    """Message attributes as given (JSON protocol shape), checked and normalised: ({name: {DataType, StringValue |
    BinaryValue}}, their size in bytes as AWS counts it)."""
    if raw is None or raw == {}:
        return None, 0
    if not isinstance(raw, dict):
        raise errors.invalid_parameter("MessageAttributes must be a map.")
    if not system and len(raw) > MAX_ATTRIBUTES:
        raise errors.invalid_parameter(f"Number of message attributes [{len(raw)}] exceeds the allowed maximum "
                                       f"[{MAX_ATTRIBUTES}].")
    out: dict = {}
    size = 0
    for name, value in raw.items():
        if system:
            if name != "AWSTraceHeader":
                raise errors.invalid_parameter(f"Message system attribute name '{name}' is invalid.")
        elif (not isinstance(name, str) or not ATTRIBUTE_NAME.fullmatch(name) or name.startswith(".")
              or name.endswith(".") or ".." in name or name.lower().startswith(("aws.", "amazon."))):
            raise errors.invalid_parameter(f"Message (user) attribute name '{name}' is invalid.")
        if not isinstance(value, dict):
            raise errors.invalid_parameter(f"Message (user) attribute '{name}' must be a structure.")
        data_type = value.get("DataType")
        if not isinstance(data_type, str) or not data_type:
            raise errors.invalid_parameter(f"The message attribute '{name}' must contain non-empty message attribute "
                                           "type.")
        base = data_type.split(".", 1)[0]
        if base not in ("String", "Number", "Binary"):
            raise errors.invalid_parameter(f"The type of message (user) attribute '{name}' is invalid. You must use "
                                           "only the following supported type prefixes: Binary, Number, String.")
        if value.get("StringListValues") or value.get("BinaryListValues"):
            raise errors.invalid_parameter("Message attribute list values in SendMessage operation are not "
                                           "supported.")
        if base == "Binary":
            blob = value.get("BinaryValue")
            if isinstance(blob, bytes | bytearray):
                blob = base64.b64encode(blob).decode()
            if not isinstance(blob, str) or not blob:
                raise errors.invalid_parameter(f"The message attribute '{name}' with type 'Binary' must use field "
                                               "'Binary'.")
            try:
                raw_bytes = base64.b64decode(blob, validate=True)
            except (binascii.Error, ValueError):
                raise errors.invalid_parameter(f"The message attribute '{name}' has an invalid binary value.") from None
            out[name] = {"DataType": data_type, "BinaryValue": blob}
            size += len(raw_bytes)
        else:
            text = value.get("StringValue")
            if text == "":
                raise errors.invalid_parameter(f"Message (user) attribute '{name}' must contain a non-empty value of "
                                               f"type '{base}'.")
            if not isinstance(text, str):
                raise errors.invalid_parameter(f"The message attribute '{name}' with type '{base}' must use field "
                                               "'String'.")
            if base == "Number":
                try:
                    float(text)
                except ValueError:
                    raise errors.invalid_parameter(f"Can't cast the value of message (user) attribute '{name}' to a "
                                                   "number.") from None
            out[name] = {"DataType": data_type, "StringValue": text}
            size += len(text.encode())
        size += len(name.encode()) + len(data_type.encode())
    return out, size


def new_handle(queue_id: int, seq: int, receives: int) -> str:
    token = f"{queue_id}:{seq}:{receives}:".encode() + base64.b32encode(os.urandom(10))
    return base64.urlsafe_b64encode(token).decode()


def parse_handle(handle: object) -> tuple[int, int, int]:
    """(queue id, message seq, receive number) of a receipt handle; ReceiptHandleIsInvalid otherwise."""
    if not isinstance(handle, str) or not handle:
        raise errors.missing_parameter("ReceiptHandle")
    try:
        queue_id, seq, receives, _ = base64.urlsafe_b64decode(handle.encode()).decode().split(":", 3)
        return int(queue_id), int(seq), int(receives)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise errors.receipt_handle_invalid(handle) from None
