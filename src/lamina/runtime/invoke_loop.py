"""The invocation loop: one INVOKE at a time, the handler called, its result (or error) and the next pull in one
frame."""

from __future__ import annotations

import json
from collections.abc import Callable
from resource import RUSAGE_SELF, getrusage
from typing import Any

from . import fast_json
from .channel import Channel
from .context import LambdaContext, context_static
from .errors import error_body, log_error
from .http_result import http_response
from .log_format import RequestIdFilter
from .trace_variable import TraceVariable
from .wire import HTTP_PREFIX, KIND_ERROR, KIND_HTTP_RESULT, KIND_RESULT

# ru_maxrss is the process's peak RSS (its memory map's high-water mark) either way; asked per thread the kernel
# skips summing every thread's CPU time under the run queue's lock, which RUSAGE_SELF does on each invocation.
try:
    from resource import RUSAGE_THREAD

    _RUSAGE_MAXRSS = RUSAGE_THREAD
except ImportError:  # not Linux
    _RUSAGE_MAXRSS = RUSAGE_SELF


def _max_rss_kb() -> int:
    return getrusage(_RUSAGE_MAXRSS).ru_maxrss


def serve(channel: Channel, handler: Callable[[Any, Any], Any]) -> None:
    """Invocation loop: one at a time, result and next-pull in one frame; returns when the server closes the
    channel."""
    LambdaContext.static = context_static()
    loads, dumps, recv, send = fast_json.loads, json.dumps, channel.recv, channel.send_result
    set_trace = TraceVariable().set
    pack_http = HTTP_PREFIX.pack
    dump_result: Callable[[Any], str] = fast_json.Dumps() if fast_json.Dumps.available else json.dumps
    while True:
        frame = recv()
        if frame is None:
            return
        _kind, header, body = frame
        request_id = header["id"]
        RequestIdFilter.request_id = request_id
        trace_id = header.get("trace_id")
        if trace_id:
            set_trace(trace_id)
        context = LambdaContext(request_id, header["deadline_ms"], header["arn"], header.get("client_context"),
                                header.get("tenant_id"))
        try:
            event = loads(body) if body else {}
        except ValueError as exc:
            err = {"errorMessage": f"Unable to unmarshal input: {exc}", "errorType": "Runtime.UnmarshalError",
                   "requestId": request_id, "stackTrace": []}
            log_error(err)
            send(KIND_ERROR, request_id, _max_rss_kb(), dumps(err).encode())
            continue
        try:
            result = handler(event, context)
        except Exception as exc:
            err = error_body(exc, request_id)
            log_error(err)
            send(KIND_ERROR, request_id, _max_rss_kb(), dumps(err).encode())
            continue
        if "http" in header:
            mapped = http_response(result)
            if mapped is not None:
                status, block, raw_body = mapped
                send(KIND_HTTP_RESULT, request_id, _max_rss_kb(), pack_http(status, len(block)) + block + raw_body)
                continue
        try:
            out = dump_result(result).encode()
        except (TypeError, ValueError) as exc:
            err = {"errorMessage": f"Unable to marshal response: {exc}", "errorType": "Runtime.MarshalError",
                   "requestId": request_id, "stackTrace": []}
            log_error(err)
            send(KIND_ERROR, request_id, _max_rss_kb(), dumps(err).encode())
            continue
        send(KIND_RESULT, request_id, _max_rss_kb(), out)
