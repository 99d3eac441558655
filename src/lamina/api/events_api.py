"""The EventBridge API (JSON 1.1, `X-Amz-Target: AWSEvents.<Operation>`) over eventbridge/bus.py: buses, rules,
targets, PutEvents, TestEventPattern. EventsRoute claims exactly the requests with that target, ahead of the REST
routes (as the Logs and SQS APIs do). Other operations get UnknownOperationException.

PutEvents is the hot one, so the app speaks ASGI itself (the body read from `receive`, the answer sent as two
messages with its headers made here) rather than through Starlette's Request and Response, and a PutEvents body
whose members are plainly of the right types skips the model-driven type check (_put_events_typed)."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

import orjson
from starlette.routing import BaseRoute
from starlette.types import Receive, Scope, Send

from lamina.api import model_types
from lamina.eventbridge.bus import EventBusService
from lamina.eventbridge.errors import BridgeError
from lamina.eventbridge.ids import new_id
from lamina.functions.rest import TargetRoute, json_object_body

TARGET_PREFIX = b"AWSEvents."
CONTENT_TYPE = b"application/x-amz-json-1.1"
BODY_LIMIT = 1024 * 1024
_STRING_MEMBERS = frozenset(("Source", "DetailType", "Detail", "EventBusName", "TraceHeader"))


async def _reply(send: Send, data: object, status: int = 200) -> None:
    body = orjson.dumps(data)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", CONTENT_TYPE), (b"content-length", b"%d" % len(body)),
                            (b"x-amzn-requestid", new_id().encode())]})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive) -> bytes:
    """The request's body; stops reading once it is over the limit (json_object_body then refuses it)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":   # the client went away
            break
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False) or size > BODY_LIMIT:
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _put_events_typed(body: dict) -> bool:
    """True when every member of a PutEvents request is of its model type (strings, Resources a list of strings,
    Time a number or a string): model_types.type_problem would find nothing. False means "look": the generic check
    then says what, if anything, is wrong."""
    endpoint = body.get("EndpointId")
    if endpoint is not None and type(endpoint) is not str:
        return False
    entries = body.get("Entries")
    if entries is None:
        return True
    if type(entries) is not list:
        return False
    for entry in entries:
        if type(entry) is not dict:
            return False
        for key, value in entry.items():
            if value is None:
                continue
            if key in _STRING_MEMBERS:
                if type(value) is not str:
                    return False
            elif key == "Resources":
                if type(value) is not list or any(r is not None and type(r) is not str for r in value):
                    return False
            elif key == "Time" and type(value) not in (int, float, str):
                return False
    return True


class EventsApi:
    def __init__(self, service: EventBusService) -> None:
        s = service
        self.operations: dict[str, Callable[[dict], dict | Awaitable[dict]]] = {
            "CreateEventBus": s.create_event_bus, "DescribeEventBus": s.describe_event_bus,
            "ListEventBuses": s.list_event_buses, "DeleteEventBus": s.delete_event_bus,
            "PutRule": s.put_rule, "DescribeRule": s.describe_rule, "DeleteRule": s.delete_rule,
            "ListRules": s.list_rules, "EnableRule": s.enable_rule, "DisableRule": s.disable_rule,
            "PutTargets": s.put_targets, "RemoveTargets": s.remove_targets,
            "ListTargetsByRule": s.list_targets_by_rule, "PutEvents": s.put_events,
            "TestEventPattern": s.test_event_pattern,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        operation = ""
        for name, value in scope["headers"]:
            if name == b"x-amz-target":
                operation = value.decode("latin-1").partition(".")[2]
                break
        try:
            body = json_object_body(await _read_body(receive), BODY_LIMIT, "ValidationException", BridgeError)
            handler = self.operations.get(operation)
            if handler is None:
                raise BridgeError("UnknownOperationException",
                                  f"Lamina does not implement the EventBridge operation {operation or '(none)'}; it "
                                  f"has {', '.join(sorted(self.operations))}.")
            if operation != "PutEvents" or not _put_events_typed(body):
                problem = model_types.type_problem("events", operation, body)
                if problem is not None:
                    raise BridgeError("SerializationException", problem)
            result = handler(body)
            data = await result if inspect.isawaitable(result) else result
        except BridgeError as err:
            await _reply(send, {"__type": err.code, "message": err.message}, err.status)
            return
        await _reply(send, data)


def routes(service: EventBusService) -> list[BaseRoute]:
    return [TargetRoute(TARGET_PREFIX, EventsApi(service))]
