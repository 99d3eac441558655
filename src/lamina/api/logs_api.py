"""The CloudWatch Logs API subset (JSON 1.1, `X-Amz-Target: Logs_20140328.<Operation>`) over functions' logs:
DescribeLogGroups, DescribeLogStreams, GetLogEvents, FilterLogEvents, Put/DeleteRetentionPolicy, DeleteLogGroup and
StartLiveTail (an event stream). LogsRoute claims exactly the requests with that target, ahead of the REST routes;
the service is functions/log_groups.py. Other operations get UnknownOperationException, never a silent success."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute
from starlette.types import Receive, Scope, Send

from lamina.api import eventstream
from lamina.functions.errors import AwsError
from lamina.functions.filter_pattern import compile_pattern
from lamina.functions.log_groups import LogGroupService, logs_error
from lamina.functions.rest import TargetRoute, json_object_body

TARGET_PREFIX = b"Logs_20140328."
CONTENT_TYPE = "application/x-amz-json-1.1"
BODY_LIMIT = 1024 * 1024

_INITIAL_RESPONSE = eventstream.event_headers("initial-response", "application/json")
_SESSION_START = eventstream.event_headers("sessionStart", "application/json")
_SESSION_UPDATE = eventstream.event_headers("sessionUpdate", "application/json")


def _reply(data: object | None) -> Response:
    return Response(orjson.dumps(data if data is not None else {}), media_type=CONTENT_TYPE,
                    headers={"x-amzn-requestid": str(uuid.uuid4())})


def _error(err: AwsError) -> Response:
    status, headers, body = err.render()
    return Response(body, status_code=status, headers={k.decode(): v.decode() for k, v in headers
                                                       if k != b"content-length"},
                    media_type=CONTENT_TYPE)


class LogsApi:
    def __init__(self, service: LogGroupService) -> None:
        self.service = service
        s = service
        self.operations: dict[str, Callable[[dict], object]] = {
            "DescribeLogGroups": s.describe_log_groups,
            "DescribeLogStreams": s.describe_log_streams,
            "GetLogEvents": s.get_log_events,
            "FilterLogEvents": s.filter_log_events,
            "PutRetentionPolicy": s.put_retention_policy,
            "DeleteRetentionPolicy": s.delete_retention_policy,
            "DeleteLogGroup": s.delete_log_group,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        operation = request.headers.get("x-amz-target", "").partition(".")[2]
        try:
            body = json_object_body(await request.body(), BODY_LIMIT, "InvalidParameterException", logs_error)
            if operation == "StartLiveTail":
                response = self.live_tail(body)
            elif operation in self.operations:
                response = _reply(self.operations[operation](body))
            else:
                raise logs_error("UnknownOperationException",
                                 f"Lamina does not implement the CloudWatch Logs operation {operation or '(none)'}; it "
                                 f"has {', '.join(sorted([*self.operations, 'StartLiveTail']))}.")
        except AwsError as err:
            response = _error(err)
        await response(scope, receive, send)

    def live_tail(self, body: dict) -> Response:
        names = self.service.live_tail_functions(body)
        groups = [self.service.group_arn("/aws/lambda/" + n) for n in names]

        async def stream() -> AsyncIterator[bytes]:
            yield eventstream.encode(_INITIAL_RESPONSE, b"{}")
            start = {"requestId": str(uuid.uuid4()), "sessionId": str(uuid.uuid4()), "logGroupIdentifiers": groups,
                     "logStreamNames": body.get("logStreamNames") or [],
                     "logStreamNamePrefixes": body.get("logStreamNamePrefixes") or [],
                     "logEventFilterPattern": body.get("logEventFilterPattern") or ""}
            yield eventstream.encode(_SESSION_START, orjson.dumps(start))
            async for batch in self.service.live_tail(names, body):
                yield eventstream.encode(_SESSION_UPDATE, orjson.dumps(
                    {"sessionMetadata": {"sampled": False}, "sessionResults": batch}))

        compile_pattern(body.get("logEventFilterPattern"))  # a bad pattern is an error before the stream starts
        return StreamingResponse(stream(), media_type=eventstream.CONTENT_TYPE,
                                 headers={"x-amzn-requestid": str(uuid.uuid4())})


def routes(service: LogGroupService) -> list[BaseRoute]:
    return [TargetRoute(TARGET_PREFIX, LogsApi(service))]
