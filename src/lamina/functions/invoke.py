"""The one invoke path every front end calls: check an Invoke request (POST
/2015-03-31/functions/{FunctionName}/invocations and the front ends that invoke like it), find the version to
run, submit the Invocation to its pool and shape the result. Synchronous, streamed (StreamedRun) and
asynchronous submissions start here. It never touches the database.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from urllib.parse import parse_qs, unquote

import orjson
from starlette.types import Receive, Scope

from lamina.dispatch.dispatcher import Dispatcher
from lamina.dispatch.environment import tail_log
from lamina.dispatch.invocation import Invocation, InvokeResult, Throttled
from lamina.functions.async_queue import AsyncEvent, EventSink, no_sink
from lamina.functions.errors import AwsError
from lamina.functions.names import NAMESPACED, FunctionRef, check_qualifier, parse_function_name, resolve_qualifier
from lamina.functions.registry import LATEST, Function, FunctionService, is_per_tenant
from lamina.functions.rest import read_body
from lamina.functions.validation import tenant_id as valid_tenant_id

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
    """Invoke as a bare ASGI callable, built from synchronous steps (head, body, start, respond) that the
    HTTP hot path (gateway/http/fast_http.py) calls directly from its parser callbacks."""

    def __init__(self, functions: FunctionService) -> None:
        self.functions = functions
        self.dispatcher = functions.dispatcher
        self._refs: dict[str, FunctionRef] = {}

    async def prepare(self, scope: Scope, receive: Receive, raw_name: str,
                      types: tuple[str, ...] = INVOCATION_TYPES, operation: str = "Invoke") -> Prepared:
        """Validate the request, find the function and read the payload (shared with the streaming invoke)."""
        head = self.head(scope["method"], scope["path"], _headers(scope), scope.get("query_string", b""), raw_name,
                         types, operation)
        payload = await _read_body(receive, head.limit, head.operation)
        return self.body(head, payload)

    def head(self, method: str, path: str, headers: dict[str, str], query: bytes, raw_name: str,
             types: tuple[str, ...] = INVOCATION_TYPES, operation: str = "Invoke") -> Head:
        """Everything that can be checked before the payload arrives; raises AwsError."""
        if method != "POST":
            raise AwsError("UnknownOperationException", f"Unknown operation {method} {path}")
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
        tenant_id = headers.get("x-amz-tenant-id")
        if tenant_id is not None:
            tenant_id = valid_tenant_id(tenant_id)
        qualifier = None
        if query:
            qs = parse_qs(query.decode("latin-1"), keep_blank_values=True)
            qualifier = qs.get("Qualifier", [None])[0]
        # functions.target(), with the name's parse (a long regex) kept per raw name: the same few every time.
        ref = self._refs.get(raw_name)
        if ref is None:
            # Every problem of the name and the Qualifier in one ValidationException, as AWS reports them.
            ref = parse_function_name(unquote(raw_name), shape=NAMESPACED, qualifier=qualifier)
            if len(self._refs) >= 4096:
                self._refs.clear()
            self._refs[raw_name] = ref
        elif qualifier is not None:
            check_qualifier(qualifier)
        qualifier = resolve_qualifier(ref, qualifier)
        # Not found names the version invoked: $LATEST when none was given, as AWS does.
        fn = self.functions.get(ref, qualifier or LATEST)
        # A version runs that version; an alias its version, or with weights one picked for this invocation.
        target = self.functions.pick(fn, qualifier)
        check_tenant(target, tenant_id)
        event = invocation_type == "Event"
        return Head(fn, target, qualifier, headers, invocation_type, log_type, tenant_id,
                    ASYNC_LIMIT if event else SYNC_LIMIT, "InvokeAsync" if event else operation)

    def body(self, head: Head, payload: bytes) -> Prepared:
        """The payload checks, once it has arrived; raises AwsError."""
        payload = _payload(payload)
        client_context = _client_context(head.headers.get("x-amz-client-context"))
        ensure_invokable(head.target, self.dispatcher)
        return Prepared(head.fn, head.target, head.qualifier, payload, head.headers, head.invocation_type,
                        head.log_type, client_context, head.tenant_id)

    def start(self, p: Prepared, request_id: str, on_done: Callable[[InvokeResult | BaseException], None] | None = None
              ) -> Invocation | tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Submit the invocation: a synchronous one comes back to wait on (with `on_done` called with its
        outcome, or else a future for wait()), otherwise the response; raises AwsError (429 when throttled)."""
        if p.invocation_type == "DryRun":
            return 204, [(b"x-amz-executed-version", p.target.version.encode())], b""
        inv = p.invocation(request_id)
        if on_done is None:
            inv.future = asyncio.get_running_loop().create_future()
        else:
            inv.on_done = on_done
        if p.invocation_type == "Event":
            # Into the durable queue (events/): `inv` stands for the acceptance, done once the event is committed
            # (respond() then answers 202); the queue runs, retries and routes it from there.
            self._sink().accept(p.async_event(request_id), partial(_accepted, inv))
            return inv
        submit(self.dispatcher, p.target.key, inv)
        return inv

    def accept_event(self, head: Head, payload: bytes, request_id: str,
                     done: Callable[[BaseException | None], None]) -> None:
        """body() and start() of an Event invoke for the HTTP hot path (the same checks in the same order): into the
        durable queue, and done(None) once it is committed (202), done(error) if it could not be; no Prepared or
        Invocation is made for it. Raises AwsError."""
        payload = _payload(payload)
        headers = head.headers
        context_header = headers.get("x-amz-client-context")
        client_context = _client_context(context_header) if context_header is not None else None
        target = head.target
        ensure_invokable(target, self.dispatcher)
        sink = self._sink()
        sink.accept(_event(head.fn, target, head.qualifier, payload, client_context, headers.get("x-amzn-trace-id"),
                           head.tenant_id, request_id), done)

    def _sink(self) -> EventSink:
        sink = self.functions.event_sink
        if sink is None:
            raise no_sink()
        return sink

    @staticmethod
    def respond(p: Prepared, result: InvokeResult) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        if p.invocation_type == "Event":
            return 202, [], b""  # accepted: the event is durable
        out = [(b"content-type", b"application/json"), (b"x-amz-executed-version", result.executed_version.encode())]
        if result.error_type is not None:
            out.append((b"x-amz-function-error", b"Unhandled"))
        if p.log_type == "Tail":
            out.append((b"x-amz-log-result", tail_log(result.log).encode()))
        return 200, out, result.body


