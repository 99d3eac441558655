"""The CloudWatch Logs API subset with boto3's `logs` client: log groups and streams of functions, GetLogEvents paging,
FilterLogEvents with each supported pattern form, retention (old records deleted), DeleteLogGroup, StartLiveTail."""

from __future__ import annotations

import json
import threading
import time

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from helpers import ACCESS_KEY, REGION, SECRET_KEY, create_function, invoke, invoke_ok, unique_name

pytestmark = pytest.mark.timeout(120)

HANDLER = '''
import json


def handler(event, context):
    for line in event.get("lines", []):
        print(line)
    if event.get("json"):
        print(json.dumps(event["json"]))
    if event.get("fail"):
        raise RuntimeError("asked to fail")
    return {"stream": context.log_stream_name}
'''


def logs_client(endpoint: str, **config):
    return boto3.client("logs", endpoint_url=endpoint, region_name=REGION, aws_access_key_id=ACCESS_KEY,
                        aws_secret_access_key=SECRET_KEY,
                        config=Config(retries={"total_max_attempts": 1}, **config))


@pytest.fixture(scope="module")
def logs(endpoint):
    return logs_client(endpoint)


@pytest.fixture(scope="module")
def fn(lambda_client):
    """One function with a known log: plain lines, JSON lines and a failure."""
    name = unique_name("logs")
    create_function(lambda_client, name, {"app.py": HANDLER})
    invoke_ok(lambda_client, name, {"lines": ["alpha one", "Task timed out maybe", "beta two WARN"]})
    invoke_ok(lambda_client, name, {"json": {"level": "ERROR", "latency": 250, "user": {"id": "u-17"}}})
    invoke_ok(lambda_client, name, {"json": {"level": "INFO", "latency": 20, "user": {"id": "x-3"}}})
    resp, _ = invoke(lambda_client, name, {"fail": True})
    assert resp.get("FunctionError") == "Unhandled"
    yield name
    lambda_client.delete_function(FunctionName=name)


def group(name: str) -> str:
    return f"/aws/lambda/{name}"


def messages(events) -> list[str]:
    return [e["message"].rstrip("\n") for e in events]


def test_describe_log_groups(logs, fn):
    groups = logs.describe_log_groups(logGroupNamePrefix=group(fn))["logGroups"]
    assert [g["logGroupName"] for g in groups] == [group(fn)]
    g = groups[0]
    assert g["arn"] == f"arn:aws:logs:{REGION}:000000000000:log-group:{group(fn)}:*"
    assert g["storedBytes"] > 0 and g["creationTime"] > 0 and "retentionInDays" not in g
    # Every group is listed without a prefix, paged by limit.
    seen, token = [], None
    while True:
        page = logs.describe_log_groups(limit=1, **({"nextToken": token} if token else {}))
        seen += [x["logGroupName"] for x in page["logGroups"]]
        token = page.get("nextToken")
        if not token:
            break
    assert group(fn) in seen and len(seen) == len(set(seen))


def test_describe_log_streams_are_environments(logs, fn, lambda_client):
    streams = logs.describe_log_streams(logGroupName=group(fn))["logStreams"]
    stream = invoke_ok(lambda_client, fn, {})["stream"]
    streams = logs.describe_log_streams(logGroupName=group(fn), orderBy="LastEventTime", descending=True)["logStreams"]
    assert streams[0]["logStreamName"] == stream
    assert stream.startswith(time.strftime("%Y/%m/%d/", time.gmtime())[:5]) and "[$LATEST]" in stream
    assert streams[0]["firstEventTimestamp"] <= streams[0]["lastEventTimestamp"]


def test_get_log_events_pages_both_ways(logs, fn, lambda_client):
    stream = invoke_ok(lambda_client, fn, {})["stream"]
    head = logs.get_log_events(logGroupName=group(fn), logStreamName=stream, startFromHead=True, limit=2)
    assert len(head["events"]) == 2 and head["events"][0]["message"].startswith("START RequestId")
    everything = logs.get_log_events(logGroupName=group(fn), logStreamName=stream, startFromHead=True)["events"]
    rest = logs.get_log_events(logGroupName=group(fn), logStreamName=stream, nextToken=head["nextForwardToken"])
    assert head["events"] + rest["events"] == everything
    # At the end the forward token stays where it is (how clients know they are caught up).
    again = logs.get_log_events(logGroupName=group(fn), logStreamName=stream, nextToken=rest["nextForwardToken"])
    assert again["events"] == [] and again["nextForwardToken"] == rest["nextForwardToken"]
    # Without startFromHead: the newest events.
    tail = logs.get_log_events(logGroupName=group(fn), logStreamName=stream, limit=1)["events"]
    assert tail == everything[-1:] and tail[0]["message"].startswith("REPORT RequestId")


@pytest.mark.parametrize(("pattern", "expected"), [
    ("alpha", ["alpha one"]),
    ("beta WARN", ["beta two WARN"]),
    ('"Task timed out"', ["Task timed out maybe"]),
    ("?alpha ?beta", ["alpha one", "beta two WARN"]),
    ("two -alpha", ["beta two WARN"]),
    ('{ $.level = "ERROR" }', ['{"level": "ERROR", "latency": 250, "user": {"id": "u-17"}}']),
    ('{ $.latency < 100 }', ['{"level": "INFO", "latency": 20, "user": {"id": "x-3"}}']),
    ('{ $.user.id = "u-*" && $.latency >= 250 }', ['{"level": "ERROR", "latency": 250, "user": {"id": "u-17"}}']),
    ('{ ($.level = "INFO") || ($.level = "ERROR") }', ['{"level": "ERROR", "latency": 250, "user": {"id": "u-17"}}',
                                                     '{"level": "INFO", "latency": 20, "user": {"id": "x-3"}}']),
])
def test_filter_log_events_patterns(logs, fn, pattern, expected):
    events = logs.filter_log_events(logGroupName=group(fn), filterPattern=pattern)["events"]
    assert messages(events) == expected


