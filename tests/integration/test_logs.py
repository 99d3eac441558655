"""Function logs: the Tail log of an invoke and Lamina's NDJSON log API."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from helpers import decode_log, invoke, request_id, unique_name

pytestmark = pytest.mark.timeout(90)

LOG_HANDLER = '''
import logging, sys


def handler(event, context):
    mark = event.get("mark", "")
    print("PRINT-MARK", mark)
    sys.stderr.write("STDERR-MARK %s\\n" % mark)
    sys.stderr.flush()
    logging.warning("LOGGING-MARK %s", mark)
    if event.get("big"):
        for i in range(200):
            print("filler line %03d %s" % (i, "z" * 60))
    return {"stream": context.log_stream_name}
'''

REPORT = re.compile(
    r"REPORT RequestId: (?P<rid>\S+)\tDuration: (?P<duration>\d+(?:\.\d+)?) ms"
    r"\tBilled Duration: (?P<billed>\d+) ms\tMemory Size: (?P<memory>\d+) MB"
    r"\tMax Memory Used: (?P<used>\d+) MB"
    r"(?:\tRestore Duration: (?P<restore>\d+(?:\.\d+)?) ms\tBilled Restore Duration: (?P<billed_restore>\d+) ms)?"
)


def _lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if line.strip()]


def _index(lines: list[str], needle: str) -> int:
    for i, line in enumerate(lines):
        if needle in line:
            return i
    raise AssertionError(f"{needle!r} not in log:\n" + "\n".join(lines))


def test_handler_output_between_start_and_end(lambda_client, functions):
    name = functions({"app.py": LOG_HANDLER})
    resp, _ = invoke(lambda_client, name, {"mark": "m1"}, LogType="Tail")
    assert resp["StatusCode"] == 200 and "FunctionError" not in resp
    rid = request_id(resp)
    lines = _lines(decode_log(resp))
    start = _index(lines, f"START RequestId: {rid} Version: $LATEST")
    end = _index(lines, f"END RequestId: {rid}")
    report = _index(lines, f"REPORT RequestId: {rid}")
    assert start < end < report, lines
    for mark in ("PRINT-MARK m1", "STDERR-MARK m1", "LOGGING-MARK m1"):
        assert start < _index(lines, mark) < end, (mark, lines)


def test_report_line_and_restore_duration_on_cold_start_only(endpoint, lambda_client, functions):
    name = functions({"app.py": LOG_HANDLER}, MemorySize=192)
    reports = []
    for i in range(3):
        resp, _ = invoke(lambda_client, name, {"mark": f"r{i}"}, LogType="Tail")
        log = decode_log(resp)
        match = REPORT.search(log)
        assert match, f"no well-formed REPORT line (tab-separated fields) in:\n{log}"
        assert match["rid"] == request_id(resp)
        reports.append(match)
    for m in reports:
        duration, billed = float(m["duration"]), int(m["billed"])
        assert duration >= 0
        assert billed >= int(duration), (duration, billed)
        assert int(m["memory"]) == 192
        assert 0 < int(m["used"]) <= 192 * 4, m["used"]
    # The environment is a fork of the function's zygote: SnapStart's Restore Duration, once.
    assert reports[0]["restore"] is not None, "the first (cold) invoke's REPORT has no Restore Duration"
    assert float(reports[0]["restore"]) > 0
    assert int(reports[0]["billed_restore"]) >= int(float(reports[0]["restore"]))
    assert reports[1]["restore"] is None and reports[2]["restore"] is None, "a warm invoke reported a restore"
    # The zygote's own init is reported once, in its own log stream.
    records = _poll_logs(endpoint, name, ["INIT_REPORT Init Duration:"])
    inits = [r for r in records if r["message"].startswith("INIT_REPORT")]
    assert len(inits) == 1, inits
    assert re.match(r"INIT_REPORT Init Duration: \d+\.\d+ ms\tPhase: init\tStatus: success", inits[0]["message"])


def test_tail_is_the_last_4kb(lambda_client, functions):
    name = functions({"app.py": LOG_HANDLER})
    resp, _ = invoke(lambda_client, name, {"mark": "big", "big": True}, LogType="Tail")
    log = decode_log(resp).encode()
    assert len(log) <= 4096, len(log)
    assert len(log) > 3000, "the tail should be (close to) the full 4 KB when there is more output"
    text = log.decode(errors="replace")
    assert f"REPORT RequestId: {request_id(resp)}" in text and "filler line 199" in text, text


def test_error_is_logged(lambda_client, functions):
    name = functions({"app.py": "def handler(event, context):\n    raise KeyError('missing-key-xyz')\n"})
    resp, body = invoke(lambda_client, name, {}, LogType="Tail")
    assert resp["FunctionError"] == "Unhandled" and body["errorType"] == "KeyError", body
    log = decode_log(resp)
    assert "missing-key-xyz" in log, log
    assert f"END RequestId: {request_id(resp)}" in log


def _fetch_logs(endpoint: str, name: str) -> tuple[int, str, list[dict]]:
    url = f"{endpoint}/lamina/v1/functions/{urllib.parse.quote(name)}/logs?start_time=0&follow=false"
    with urllib.request.urlopen(url, timeout=10) as resp:
        status, ctype, raw = resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
    records = [json.loads(line) for line in raw.splitlines() if line.strip()]
    return status, ctype, records


def _poll_logs(endpoint: str, name: str, needles: list[str], timeout: float = 10.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        status, _, records = _fetch_logs(endpoint, name)
        assert status == 200
        messages = [r["message"] for r in records]
        if all(any(n in m for m in messages) for n in needles):
            return records
        if time.monotonic() > deadline:
            raise AssertionError(f"{needles} not all in logs after {timeout}s: {messages}")
        time.sleep(0.1)


def test_logs_api_ndjson(endpoint, lambda_client, functions):
    name = functions({"app.py": LOG_HANDLER})
    resp, body = invoke(lambda_client, name, {"mark": "api"})
    rid = request_id(resp)
    needles = [f"START RequestId: {rid}", f"END RequestId: {rid}", f"REPORT RequestId: {rid}",
               "PRINT-MARK api", "STDERR-MARK api", "LOGGING-MARK api"]
    records = _poll_logs(endpoint, name, needles)
    for record in records:
        assert set(record) == {"timestamp", "message", "logStreamName"}, record
        assert isinstance(record["timestamp"], int) and record["timestamp"] > 1_600_000_000_000, record
        assert isinstance(record["message"], str)
    ours = [r for r in records if rid in r["message"] or "api" in r["message"]]
    assert {r["logStreamName"] for r in ours} == {body["stream"]}, ours
    messages = [r["message"] for r in records]
    start, end = _index(messages, f"START RequestId: {rid}"), _index(messages, f"END RequestId: {rid}")
    assert start < _index(messages, "PRINT-MARK api") < end
    assert end < _index(messages, f"REPORT RequestId: {rid}")
    stamps = [r["timestamp"] for r in records]
    assert stamps == sorted(stamps), "log records are not in time order"
    _, ctype, _ = _fetch_logs(endpoint, name)
    assert "json" in ctype.lower(), ctype


def test_logs_api_unknown_function_is_404(endpoint):
    url = f"{endpoint}/lamina/v1/functions/{unique_name('missing')}/logs?start_time=0&follow=false"
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(url, timeout=10)
    assert exc.value.code == 404


def test_event_invocation_runs(endpoint, lambda_client, functions):
    """An Event invoke is accepted with 202 and then actually runs (its output reaches the logs)."""
    name = functions({"app.py": LOG_HANDLER})
    resp = lambda_client.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"mark": "async-1"}')
    assert resp["StatusCode"] == 202
    records = _poll_logs(endpoint, name, ["PRINT-MARK async-1", "REPORT RequestId:"], timeout=20)
    messages = [r["message"] for r in records]
    assert _index(messages, "START RequestId:") < _index(messages, "PRINT-MARK async-1") < _index(
        messages, "END RequestId:") < _index(messages, "REPORT RequestId:"), messages
