"""Invoke: POST /2015-03-31/functions/{FunctionName}/invocations, on the hot path.

This handler is a bare ASGI callable (no framework routing or request objects): it reads the
body, checks limits, hands an Invocation to the dispatcher and writes the result. It never touches
the database.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import uuid
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote

import orjson

from lamina.control.errors import AwsError
from lamina.control.functions import Function, FunctionService, is_per_tenant
from lamina.control.validation import tenant_id as valid_tenant_id
from lamina.dispatch.dispatcher import Dispatcher
from lamina.dispatch.environment import tail_log
from lamina.dispatch.invocation import Invocation, InvokeResult, Throttled

SYNC_LIMIT = 6 * 1024 * 1024
ASYNC_LIMIT = 1024 * 1024
CLIENT_CONTEXT_LIMIT = 3583
PREFIX = "/2015-03-31/functions/"
SUFFIX = "/invocations"
INVOCATION_TYPES = ("Event", "RequestResponse", "DryRun")


def match(path: str) -> str | None:
    """The raw (still percent-encoded) function name if path is an Invoke path."""
    if path.startswith(PREFIX) and path.endswith(SUFFIX):
        name = path[len(PREFIX) : -len(SUFFIX)]
        if name and "/" not in name:
            return name
    return None


class InvokeHandler:
    def __init__(self, functions: FunctionService) -> None:
        self.functions = functions
        self.dispatcher = functions.dispatcher

    async def __call__(self, scope: dict, receive, send, raw_name: str) -> None:  # noqa: ANN001 - ASGI
        request_id = str(uuid.uuid4())
        try:
            status, headers, body = await self._invoke(scope, receive, raw_name, request_id)
        except AwsError as err:
            status, headers, body = err.render(request_id)
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        headers.append((b"x-amzn-requestid", request_id.encode()))
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def prepare(self, scope: dict, receive, raw_name: str,  # noqa: ANN001 - ASGI receive
                      types: tuple[str, ...] = INVOCATION_TYPES, operation: str = "Invoke") -> Prepared:
        """Validate the request, find the function and read the payload (shared with the streaming invoke)."""
        if scope["method"] != "POST":
            raise AwsError("UnknownOperationException", f"Unknown operation {scope['method']} {scope['path']}")
        headers = _headers(scope)
        invocation_type = headers.get("x-amz-invocation-type", "RequestResponse")
        if invocation_type not in types:
            raise AwsError("InvalidParameterValueException",
                           f"1 validation error detected: Value '{invocation_type}' at 'invocationType' failed to "
                           f"satisfy constraint: Member must satisfy enum value set: [{', '.join(types)}]")
        log_type = headers.get("x-amz-log-type", "None")
        if log_type not in ("None", "Tail"):
            raise AwsError("InvalidParameterValueException",
                           f"1 validation error detected: Value '{log_type}' at 'logType' failed to satisfy "
                           "constraint: Member must satisfy enum value set: [None, Tail]")
        tenant_id = valid_tenant_id(headers.get("x-amz-tenant-id"))
        qs = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        fn, qualifier = self.functions.target(unquote(raw_name), qs.get("Qualifier", [None])[0])
        # A version runs that version; an alias its version, or with weights one picked for this invocation.
        target = self.functions.pick(fn, qualifier)
        check_tenant(target, tenant_id)

        limit = ASYNC_LIMIT if invocation_type == "Event" else SYNC_LIMIT
        payload = await _read_body(receive, limit, "InvokeAsync" if invocation_type == "Event" else operation)
        if payload.strip():
            try:
                orjson.loads(payload)
            except orjson.JSONDecodeError as exc:
                raise AwsError("InvalidRequestContentException",
                               f"Could not parse request body into json: Could not parse payload into json: {exc}"
                               ) from None
        else:
            payload = b"{}"
        client_context = _client_context(headers.get("x-amz-client-context"))
        ensure_invokable(target, self.dispatcher)
        return Prepared(fn, target, qualifier, payload, headers, invocation_type, log_type, client_context,
                        tenant_id)

    async def _invoke(self, scope: dict, receive, raw_name: str, request_id: str):  # noqa: ANN001, ANN202
        p = await self.prepare(scope, receive, raw_name)
        if p.invocation_type == "DryRun":
            return 204, [(b"x-amz-executed-version", p.target.version.encode())], b""

        inv = p.invocation(request_id)
        if p.invocation_type == "Event":
            # Runs in the background; durable queueing and retries are the events/ part's job.
            self.dispatcher.submit(p.target.key, inv)
            return 202, [], b""

        result = await run_sync(self.dispatcher, p.target.key, inv)
        out = [(b"content-type", b"application/json"), (b"x-amz-executed-version", result.executed_version.encode())]
        if result.error_type is not None:
            out.append((b"x-amz-function-error", b"Unhandled"))
        if p.log_type == "Tail":
            out.append((b"x-amz-log-result", tail_log(result.log).encode()))
        return 200, out, result.body


@dataclass(slots=True)
class Prepared:
    """A validated invoke request: the function, the version to run, its payload and the request's options."""

    fn: Function                     # the function ($LATEST)
    target: Function                 # the version this invocation runs
    qualifier: str | None
    payload: bytes
    headers: dict[str, str]
    invocation_type: str
    log_type: str
    client_context: dict | None
    tenant_id: str | None = None

    def invocation(self, request_id: str) -> Invocation:
        arn = self.fn.config["FunctionArn"] + (f":{self.qualifier}" if self.qualifier else "")
        return Invocation(request_id, self.payload, arn, sync=self.invocation_type == "RequestResponse",
                          client_context=self.client_context, trace_id=self.headers.get("x-amzn-trace-id"),
                          tenant_id=self.tenant_id)


