"""The log formats of AWS's Python runtime. Text (the default): the root logger writes `[LEVEL] time request-id
message` to stdout. JSON (LoggingConfig.LogFormat, AWS_LAMBDA_LOG_FORMAT=JSON): one JSON object a record with AWS's
keys (timestamp, level, message, logger, requestId; errorType, errorMessage, stackTrace and location with an
exception; the record's extra attributes), and records below AWS_LAMBDA_LOG_LEVEL (ApplicationLogLevel) dropped."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import traceback
from typing import Any

# LogRecord attributes that are not a record's own extras.
_RESERVED = {
    "name", "msg", "args", "levelname", "levelno", "pathname", "filename", "module", "exc_info", "exc_text",
    "stack_info", "lineno", "funcName", "created", "msecs", "relativeCreated", "thread", "threadName", "processName",
    "process", "aws_request_id", "taskName",
}
_LEVELS = {"TRACE": "DEBUG", "DEBUG": "DEBUG", "INFO": "INFO", "WARN": "WARNING", "WARNING": "WARNING",
           "ERROR": "ERROR", "FATAL": "CRITICAL", "CRITICAL": "CRITICAL"}


class RequestIdFilter(logging.Filter):
    """Puts the current invocation's request id on every record (the invocation loop sets it)."""

    request_id = ""

    def filter(self, record: logging.LogRecord) -> bool:
        record.aws_request_id = RequestIdFilter.request_id
        return True


def json_format() -> bool:
    return os.environ.get("AWS_LAMBDA_LOG_FORMAT", "").upper() == "JSON"


def _timestamp(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


class JsonFormatter(logging.Formatter):
    """A record as AWS's Python runtime writes it in the JSON log format."""

    def format(self, record: logging.LogRecord) -> str:
        levelno = min(50, max(0, record.levelno)) // 10 * 10
        out: dict[str, Any] = {
            "timestamp": _timestamp(record.created),
            "level": logging.getLevelName(levelno),
            "message": record.msg if isinstance(record.msg, dict) and not record.args else record.getMessage(),
            "logger": record.name,
        }
        if record.exc_info and record.exc_info[0] is not None:
            out["stackTrace"] = traceback.format_tb(record.exc_info[2])
            out["errorType"] = record.exc_info[0].__name__
            out["errorMessage"] = str(record.exc_info[1])
            out["location"] = f"{record.pathname}:{record.funcName}:{record.lineno}"
        if getattr(record, "aws_request_id", None):
            out["requestId"] = record.aws_request_id  # type: ignore[attr-defined]
        out.update((k, v) for k, v in record.__dict__.items() if k not in _RESERVED and k not in out)
        return json.dumps({k: v for k, v in out.items() if v is not None}, ensure_ascii=False, default=str)


def setup_logging() -> None:
    if json_format():
        formatter: logging.Formatter = JsonFormatter()
    else:
        formatter = logging.Formatter("[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s",
                                      "%Y-%m-%dT%H:%M:%S")
        formatter.converter = time.gmtime
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    level = _LEVELS.get(os.environ.get("AWS_LAMBDA_LOG_LEVEL", "").upper())
    if level is not None:
        root.setLevel(level)


def error_record(body: dict[str, Any]) -> str:
    """An error the runtime reports, as its JSON-format log line (AWS's: the error body with timestamp and level)."""
    return json.dumps({"timestamp": _timestamp(time.time()), "level": "ERROR", **body}, ensure_ascii=False,
                      default=str)
