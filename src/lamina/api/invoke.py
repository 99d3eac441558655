"""Invoke (POST /2015-03-31/functions/{FunctionName}/invocations) as a bare ASGI callable, for the requests the
HTTP hot path hands on (pipelined, `Expect: 100-continue`, ...): the same steps (functions/invoke.py), written as
ASGI messages."""

from __future__ import annotations

from starlette.types import Receive, Scope, Send

from lamina.dispatch import ids
from lamina.dispatch.invocation import Invocation
from lamina.functions.errors import AwsError
from lamina.functions.invoke import InvokeHandler, wait


class InvokeEndpoint:
    def __init__(self, handler: InvokeHandler) -> None:
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send, raw_name: str) -> None:
        handler = self.handler
        request_id = ids.request_id()
        try:
            p = await handler.prepare(scope, receive, raw_name)
            started = handler.start(p, request_id)
            if isinstance(started, Invocation):
                status, headers, body = handler.respond(p, await wait(started))
            else:
                status, headers, body = started
        except AwsError as err:
            status, headers, body = err.render(request_id)
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        headers.append((b"x-amzn-requestid", request_id.encode()))
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
