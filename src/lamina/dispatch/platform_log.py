"""The platform records of an invocation (START, END, REPORT) as AWS writes them in a function's log: text lines for
LogFormat Text, JSON objects (platform.start, platform.report) for LogFormat JSON, where SystemLogLevel WARN leaves
them out (they are INFO records) and END has no JSON form."""

from __future__ import annotations

import math
import time

import orjson

from lamina.dispatch.spec import FunctionSpec


def _iso(ms: int | None) -> str:
    now = ms / 1000 if ms is not None else time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"


def is_json(spec: FunctionSpec) -> bool:
    return spec.log_format == "JSON"


def _quiet(spec: FunctionSpec) -> bool:
    return is_json(spec) and spec.system_log_level == "WARN"


def start(spec: FunctionSpec, request_id: str, ms: int | None = None) -> str | None:
    if not is_json(spec):
        return f"START RequestId: {request_id} Version: {spec.version}"
    if _quiet(spec):
        return None
    return orjson.dumps({"time": _iso(ms), "type": "platform.start",
                         "record": {"requestId": request_id, "version": spec.version}}).decode()


def end(spec: FunctionSpec, request_id: str) -> str | None:
    return None if is_json(spec) else f"END RequestId: {request_id}"


def report(spec: FunctionSpec, request_id: str, duration_ms: float, used_mb: int, error_type: str | None = None,
           init_ms: float | None = None, restore_ms: float | None = None) -> str | None:
    billed = max(1, math.ceil(duration_ms))
    if not is_json(spec):
        line = (f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\tBilled Duration: {billed} ms\t"
                f"Memory Size: {spec.memory_mb} MB\tMax Memory Used: {used_mb} MB")
        if restore_ms is not None:
            line += f"\tRestore Duration: {restore_ms:.2f} ms\tBilled Restore Duration: {math.ceil(restore_ms)} ms"
        elif init_ms is not None:
            line += f"\tInit Duration: {init_ms:.2f} ms"
        return line
    if _quiet(spec):
        return None
    metrics: dict = {"durationMs": round(duration_ms, 2), "billedDurationMs": billed, "memorySizeMB": spec.memory_mb,
                     "maxMemoryUsedMB": used_mb}
    if restore_ms is not None:
        metrics["restoreDurationMs"] = round(restore_ms, 2)
    elif init_ms is not None:
        metrics["initDurationMs"] = round(init_ms, 2)
    status = "success" if error_type is None else ("timeout" if error_type == "Sandbox.Timedout" else "error")
    record: dict = {"requestId": request_id, "metrics": metrics, "status": status}
    if error_type is not None:
        record["errorType"] = error_type
    return orjson.dumps({"time": _iso(None), "type": "platform.report", "record": record}).decode()
