"""`aws scheduler ...` and `aws events ...` (the AWS CLI v1 from .venv-awscli, its own botocore) against a real
`lamina serve`: a schedule's commands and one that fires into a queue; a bus, a rule with a pattern, its targets,
put-events routed to a queue, test-event-pattern, and the CLI's view of AWS's errors."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pytest

from helpers import REGION, AwsCli, unique_name

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def aws(endpoint: str, tmp_path: Path) -> AwsCli:
    return AwsCli(endpoint, tmp_path)


def queue(aws) -> tuple[str, str]:
    url = aws("sqs", "create-queue", "--queue-name", unique_name("cliq"))["QueueUrl"]
    arn = aws("sqs", "get-queue-attributes", "--queue-url", url, "--attribute-names", "QueueArn")["Attributes"][
        "QueueArn"]
    return url, arn


def drain(aws, url: str, want: int, timeout: float = 20.0) -> list:
    got: list = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        out = aws("sqs", "receive-message", "--queue-url", url, "--max-number-of-messages", "10",
                  "--wait-time-seconds", "1") or {}
        for m in out.get("Messages", []):
            got.append(json.loads(m["Body"]))
            aws("sqs", "delete-message", "--queue-url", url, "--receipt-handle", m["ReceiptHandle"])
    return got


def test_aws_scheduler_commands(aws) -> None:
    url, arn = queue(aws)
    name = unique_name("cli")
    when = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=6)).strftime("%Y-%m-%dT%H:%M:%S")  # the CLI starts slowly
    target = json.dumps({"Arn": arn, "RoleArn": "arn:aws:iam::000000000000:role/s", "Input": '{"from": "cli"}'})
    created = aws("scheduler", "create-schedule", "--name", name, "--schedule-expression", f"at({when})",
                  "--flexible-time-window", "Mode=OFF", "--target", target)
    assert created["ScheduleArn"].endswith(f"schedule/default/{name}")
    assert aws("scheduler", "get-schedule", "--name", name)["ScheduleExpression"] == f"at({when})"
    assert name in [s["Name"] for s in aws("scheduler", "list-schedules")["Schedules"]]
    assert drain(aws, url, 1) == [{"from": "cli"}]
    aws("scheduler", "delete-schedule", "--name", name)
    assert "ResourceNotFoundException" in aws.fail("scheduler", "get-schedule", "--name", name)
    assert "ValidationException" in aws.fail("scheduler", "create-schedule", "--name", name,
                                             "--schedule-expression", "rate(1 minutes)",
                                             "--flexible-time-window", "Mode=OFF", "--target", target)


def test_aws_events_commands(aws) -> None:
    url, arn = queue(aws)
    bus = unique_name("clibus")
    aws("events", "create-event-bus", "--name", bus)
    rule = unique_name("clirule")
    aws("events", "put-rule", "--name", rule, "--event-bus-name", bus,
        "--event-pattern", json.dumps({"source": ["cli"], "detail": {"n": [{"numeric": [">=", 2]}]}}))
    assert [r["Name"] for r in aws("events", "list-rules", "--event-bus-name", bus)["Rules"]] == [rule]
    put = aws("events", "put-targets", "--rule", rule, "--event-bus-name", bus, "--targets",
              json.dumps([{"Id": "q", "Arn": arn, "InputPath": "$.detail"}]))
    assert put["FailedEntryCount"] == 0
    assert aws("events", "list-targets-by-rule", "--rule", rule, "--event-bus-name", bus)["Targets"][0]["Id"] == "q"
    entries = [{"EventBusName": bus, "Source": "cli", "DetailType": "t", "Detail": json.dumps({"n": n})}
               for n in (1, 2, 3)]
    result = aws("events", "put-events", "--entries", json.dumps(entries))
    assert result["FailedEntryCount"] == 0 and len(result["Entries"]) == 3
    assert sorted(b["n"] for b in drain(aws, url, 2)) == [2, 3]
    event = json.dumps({"id": "1", "account": "000000000000", "source": "cli", "time": "2026-01-01T00:00:00Z",
                        "region": REGION, "detail-type": "t", "detail": {"n": 5}})
    assert aws("events", "test-event-pattern", "--event-pattern", '{"source": ["cli"]}', "--event", event)["Result"]
    assert "ScheduleExpression is supported only on the default event bus." in aws.fail(
        "events", "put-rule", "--name", "x", "--event-bus-name", bus, "--schedule-expression", "rate(5 minutes)")
    aws("events", "remove-targets", "--rule", rule, "--event-bus-name", bus, "--ids", "q")
    aws("events", "delete-rule", "--name", rule, "--event-bus-name", bus)
    aws("events", "delete-event-bus", "--name", bus)