def check_tenant(fn: Function, tenant_id: str | None) -> None:
    """A PER_TENANT function needs X-Amz-Tenant-Id; any other function refuses one (InvalidParameterValueException
    both ways, as AWS's tenant isolation troubleshooting guide describes)."""
    if is_per_tenant(fn.config):
        if tenant_id is None:
            raise AwsError("InvalidParameterValueException", "The invoked function is enabled with tenancy "
                           "configuration. Add a valid tenant ID in your request and try again.")
    elif tenant_id is not None:
        raise AwsError("InvalidParameterValueException", "The invoked function is not enabled with tenancy "
                       "configuration. Remove the tenant ID from your request and try again.")


def ensure_invokable(fn: Function, dispatcher: Dispatcher) -> None:
    """A function version still being created (or without a pool) cannot run yet: ResourceConflictException."""
    if fn.state == "Pending":
        raise AwsError("ResourceConflictException", "The operation cannot be performed at this time. The "
                       "function is currently in the following state: Pending")
    if fn.key not in dispatcher.pools:
        raise AwsError("ResourceConflictException", "The operation cannot be performed at this time. The "
                       f"function is currently in the following state: {fn.state}")


async def run_sync(dispatcher: Dispatcher, key: str, inv: Invocation) -> InvokeResult:
    """Submit a synchronous invocation to one function version's pool (Function.key) and wait for its result."""
    inv.future = asyncio.get_running_loop().create_future()
    try:
        dispatcher.submit(key, inv)
        return await inv.future
    except Throttled as exc:
        err = AwsError("TooManyRequestsException", exc.message, Reason=exc.reason)
        err.headers["Retry-After"] = str(exc.retry_after_s)
        raise err from None


def _headers(scope: dict) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


async def read_body(receive, limit: int) -> bytes | None:  # noqa: ANN001 - ASGI receive
    """The whole request body, or None once it exceeds limit bytes."""
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise AwsError("InvalidRequestContentException", "The client closed the connection.")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks) if len(chunks) != 1 else chunks[0]


async def _read_body(receive, limit: int, operation: str) -> bytes:  # noqa: ANN001 - ASGI receive
    body = await read_body(receive, limit)
    if body is None:
        raise AwsError("RequestTooLargeException",
                       f"Request must be smaller than {limit} bytes for the {operation} operation")
    return body


def _client_context(value: str | None) -> dict | None:
    if value is None:
        return None
    if len(value) > CLIENT_CONTEXT_LIMIT:
        raise AwsError("InvalidParameterValueException",
                       f"Client context must be at most {CLIENT_CONTEXT_LIMIT} bytes, base64-encoded.")
    try:
        data = orjson.loads(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError):
        raise AwsError("InvalidRequestContentException",
                       "Client context must be a valid Base64-encoded JSON object.") from None
    if not isinstance(data, dict):
        raise AwsError("InvalidRequestContentException", "Client context must be a valid Base64-encoded JSON object.")
    return data
