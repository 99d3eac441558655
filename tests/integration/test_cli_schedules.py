"""`lamina schedule ls|create|rm` and `lamina events put|rules` against the session server: a schedule that sends
to a queue (received with `lamina queue receive`), one that invokes a function, a rule whose target gets an event
put from the CLI, and AWS's error for a bad expression."""

from __future__ import annotations

import json
import time

import boto3

from helpers import ACCESS_KEY, REGION, SECRET_KEY, unique_name


def receive(cli, queue: str, timeout: float = 15.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = cli("queue", "receive", queue).stdout.splitlines()
        if lines:
            return [json.loads(line) for line in lines]
        time.sleep(0.3)
    return []


def test_schedule_commands(cli, endpoint) -> None:
    queue = unique_name("cliq")
    cli("queue", "create", queue)
    name = unique_name("clis")
    arn = cli("schedule", "create", name, "-e", "rate(1 hour)", "--queue", queue, "--input", '{"hello": "cli"}',
              "--timezone", "Europe/Paris").stdout.strip()
    assert arn == f"arn:aws:scheduler:us-east-1:000000000000:schedule/default/{name}"
    listing = cli("schedule", "ls").stdout
    row = next(line.split() for line in listing.splitlines() if line.split()[:1] == [name])
    assert row[1:5] == ["default", "ENABLED", "rate(1", "hour)"] and row[5] == "Europe/Paris"
    assert [json.loads(m["Body"]) for m in receive(cli, queue)] == [{"hello": "cli"}]   # a rate starts at once
    listed = json.loads(cli("schedule", "ls", "--json").stdout)
    assert any(s["Name"] == name and s["Target"]["Input"] == '{"hello": "cli"}' for s in listed)
    cli("schedule", "rm", name)
    assert name not in cli("schedule", "ls").stdout
    bad = cli("schedule", "create", "x", "-e", "rate(1 minutes)", "--queue", queue, ok=False)
    assert bad.returncode != 0 and "ValidationException" in bad.stdout + bad.stderr
    cli("queue", "rm", queue, "--yes")


def test_events_put_and_rules(cli, endpoint) -> None:
    queue = unique_name("cliq")
    cli("queue", "create", queue)
    events = boto3.client("events", endpoint_url=endpoint, region_name=REGION, aws_access_key_id=ACCESS_KEY,
                          aws_secret_access_key=SECRET_KEY)
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=REGION, aws_access_key_id=ACCESS_KEY,
                       aws_secret_access_key=SECRET_KEY)
    queue_arn = sqs.get_queue_attributes(QueueUrl=sqs.get_queue_url(QueueName=queue)["QueueUrl"],
                                         AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    rule = unique_name("clir")
    events.put_rule(Name=rule, EventPattern=json.dumps({"source": ["cli.test"]}))
    events.put_targets(Rule=rule, Targets=[{"Id": "q", "Arn": queue_arn, "InputPath": "$.detail"}])
    listing = cli("events", "rules").stdout
    assert rule in listing and queue in listing and "cli.test" in listing
    event_id = cli("events", "put", "--source", "cli.test", "--detail-type", "t", "--detail", '{"n": 1}').stdout
    assert len(event_id.strip()) == 36
    assert [json.loads(m["Body"]) for m in receive(cli, queue)] == [{"n": 1}]
    bad = cli("events", "put", "--source", "cli.test", "--detail-type", "t", "--detail", "[1", ok=False)
    assert bad.returncode != 0 and "MalformedDetail" in bad.stdout + bad.stderr
    events.remove_targets(Rule=rule, Ids=["q"])
    events.delete_rule(Name=rule)
    cli("queue", "rm", queue, "--yes")