def test_filter_log_events_errors_and_paging(logs, fn):
    events = logs.filter_log_events(logGroupName=group(fn), filterPattern='"[ERROR]" RuntimeError')["events"]
    assert len(events) == 1 and "asked to fail" in events[0]["message"]
    assert {"logStreamName", "timestamp", "eventId", "ingestionTime"} <= set(events[0])
    everything = logs.filter_log_events(logGroupName=group(fn))["events"]
    paged = []
    for page in logs.get_paginator("filter_log_events").paginate(logGroupName=group(fn),
                                                                  PaginationConfig={"PageSize": 3}):
        paged += page["events"]
    assert [e["eventId"] for e in paged] == [e["eventId"] for e in everything]
    start = everything[-1]["timestamp"]
    later = logs.filter_log_events(logGroupName=group(fn), startTime=start)["events"]
    assert later and all(e["timestamp"] >= start for e in later)


def test_unsupported_pattern_forms_are_refused(logs, fn):
    for pattern in ("[ip, user]", "%ERR.R%", "{ $.level = "):
        with pytest.raises(ClientError) as exc:
            logs.filter_log_events(logGroupName=group(fn), filterPattern=pattern)
        assert exc.value.response["Error"]["Code"] == "InvalidParameterException", pattern


def test_missing_group_and_unknown_operation(logs):
    with pytest.raises(logs.exceptions.ResourceNotFoundException):
        logs.filter_log_events(logGroupName="/aws/lambda/no-such-function-here")
    with pytest.raises(logs.exceptions.ResourceNotFoundException):
        logs.describe_log_streams(logGroupName="/ecs/other")
    with pytest.raises(ClientError) as exc:
        logs.create_log_group(logGroupName="/aws/lambda/x")
    assert exc.value.response["Error"]["Code"] == "UnknownOperationException"


def test_retention_deletes_old_records(lamina_factory, tmp_path):
    name = unique_name("ret")
    data = tmp_path / "ret"
    (data / "logs").mkdir(parents=True)
    old = int((time.time() - 10 * 86400) * 1000)
    (data / "logs" / f"{name}.ndjson").write_text(
        json.dumps({"timestamp": old, "message": "ten days old", "logStreamName": "2000/01/01/[$LATEST]old"}) + "\n")
    server = lamina_factory(data_dir=data)
    client = server.client()
    create_function(client, name, {"app.py": HANDLER})
    invoke_ok(client, name, {"lines": ["fresh"]})
    logs = logs_client(server.endpoint)
    assert "ten days old" in messages(logs.filter_log_events(logGroupName=group(name))["events"])
    with pytest.raises(ClientError) as exc:
        logs.put_retention_policy(logGroupName=group(name), retentionInDays=2)
    assert exc.value.response["Error"]["Code"] == "InvalidParameterException"
    logs.put_retention_policy(logGroupName=group(name), retentionInDays=7)
    assert logs.describe_log_groups(logGroupNamePrefix=group(name))["logGroups"][0]["retentionInDays"] == 7
    got = messages(logs.filter_log_events(logGroupName=group(name))["events"])
    assert "ten days old" not in got and "fresh" in got
    assert "ten days old" not in (data / "logs" / f"{name}.ndjson").read_text()   # deleted, not hidden
    invoke_ok(client, name, {"lines": ["after"]})   # the log is still written after the rewrite
    assert "after" in messages(logs.filter_log_events(logGroupName=group(name), filterPattern="after")["events"])
    logs.delete_retention_policy(logGroupName=group(name))
    assert "retentionInDays" not in logs.describe_log_groups(logGroupNamePrefix=group(name))["logGroups"][0]


def test_delete_log_group_then_new_records_recreate_it(logs, lambda_client):
    name = unique_name("dlg")
    create_function(lambda_client, name, {"app.py": HANDLER})
    try:
        invoke_ok(lambda_client, name, {"lines": ["before delete"]})
        logs.delete_log_group(logGroupName=group(name))
        assert logs.describe_log_groups(logGroupNamePrefix=group(name))["logGroups"] == []
        with pytest.raises(logs.exceptions.ResourceNotFoundException):
            logs.delete_log_group(logGroupName=group(name))
        invoke_ok(lambda_client, name, {"lines": ["after delete"]})
        got = messages(logs.filter_log_events(logGroupName=group(name))["events"])
        assert "after delete" in got and "before delete" not in got
    finally:
        lambda_client.delete_function(FunctionName=name)


def test_start_live_tail_streams_new_records(endpoint, lambda_client, fn):
    # botocore sends StartLiveTail to a "streaming-" host prefix; against an endpoint URL that must be turned off.
    live = logs_client(endpoint, inject_host_prefix=False, read_timeout=30)
    arn = f"arn:aws:logs:{REGION}:000000000000:log-group:{group(fn)}"
    resp = live.start_live_tail(logGroupIdentifiers=[arn], logEventFilterPattern="tailme")
    stream = resp["responseStream"]
    got: list[str] = []
    started = threading.Event()

    def read() -> None:
        for event in stream:
            if "sessionStart" in event:
                assert event["sessionStart"]["logGroupIdentifiers"] == [arn]
                started.set()
            for result in event.get("sessionUpdate", {}).get("sessionResults", []):
                got.append(result["message"].rstrip("\n"))
            if "tailme 2" in got:
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert started.wait(10)
    invoke_ok(lambda_client, fn, {"lines": ["tailme 1", "not this one", "tailme 2"]})
    reader.join(20)
    stream.close()
    assert got == ["tailme 1", "tailme 2"]
