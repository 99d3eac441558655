"""Error bodies as AWS's Python runtime reports them ({errorMessage, errorType, requestId, stackTrace}), and their
log line."""

from __future__ import annotations

import os
from typing import Any

# The runtime's own files: their frames are left out of a stack trace, as AWS's runtime leaves out its own.
_RUNTIME_DIR = os.path.dirname(os.path.abspath(__file__))


def error_body(exc: BaseException, request_id: str = "", error_type: str | None = None,
               message: str | None = None) -> dict[str, Any]:
    import traceback

    # Drop this runtime's own frames and importlib's, as AWS's runtime does.
    tb = [f for f in traceback.extract_tb(exc.__traceback__)
          if os.path.dirname(f.filename) != _RUNTIME_DIR and not f.filename.startswith("<frozen")]
    return {
        "errorMessage": str(exc) if message is None else message,
        "errorType": error_type or type(exc).__name__,
        "requestId": request_id,
        "stackTrace": traceback.format_list(tb),
    }


def log_error(body: dict[str, Any]) -> None:
    """The [ERROR] line (and traceback) AWS's runtime prints for an error it reports (one JSON record in the JSON log
    format)."""
    from .log_format import error_record, json_format

    if json_format():
        print(error_record(body), flush=True)
        return
    trace = "".join(body.get("stackTrace") or [])
    line = f"[ERROR] {body['errorType']}: {body['errorMessage']}"
    if trace:
        line += "\nTraceback (most recent call last):\n" + trace.rstrip("\n")
    print(line, flush=True)
