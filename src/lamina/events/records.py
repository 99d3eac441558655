"""What destinations and dead-letter queues receive: AWS's invocation record and DLQ message attributes.

The record (spec/events.md §1.4, as recorded against AWS):

    {"version": "1.0", "timestamp": "2019-11-14T18:16:05.568Z",
     "requestContext": {"requestId": "...", "functionArn": "arn:...:function:NAME:$LATEST",
                        "condition": "RetriesExhausted", "approximateInvokeCount": 3},
     "requestPayload": {...the event...},
     "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
     "responsePayload": {...the function's result or error...}}

A success has no functionError; an event that never ran (ZeroReservedConcurrency, or throttled until it
expired) has no response fields.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import orjson

from lamina.dispatch.invocation import InvokeResult
from lamina.store.async_events import AsyncEvent

ERROR_MESSAGE_LIMIT = 1024


@dataclass(frozen=True, slots=True)
class Outcome:
    """One event's result as a destination gets it."""

    record: bytes                  # the JSON record above
    success: bool
    function_arn: str              # requestContext.functionArn


def iso_timestamp(now: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"


def function_arn(event: AsyncEvent) -> str:
    """The invoked ARN with its qualifier, $LATEST when invoked without one (as AWS reports it)."""
    base = event.invoked_arn
    if event.qualifier is None:
        return base + ":$LATEST"
    return base


def _json(data: bytes) -> object:
    """Embed bytes that are JSON as they are; anything else as a string."""
    try:
        orjson.loads(data)
    except orjson.JSONDecodeError:
        return data.decode("utf-8", "replace")
    return orjson.Fragment(data)


def record(event: AsyncEvent, condition: str, result: InvokeResult | None, now: float | None = None) -> Outcome:
    arn = function_arn(event)
    out: dict = {
        "version": "1.0",
        "timestamp": iso_timestamp(time.time() if now is None else now),
        "requestContext": {"requestId": event.id, "functionArn": arn, "condition": condition,
                           "approximateInvokeCount": event.attempts},
        "requestPayload": _json(event.payload),
    }
    if result is not None:
        context: dict = {"statusCode": 200, "executedVersion": result.executed_version}
        if result.error_type is not None:
            context["functionError"] = "Unhandled"
        out["responseContext"] = context
        out["responsePayload"] = _json(result.body) if result.body else None
    return Outcome(orjson.dumps(out), condition == "Success", arn)


def dead_letter_attributes(event: AsyncEvent, result: InvokeResult | None, reason: str) -> dict[str, dict[str, str]]:
    """The DLQ message's attributes (the body is the event itself): RequestID, ErrorCode (a Number: the status
    the invocation got, 200 when the function ran and failed) and ErrorMessage (its first 1 KB)."""
    if result is not None:
        code = "200"
        message = reason
        try:
            body = orjson.loads(result.body)
            if isinstance(body, dict) and isinstance(body.get("errorMessage"), str):
                message = body["errorMessage"]
        except orjson.JSONDecodeError:
            pass
    else:
        code, message = "429", reason
    return {"RequestID": {"DataType": "String", "StringValue": event.id},
            "ErrorCode": {"DataType": "Number", "StringValue": code},
            "ErrorMessage": {"DataType": "String", "StringValue": message[:ERROR_MESSAGE_LIMIT]}}
