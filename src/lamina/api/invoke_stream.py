"""InvokeWithResponseStream: POST /2021-11-15/functions/{FunctionName}/response-streaming-invocations.

The same validation as Invoke, then a 200 whose body is an AWS event stream: PayloadChunk events
carrying the function's response, and a final InvokeComplete (ErrorCode and ErrorDetails when the
function failed, LogResult with X-Amz-Log-Type: Tail). A Python handler returns its result in one
piece, so that is one chunk (split only if large); a custom runtime that streams its response (the Runtime
API's streaming response mode) has each piece sent on as a PayloadChunk as it arrives.
"""

from __future__ import annotations

import uuid

import orjson
from starlette.types import Receive, Scope, Send

from lamina.api import eventstream
from lamina.dispatch.environment import tail_log
from lamina.functions.errors import AwsError
from lamina.functions.invoke import InvokeHandler, StreamedRun

PREFIX = "/2021-11-15/functions/"
SUFFIX = "/response-streaming-invocations"
STREAM_TYPES = ("RequestResponse", "DryRun")
CHUNK = 1024 * 1024


def match(path: str) -> str | None:
    """The raw (still percent-encoded) function name if path is an InvokeWithResponseStream path."""
    if path.startswith(PREFIX) and path.endswith(SUFFIX):
        name = path[len(PREFIX) : -len(SUFFIX)]
        if name and "/" not in name:
            return name
    return None


class StreamInvokeHandler(InvokeHandler):
    async def __call__(self, scope: Scope, receive: Receive, send: Send, raw_name: str) -> None:
        request_id = str(uuid.uuid4())
        rid = request_id.encode()
        head_sent = False
        run: StreamedRun | None = None
        try:
            p = await self.prepare(scope, receive, raw_name, STREAM_TYPES, "InvokeWithResponseStream")
            if p.invocation_type == "DryRun":
                await send({"type": "http.response.start", "status": 204,
                            "headers": [(b"x-amz-executed-version", p.target.version.encode()),
                                        (b"x-amzn-requestid", rid)]})
                await send({"type": "http.response.body", "body": b""})
                return
            run = StreamedRun(self.dispatcher, p.target.key, p.invocation(request_id))
            async for piece in run:
                if not head_sent:
                    await send(_head(p.target.version, rid))
                    head_sent = True
                await send({"type": "http.response.body", "more_body": True, "body": eventstream.payload_chunk(piece)})
            result = run.result()
        except AwsError as err:
            if head_sent:  # not raised once the function has run; never leave the stream open
                await send({"type": "http.response.body", "body": eventstream.invoke_complete(
                    err.code, orjson.dumps({"errorMessage": err.message}).decode())})
                return
            status, headers, body = err.render(request_id)
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        finally:
            if run is not None:
                run.cancel()  # our caller went away (shutdown), if it is still running
        if not head_sent:
            await send(_head(result.executed_version, rid))
        log_result = tail_log(result.log) if p.log_type == "Tail" else None
        if result.error_type is None:
            body = result.body
            for start in range(0, len(body), CHUNK):
                await send({"type": "http.response.body", "more_body": True,
                            "body": eventstream.payload_chunk(body[start : start + CHUNK])})
            complete = eventstream.invoke_complete(log_result=log_result)
        else:
            complete = eventstream.invoke_complete(result.error_type, _error_details(result.body), log_result)
        await send({"type": "http.response.body", "body": complete})


def _head(version: str, rid: bytes) -> dict:
    return {"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", eventstream.CONTENT_TYPE.encode()),
        (b"x-amz-executed-version", version.encode()),
        (b"x-amzn-requestid", rid),
    ]}


def _error_details(body: bytes) -> str:
    """The error document the runtime reported ({errorMessage, errorType, stackTrace...}), as a string."""
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError:
        return orjson.dumps({"errorMessage": body.decode("utf-8", "replace")}).decode()
    return body.decode("utf-8", "replace")
