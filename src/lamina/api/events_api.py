"""The EventBridge API (JSON 1.1, `X-Amz-Target: AWSEvents.<Operation>`) over eventbridge/bus.py: buses, rules,
targets, PutEvents, TestEventPattern. EventsRoute claims exactly the requests with that target, ahead of the REST
routes (as the Logs and SQS APIs do). Other operations get UnknownOperationException."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import Receive, Scope, Send

from lamina.api import model_types
from lamina.eventbridge.bus import EventBusService
from lamina.eventbridge.errors import BridgeError
from lamina.eventbridge.ids import new_id
from lamina.functions.rest import TargetRoute, json_object_body

TARGET_PREFIX = b"AWSEvents."
CONTENT_TYPE = "application/x-amz-json-1.1"
BODY_LIMIT = 1024 * 1024


def _reply(data: object, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type=CONTENT_TYPE,
                    headers={"x-amzn-requestid": new_id()})


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
        request = Request(scope, receive)
        operation = request.headers.get("x-amz-target", "").partition(".")[2]
        try:
            body = json_object_body(await request.body(), BODY_LIMIT, "ValidationException", BridgeError)
            handler = self.operations.get(operation)
            if handler is None:
                raise BridgeError("UnknownOperationException",
                                  f"Lamina does not implement the EventBridge operation {operation or '(none)'}; it "
                                  f"has {', '.join(sorted(self.operations))}.")
            problem = model_types.type_problem("events", operation, body)
            if problem is not None:
                raise BridgeError("SerializationException", problem)
            result = handler(body)
            response = _reply(await result if inspect.isawaitable(result) else result)
        except BridgeError as err:
            response = _reply({"__type": err.code, "message": err.message}, err.status)
        await response(scope, receive, send)


def routes(service: EventBusService) -> list[BaseRoute]:
    return [TargetRoute(TARGET_PREFIX, EventsApi(service))]
