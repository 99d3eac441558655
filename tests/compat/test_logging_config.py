"""LoggingConfig with boto3 against a real `lamina serve`: the configuration as AWS merges it (JSON brings INFO
levels, Text drops them, a level under Text is refused, LogGroup kept), and honoured — JSON application records with
AWS's keys filtered by ApplicationLogLevel, platform.start/platform.report records filtered by SystemLogLevel, the
Text format unchanged."""

from __future__ import annotations

import base64
import json

import pytest

from helpers import WAIT, failure

pytestmark = pytest.mark.timeout(120)

HANDLER = '''
import logging

logger = logging.getLogger("app")

def handler(event, context):
    logger.debug("debug record")
    logger.info("info record")
    logger.warning("warn record", extra={"orderId": 7})
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("error record")
    print("plain print")
    return "ok"
'''


def _log_lines(lambda_client, name: str) -> list[str]:
    resp = lambda_client.invoke(FunctionName=name, LogType="Tail")
    assert resp["StatusCode"] == 200 and "FunctionError" not in resp
    return [line for line in base64.b64decode(resp["LogResult"]).decode().splitlines() if line]


def _records(lines: list[str]) -> list[dict]:
    out = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def test_configuration_merges_as_aws(lambda_client, functions):
    name = functions({"app.py": HANDLER})
    default = lambda_client.get_function_configuration(FunctionName=name)["LoggingConfig"]
    assert default == {"LogFormat": "Text", "LogGroup": f"/aws/lambda/{name}"}
    updated = lambda_client.update_function_configuration(FunctionName=name, LoggingConfig={"LogFormat": "JSON"})
    assert updated["LoggingConfig"] == {"LogFormat": "JSON", "ApplicationLogLevel": "INFO", "SystemLogLevel": "INFO",
                                        "LogGroup": f"/aws/lambda/{name}"}
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    updated = lambda_client.update_function_configuration(FunctionName=name, LoggingConfig={"LogGroup": "my_group"})
    assert updated["LoggingConfig"]["LogGroup"] == "my_group" and updated["LoggingConfig"]["LogFormat"] == "JSON"
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    back = lambda_client.update_function_configuration(FunctionName=name, LoggingConfig={"LogFormat": "Text"})
    assert back["LoggingConfig"] == {"LogFormat": "Text", "LogGroup": "my_group"}
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    assert failure(lambda_client.update_function_configuration, FunctionName=name,
                   LoggingConfig={"ApplicationLogLevel": "WARN"})[:2] == (400, "InvalidParameterValueException")
    assert failure(lambda_client.update_function_configuration, FunctionName=name,
                   LoggingConfig={"LogFormat": "XML"})[:2] == (400, "ValidationException")


def test_json_application_records_filtered_by_level(lambda_client, functions):
    name = functions({"app.py": HANDLER}, LoggingConfig={"LogFormat": "JSON", "ApplicationLogLevel": "WARN"})
    lines = _log_lines(lambda_client, name)
    records = _records(lines)
    app = [r for r in records if "level" in r]
    assert [r["level"] for r in app] == ["WARNING", "ERROR"], lines
    warn, error = app
    assert warn["message"] == "warn record" and warn["logger"] == "app" and warn["orderId"] == 7
    assert warn["requestId"] and warn["timestamp"].endswith("Z")
    assert error["errorType"] == "ValueError" and error["errorMessage"] == "boom" and error["stackTrace"]
    line = HANDLER.splitlines().index('        logger.exception("error record")') + 1
    assert error["location"].endswith(f"/app.py:handler:{line}")
    assert "plain print" in lines   # print() output is not a logging record: it stays as written
    # SystemLogLevel INFO (the default): START and REPORT as JSON platform records, no END.
    platform = [r for r in records if "type" in r]
    assert [r["type"] for r in platform] == ["platform.start", "platform.report"]
    report = platform[1]["record"]
    assert report["status"] == "success" and report["requestId"] == warn["requestId"]
    assert set(report["metrics"]) >= {"durationMs", "billedDurationMs", "memorySizeMB", "maxMemoryUsedMB"}
    assert not any(line.startswith(("START", "END", "REPORT")) for line in lines)


def test_system_log_level_warn_leaves_platform_records_out(lambda_client, functions):
    name = functions({"app.py": HANDLER}, LoggingConfig={"LogFormat": "JSON", "ApplicationLogLevel": "DEBUG",
                                                         "SystemLogLevel": "WARN"})
    records = _records(_log_lines(lambda_client, name))
    assert not [r for r in records if "type" in r]
    assert [r["level"] for r in records if "level" in r] == ["DEBUG", "INFO", "WARNING", "ERROR"]


def test_text_format_unchanged(lambda_client, functions):
    name = functions({"app.py": HANDLER})
    lines = _log_lines(lambda_client, name)
    assert lines[0].startswith("START RequestId: ") and lines[-2].startswith("END RequestId: ")
    assert lines[-1].startswith("REPORT RequestId: ")
    assert any(line.startswith("[WARNING]\t") and line.endswith("\twarn record") for line in lines)
    assert not _records(lines)