@dataclass(slots=True)
class Head:
    """An invoke request whose headers are checked and whose function is found; its payload is still to come."""

    fn: Function
    target: Function
    qualifier: str | None
    headers: dict[str, str]
    invocation_type: str
    log_type: str
    tenant_id: str | None
    limit: int                       # the payload limit (RequestTooLargeException above it)
    operation: str                   # named in that error


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
                          tenant_id=self.tenant_id, keep_log=self.log_type == "Tail")


    def async_event(self, request_id: str) -> AsyncEvent:
        """This request as an event for the async queue: the version picked now runs every attempt of it."""
        return _event(self.fn, self.target, self.qualifier, self.payload, self.client_context,
                      self.headers.get("x-amzn-trace-id"), self.tenant_id, request_id)


def _event(fn: Function, target: Function, qualifier: str | None, payload: bytes, client_context: dict | None,
           trace_id: str | None, tenant_id: str | None, request_id: str) -> AsyncEvent:
    """An Event invoke as an event for the async queue: the version picked now (target) runs every attempt of it."""
    arn = fn.config["FunctionArn"] + (f":{qualifier}" if qualifier else "")
    now = time.time()
    return AsyncEvent(request_id, fn.name, target.version, qualifier, arn, payload,
                      orjson.dumps(client_context) if client_context is not None else None, trace_id, tenant_id,
                      created=now, due=now)


def _payload(payload: bytes) -> bytes:
    """An invoke's payload once checked (InvalidRequestContentException unless JSON); none is {}."""
    if payload.strip():
        try:
            orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise AwsError("InvalidRequestContentException",
                           f"Could not parse request body into json: Could not parse payload into json: {exc}"
                           ) from None
        return payload
    return b"{}"


