"""Asynchronous invocation through boto3 against a server whose waits are scaled by 0.01 (LAMINA_ASYNC_WAIT_SCALE):
202s, retries 1 and 2 (scaled) minutes apart with the same request id, the age look-ahead, throttled events that
wait rather than drop, ZeroReservedConcurrency, AWS's destination records (checked against the recorded examples
in spec/events.md §1.2-1.4), InvokeAsync, `lamina events ls` and health."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import LaminaServer, create_function, fn_arn, unique_name

SCALE = 0.01

WORKER = '''
import json, time
def handler(event, context):
    print("RAN " + json.dumps({"id": context.aws_request_id, "event": event, "t": time.time()}))
    time.sleep(event.get("sleep", 0))
    if event.get("fail"):
        raise Exception("intentional failure")
    return {"ok": True, "got": event}
'''
RECORDER = '''
import json
def handler(event, context):
    print("RECORD " + json.dumps(event))
    return None
'''


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaminaServer]:
    tmp = tmp_path_factory.mktemp("lamina-async")
    s = LaminaServer(data_dir=tmp / "data", log_path=tmp / "server.log",
                     extra_env={"LAMINA_ASYNC_WAIT_SCALE": str(SCALE)})
    s.start()
    yield s
    s.stop()
    s.kill_leftovers()


@pytest.fixture(scope="module")
def client(server):
    return server.client()


@pytest.fixture(scope="module")
def recorder(client) -> str:
    name = unique_name("rec")
    create_function(client, name, {"app.py": RECORDER})
    return name


@pytest.fixture
def worker(client) -> Iterator[str]:
    name = unique_name("wrk")
    create_function(client, name, {"app.py": WORKER})
    yield name
    client.delete_function(FunctionName=name)


def _lines(server: LaminaServer, name: str, prefix: str) -> list[dict]:
    with urllib.request.urlopen(f"{server.endpoint}/lamina/v1/functions/{name}/logs") as resp:
        records = [json.loads(line) for line in resp.read().splitlines()]
    return [json.loads(r["message"][len(prefix):]) for r in records if r["message"].startswith(prefix)]


def _wait(predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def _records_for(server, recorder: str, request_id: str, n: int = 1) -> list[dict]:
    return _wait(lambda: [r for r in _lines(server, recorder, "RECORD ")
                          if r["requestContext"]["requestId"] == request_id][:n] or None)


def _invoke(client, name: str, payload: dict) -> str:
    resp = client.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps(payload).encode())
    assert resp["StatusCode"] == 202
    assert resp["Payload"].read() == b""
    return resp["ResponseMetadata"]["RequestId"]


def test_event_runs_and_success_record(server, client, worker, recorder):
    client.put_function_event_invoke_config(FunctionName=worker,
                                            DestinationConfig={"OnSuccess": {"Destination": fn_arn(recorder)}})
    rid = _invoke(client, worker, {"hello": "world"})
    (rec,) = _records_for(server, recorder, rid)
    assert rec["version"] == "1.0" and rec["timestamp"].endswith("Z")
    assert rec["requestContext"] == {"requestId": rid, "functionArn": fn_arn(worker) + ":$LATEST",
                                     "condition": "Success", "approximateInvokeCount": 1}
    assert rec["requestPayload"] == {"hello": "world"}
    assert rec["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST"}
    assert rec["responsePayload"] == {"ok": True, "got": {"hello": "world"}}
    assert [r["id"] for r in _lines(server, worker, "RAN ")] == [rid]


def test_function_errors_retry_twice_one_then_two_scaled_minutes_apart(server, client, worker, recorder):
    client.put_function_event_invoke_config(FunctionName=worker,
                                            DestinationConfig={"OnFailure": {"Destination": fn_arn(recorder)}})
    rid = _invoke(client, worker, {"fail": 1})
    (rec,) = _records_for(server, recorder, rid)
    runs = [r for r in _lines(server, worker, "RAN ") if r["id"] == rid]
    assert len(runs) == 3                                  # the first attempt and MaximumRetryAttempts (2) retries
    first, second, third = (r["t"] for r in runs)
    assert second - first >= 60 * SCALE and third - second >= 120 * SCALE
    ctx = rec["requestContext"]
    assert (ctx["condition"], ctx["approximateInvokeCount"], ctx["requestId"]) == ("RetriesExhausted", 3, rid)
    assert rec["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"}
    assert rec["responsePayload"]["errorMessage"] == "intentional failure"
    assert rec["responsePayload"]["errorType"] == "Exception" and rec["responsePayload"]["requestId"] == rid
    assert rec["requestPayload"] == {"fail": 1}
    # Each attempt is in the function's log: the retries and the outcome are said there too.
    with urllib.request.urlopen(f"{server.endpoint}/lamina/v1/functions/{worker}/logs") as resp:
        text = resp.read().decode()
    assert text.count(f"START RequestId: {rid}") == 3
    assert f"ASYNC RequestId: {rid} Attempt 1 failed (Exception); retrying in 0.6 s" in text
    assert f"ASYNC RequestId: {rid} RetriesExhausted after 3 attempt(s)" in text


@pytest.mark.parametrize("age, invokes", [(60, 1), (90, 2)])
def test_age_look_ahead(server, client, worker, recorder, age, invokes):
    # test_maxeventage: with 2 retries, 60 s leaves no room for the 1-minute wait, 90 s for one retry only.
    client.put_function_event_invoke_config(FunctionName=worker, MaximumRetryAttempts=2,
                                            MaximumEventAgeInSeconds=age,
                                            DestinationConfig={"OnFailure": {"Destination": fn_arn(recorder)}})
    rid = _invoke(client, worker, {"fail": 1})
    (rec,) = _records_for(server, recorder, rid)
    assert rec["requestContext"]["condition"] == "EventAgeExceeded"
    assert rec["requestContext"]["approximateInvokeCount"] == invokes
    assert rec["responseContext"]["functionError"] == "Unhandled"
    assert len([r for r in _lines(server, worker, "RAN ") if r["id"] == rid]) == invokes


def test_retry_attempts_zero(server, client, worker, recorder):
    client.put_function_event_invoke_config(FunctionName=worker, MaximumRetryAttempts=0,
                                            DestinationConfig={"OnFailure": {"Destination": fn_arn(recorder)}})
    rid = _invoke(client, worker, {"fail": 1})
    (rec,) = _records_for(server, recorder, rid)
    assert (rec["requestContext"]["condition"], rec["requestContext"]["approximateInvokeCount"]) == \
        ("RetriesExhausted", 1)


def test_zero_reserved_concurrency_goes_straight_to_failure(server, client, worker, recorder):
    client.put_function_concurrency(FunctionName=worker, ReservedConcurrentExecutions=0)
    client.put_function_event_invoke_config(FunctionName=worker, MaximumRetryAttempts=0,
                                            DestinationConfig={"OnFailure": {"Destination": fn_arn(recorder)}})
    rid = _invoke(client, worker, {})           # accepted (202), as on AWS
    (rec,) = _records_for(server, recorder, rid)
    assert rec["requestContext"] == {"requestId": rid, "functionArn": fn_arn(worker) + ":$LATEST",
                                     "condition": "ZeroReservedConcurrency", "approximateInvokeCount": 0}
    assert rec["requestPayload"] == {}
    assert "responseContext" not in rec and "responsePayload" not in rec
    assert _lines(server, worker, "RAN ") == []


def test_throttled_events_wait_and_all_run(server, client, worker):
    # Reserved concurrency 1 and events that each hold it for a while: the others are throttled, back off and run.
    client.put_function_concurrency(FunctionName=worker, ReservedConcurrentExecutions=1)
    ids = [_invoke(client, worker, {"sleep": 0.2, "n": n}) for n in range(4)]
    def all_ran() -> bool:
        return set(ids) <= {r["id"] for r in _lines(server, worker, "RAN ")}
    assert _wait(all_ran)
    with urllib.request.urlopen(f"{server.endpoint}/lamina/v1/functions/{worker}/logs") as resp:
        assert "throttled: ReservedFunctionConcurrentInvocationLimitExceeded; retrying in" in resp.read().decode()


def test_invoke_async_and_invocation_type_header(server, client, worker):
    resp = client.invoke_async(FunctionName=worker, InvokeArgs=json.dumps({"via": "InvokeAsync"}).encode())
    assert resp["Status"] == 202
    rid = resp["ResponseMetadata"]["RequestId"]
    assert _wait(lambda: [r for r in _lines(server, worker, "RAN ") if r["id"] == rid])[0]["event"] == \
        {"via": "InvokeAsync"}
    too_big = json.dumps({"x": "a" * 300_000}).encode()
    with pytest.raises(client.exceptions.RequestTooLargeException):
        client.invoke_async(FunctionName=worker, InvokeArgs=too_big)
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.invoke_async(FunctionName="no-such-function-xyz", InvokeArgs=b"{}")


def test_pending_events_in_cli_and_health(server, client, worker):
    client.put_function_event_invoke_config(FunctionName=worker, MaximumRetryAttempts=2)
    client.update_function_configuration(FunctionName=worker, Environment={"Variables": {"V": "1"}})
    client.get_waiter("function_updated_v2").wait(FunctionName=worker, WaiterConfig={"Delay": 0.2, "MaxAttempts": 150})
    rid = _invoke(client, worker, {"fail": 1})
    _wait(lambda: [r for r in _lines(server, worker, "RAN ") if r["id"] == rid])
    cli = [sys.executable, "-m", "lamina", "--endpoint", server.endpoint, "events", "ls", worker]
    listed = _wait(lambda: (lambda out: out if rid in out else None)(
        subprocess.run(cli, capture_output=True, text=True, timeout=30).stdout), timeout=10)
    assert "retrying" in listed or "running" in listed
    doc = json.loads(subprocess.run([*cli, "--json"], capture_output=True, text=True, timeout=30).stdout)
    (event,) = [e for e in doc["Events"] if e["RequestId"] == rid] or [None]
    if event is not None:   # (it may have finished its retries by now)
        assert event["Attempts"] >= 1 and event["AgeSeconds"] >= 0
    with urllib.request.urlopen(f"{server.endpoint}/lamina/v1/health") as resp:
        health = json.load(resp)["async"]
    assert {"depth", "oldest_age_seconds", "redelivered", "accepted", "durability"} <= set(health)
    assert health["durability"] == "fsync" and health["wait_scale"] == SCALE and health["accepted"] >= 1


def test_queue_survives_a_restart(tmp_path: Path):
    """An event waiting for its retry when the server stops gracefully is still there after the restart."""
    data = tmp_path / "data"
    env = {"LAMINA_ASYNC_WAIT_SCALE": "0.05"}   # the first retry waits 3 s: the stop comes before it
    s = LaminaServer(data_dir=data, log_path=tmp_path / "a.log", extra_env=env).start()
    try:
        c = s.client()
        name = unique_name("rst")
        create_function(c, name, {"app.py": WORKER})
        rid = _invoke(c, name, {"fail": 1})
        _wait(lambda: [r for r in _lines(s, name, "RAN ") if r["id"] == rid])
    finally:
        s.stop()
    s2 = LaminaServer(data_dir=data, log_path=tmp_path / "b.log", extra_env=env).start()
    try:
        runs = _wait(lambda: (lambda got: got if len(got) >= 3 else None)(
            [r for r in _lines(s2, name, "RAN ") if r["id"] == rid]), timeout=60)
        assert len(runs) == 3
    finally:
        s2.stop()
        s2.kill_leftovers()