_ACCEPTED = InvokeResult(b"")


def _accepted(inv: Invocation, error: BaseException | None) -> None:
    """The async queue's answer for an Event invoke: committed (202), or why not."""
    if error is None:
        inv.finish(_ACCEPTED)
    else:
        inv.fail(error if isinstance(error, Exception) else AwsError("ServiceException", str(error), 500))


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


def event_for(functions: FunctionService, raw_name: str, payload: bytes, tenant_id: str | None = None,
              request_id: str | None = None) -> AsyncEvent:
    """An Event invocation of a function named in any accepted form (name, name:qualifier, ARN), for a caller
    inside Lamina (a destination, the UDP gateway); raises AwsError when it cannot be invoked that way."""
    fn, qualifier = functions.target(raw_name)
    target = functions.pick(fn, qualifier)
    check_tenant(target, tenant_id)
    arn = fn.config["FunctionArn"] + (f":{qualifier}" if qualifier else "")
    now = time.time()
    return AsyncEvent(request_id or str(uuid.uuid4()), fn.name, target.version, qualifier, arn, payload,
                      tenant_id=tenant_id, created=now, due=now)


def ensure_invokable(fn: Function, dispatcher: Dispatcher) -> None:
    """A function version still being created (or without a pool) cannot run yet: ResourceConflictException."""
    if fn.state == "Pending":
        raise AwsError("ResourceConflictException", "The operation cannot be performed at this time. The "
                       "function is currently in the following state: Pending")
    if fn.key not in dispatcher.pools:
        raise AwsError("ResourceConflictException", "The operation cannot be performed at this time. The "
                       f"function is currently in the following state: {fn.state}")


def submit(dispatcher: Dispatcher, key: str, inv: Invocation) -> None:
    """Submit a synchronous invocation to one function version's pool (Function.key); AwsError 429 when a
    concurrency limit refuses it."""
    try:
        dispatcher.submit(key, inv)
    except Throttled as exc:
        raise throttled(exc) from None


def throttled(exc: Throttled) -> AwsError:
    err = AwsError("TooManyRequestsException", exc.message, Reason=exc.reason)
    err.headers["Retry-After"] = str(exc.retry_after_s)
    return err


async def wait(inv: Invocation) -> InvokeResult:
    """The result of an invocation started with a future (AwsError 429 if it timed out in the queue)."""
    assert inv.future is not None
    try:
        return await inv.future
    except Throttled as exc:
        raise throttled(exc) from None


async def run_sync(dispatcher: Dispatcher, key: str, inv: Invocation) -> InvokeResult:
    """Submit a synchronous invocation to one function version's pool (Function.key) and wait for its result."""
    inv.future = asyncio.get_running_loop().create_future()
    try:
        dispatcher.submit(key, inv)
        return await inv.future
    except Throttled as exc:
        raise throttled(exc) from None


class StreamedRun:
    """run_sync for an invocation whose runtime may stream its response: `async for piece in run` gives the pieces
    as they arrive (Invocation.stream), then `run.result()` the outcome (raising AwsError as run_sync does).
    cancel() when the caller goes away first: the invocation itself runs on."""

    def __init__(self, dispatcher: Dispatcher, key: str, inv: Invocation) -> None:
        pieces: asyncio.Queue[bytes | None] = asyncio.Queue()
        inv.stream = pieces.put_nowait
        self._pieces = pieces
        self._running = asyncio.ensure_future(run_sync(dispatcher, key, inv))
        self._running.add_done_callback(lambda _: pieces.put_nowait(None))  # after every piece: the end

    def __aiter__(self) -> StreamedRun:
        return self

    async def __anext__(self) -> bytes:
        piece = await self._pieces.get()
        if piece is None:
            raise StopAsyncIteration
        return piece

    def result(self) -> InvokeResult:
        return self._running.result()

    def cancel(self) -> None:
        if not self._running.done():
            self._running.cancel()


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}


async def _read_body(receive: Receive, limit: int, operation: str) -> bytes:
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
