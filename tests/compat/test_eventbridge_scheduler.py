"""boto3's EventBridge Scheduler client against `lamina serve`: every operation (schedules and schedule groups),
AWS's validation errors, and firing — a rate schedule at 1-minute granularity on a server whose schedule clock runs
100x (LAMINA_SCHEDULE_TIME_SCALE=0.01) into a Lamina queue and into a function (its async invoke's on-success
destination, a queue, shows the payload), Input placeholders, one-time `at` with ActionAfterCompletion DELETE."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator

import pytest

from helpers import (
    LaminaServer,
    aws_client,
    create_function,
    failure,
    make_queue,
    unique_name,
)

ROLE = "arn:aws:iam::000000000000:role/scheduler"
WINDOW = {"Mode": "OFF"}


@pytest.fixture(scope="module")
def scheduler(endpoint: str):
    return aws_client(endpoint, "scheduler")


@pytest.fixture(scope="module")
def fast(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaminaServer]:
    """A server whose schedule clock runs 100x: rate(1 minute) fires every 0.6 s."""
    tmp = tmp_path_factory.mktemp("lamina-sched")
    s = LaminaServer(data_dir=tmp / "data", log_path=tmp / "server.log",
                     extra_env={"LAMINA_SCHEDULE_TIME_SCALE": "0.01", "LAMINA_ASYNC_WAIT_SCALE": "0.01"})
    s.start()
    yield s
    s.stop()
    s.kill_leftovers()


def receive(sqs, url: str, want: int, timeout: float = 20.0) -> list[str]:
    bodies: list[str] = []
    deadline = time.monotonic() + timeout
    while len(bodies) < want and time.monotonic() < deadline:
        for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
            bodies.append(m["Body"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return bodies


def test_schedule_lifecycle(scheduler) -> None:
    name = unique_name("s")
    target = {"Arn": "arn:aws:sqs:us-east-1:000000000000:nothing", "RoleArn": ROLE, "Input": '{"a": 1}',
              "RetryPolicy": {"MaximumEventAgeInSeconds": 120, "MaximumRetryAttempts": 2}}
    arn = scheduler.create_schedule(Name=name, ScheduleExpression="cron(0 12 ? * MON-FRI *)",
                                    ScheduleExpressionTimezone="Europe/Berlin", FlexibleTimeWindow=WINDOW,
                                    Target=target, Description="weekday noon")["ScheduleArn"]
    assert arn == f"arn:aws:scheduler:us-east-1:000000000000:schedule/default/{name}"
    got = scheduler.get_schedule(Name=name)
    assert got["ScheduleExpression"] == "cron(0 12 ? * MON-FRI *)"
    assert got["ScheduleExpressionTimezone"] == "Europe/Berlin"
    assert got["State"] == "ENABLED" and got["GroupName"] == "default" and got["Description"] == "weekday noon"
    assert got["Target"]["RetryPolicy"] == {"MaximumEventAgeInSeconds": 120, "MaximumRetryAttempts": 2}
    assert got["ActionAfterCompletion"] == "NONE"
    assert isinstance(got["CreationDate"], dt.datetime)
    # Update is a full replace: the description and time zone not given are gone.
    scheduler.update_schedule(Name=name, ScheduleExpression="rate(5 minutes)", FlexibleTimeWindow=WINDOW,
                              Target={"Arn": target["Arn"], "RoleArn": ROLE}, State="DISABLED")
    got = scheduler.get_schedule(Name=name)
    assert got["ScheduleExpression"] == "rate(5 minutes)" and got["State"] == "DISABLED"
    assert "Description" not in got and "ScheduleExpressionTimezone" not in got
    listed = scheduler.list_schedules(NamePrefix=name)["Schedules"]
    assert [s["Name"] for s in listed] == [name] and listed[0]["Target"] == {"Arn": target["Arn"]}
    assert scheduler.list_schedules(NamePrefix=name, State="ENABLED")["Schedules"] == []
    scheduler.delete_schedule(Name=name)
    assert failure(scheduler.get_schedule, Name=name) == (404, "ResourceNotFoundException",
                                                            f"Schedule {name} does not exist.")
    assert failure(scheduler.delete_schedule, Name=name)[:2] == (404, "ResourceNotFoundException")


def test_groups_and_paging(scheduler) -> None:
    group = unique_name("g")
    group_arn = scheduler.create_schedule_group(Name=group)["ScheduleGroupArn"]
    assert group_arn.endswith(f":schedule-group/{group}")
    assert failure(scheduler.create_schedule_group, Name=group)[:2] == (409, "ConflictException")
    assert scheduler.get_schedule_group(Name=group)["State"] == "ACTIVE"
    assert group in [g["Name"] for g in scheduler.list_schedule_groups()["ScheduleGroups"]]
    for i in range(5):
        scheduler.create_schedule(Name=f"p{i}", GroupName=group, ScheduleExpression="rate(1 day)",
                                  FlexibleTimeWindow=WINDOW, Target={"Arn": "arn:aws:sqs:us-east-1:0:q",
                                                                     "RoleArn": ROLE})
    first = scheduler.list_schedules(GroupName=group, MaxResults=2)
    assert [s["Name"] for s in first["Schedules"]] == ["p0", "p1"] and first["NextToken"]
    names = [s["Name"] for page in scheduler.get_paginator("list_schedules").paginate(
        GroupName=group, PaginationConfig={"PageSize": 2}) for s in page["Schedules"]]
    assert names == [f"p{i}" for i in range(5)]
    assert scheduler.get_schedule(Name="p3", GroupName=group)["GroupName"] == group
    assert failure(scheduler.get_schedule, Name="p3")[:2] == (404, "ResourceNotFoundException")
    scheduler.delete_schedule_group(Name=group)
    assert failure(scheduler.get_schedule_group, Name=group) == (404, "ResourceNotFoundException",
                                                                 f"Schedule group {group} does not exist.")
    assert scheduler.list_schedules(GroupName=group)["Schedules"] == []
    assert failure(scheduler.delete_schedule_group, Name="default")[:2] == (400, "ValidationException")
    assert failure(scheduler.create_schedule, Name="x", GroupName=group, ScheduleExpression="rate(1 day)",
                   FlexibleTimeWindow=WINDOW, Target={"Arn": "arn:aws:sqs:us-east-1:0:q", "RoleArn": ROLE}) == (
        404, "ResourceNotFoundException", f"Schedule group {group} does not exist.")


@pytest.mark.parametrize("expression", ["rate(1 minutes)", "rate(10 minute)", "rate(10 MINUTES)", "rate(10 seconds)",
                                        "rate(0 minutes)", "rate( 10 minutes )", " rate(1 minute)",
                                        "cron(0 1 * * * *)", "cron(71 8 1 * ? *)", "cron(0 1 * * ?)",
                                        "cron(0 1 ? * 3#1,6#3 *)", "at(2026-02-30T10:00:00)", "every day"])
def test_invalid_expressions(scheduler, expression: str) -> None:
    status, code, _ = failure(scheduler.create_schedule, Name=unique_name("bad"), ScheduleExpression=expression,
                              FlexibleTimeWindow=WINDOW, Target={"Arn": "arn:aws:sqs:us-east-1:0:q", "RoleArn": ROLE})
    assert (status, code) == (400, "ValidationException")


def test_validation_errors(scheduler) -> None:
    target = {"Arn": "arn:aws:sqs:us-east-1:000000000000:q", "RoleArn": ROLE}
    base = {"ScheduleExpression": "rate(1 hour)", "FlexibleTimeWindow": WINDOW, "Target": target}
    name = unique_name("v")
    bad = [
        {**base, "ScheduleExpressionTimezone": "Mars/Olympus"},
        {**base, "FlexibleTimeWindow": {"Mode": "FLEXIBLE"}},
        {**base, "FlexibleTimeWindow": {"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 1441}},
        {**base, "FlexibleTimeWindow": {"Mode": "OFF", "MaximumWindowInMinutes": 5}},
        {**base, "Target": {**target, "RetryPolicy": {"MaximumRetryAttempts": 186}}},
        {**base, "Target": {**target, "DeadLetterConfig": {"Arn": "arn:aws:lambda:us-east-1:0:function:f"}}},
        {**base, "StartDate": dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)},
        {**base, "EndDate": dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)},
        {**base, "StartDate": dt.datetime.now(dt.UTC) + dt.timedelta(hours=2),
         "EndDate": dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)},
    ]
    for params in bad:
        assert failure(scheduler.create_schedule, Name=name, **params)[:2] == (400, "ValidationException"), params
    assert failure(scheduler.create_schedule, Name="bad name!", **base)[:2] == (400, "ValidationException")
    scheduler.create_schedule(Name=name, ClientToken="tok-1", **base)
    # the same request retried with its client token is the same schedule; another is a conflict
    assert scheduler.create_schedule(Name=name, ClientToken="tok-1", **base)["ScheduleArn"].endswith(name)
    assert failure(scheduler.create_schedule, Name=name, **base) == (409, "ConflictException",
                                                                     f"Schedule {name} already exists.")
    assert failure(scheduler.update_schedule, Name=unique_name("nope"), **base)[:2] == (404,
                                                                                      "ResourceNotFoundException")
    scheduler.delete_schedule(Name=name)


def test_rate_fires_on_time_into_a_queue(fast: LaminaServer) -> None:
    scheduler, sqs = aws_client(fast.endpoint, "scheduler"), aws_client(fast.endpoint, "sqs")
    url, arn = make_queue(sqs, "sched")
    name = unique_name("rate")
    scheduler.create_schedule(Name=name, ScheduleExpression="rate(1 minute)", FlexibleTimeWindow=WINDOW,
                              Target={"Arn": arn, "RoleArn": ROLE,
                                      "Input": '{"arn": "<aws.scheduler.schedule-arn>", '
                                               '"at": "<aws.scheduler.scheduled-time>"}'})
    bodies = receive(sqs, url, 4)
    scheduler.delete_schedule(Name=name)
    assert len(bodies) >= 4
    events = [json.loads(b) for b in bodies]
    assert all(e["arn"].endswith(f"schedule/default/{name}") for e in events)
    times = sorted(dt.datetime.strptime(e["at"], "%Y-%m-%dT%H:%M:%SZ") for e in events)
    # one occurrence a (scaled) minute, none skipped or repeated
    assert [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)] == [60.0] * (len(times) - 1)


def test_function_target_gets_the_scheduled_event(endpoint: str, lambda_client) -> None:
    scheduler, sqs, lam = aws_client(endpoint, "scheduler"), aws_client(endpoint, "sqs"), lambda_client
    url, queue_arn = make_queue(sqs, "sched")
    fn = unique_name("sfn")
    create_function(lam, fn, {"app.py": "def handler(event, context):\n    return {'got': event}\n"})
    lam.put_function_event_invoke_config(FunctionName=fn,
                                         DestinationConfig={"OnSuccess": {"Destination": queue_arn}})
    fn_arn = lam.get_function(FunctionName=fn)["Configuration"]["FunctionArn"]
    name = unique_name("at")
    when = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=4)).strftime("%Y-%m-%dT%H:%M:%S")
    scheduler.create_schedule(Name=name, ScheduleExpression=f"at({when})", FlexibleTimeWindow=WINDOW,
                              ActionAfterCompletion="DELETE", Target={"Arn": fn_arn, "RoleArn": ROLE})
    records = [json.loads(b) for b in receive(sqs, url, 1, timeout=30)]
    assert len(records) == 1
    event = records[0]["requestPayload"]
    assert event["source"] == "aws.scheduler" and event["detail-type"] == "Scheduled Event"
    assert event["resources"] == [f"arn:aws:scheduler:us-east-1:000000000000:schedule/default/{name}"]
    assert records[0]["responsePayload"] == {"got": event}
    # a one-time schedule with ActionAfterCompletion DELETE is gone once it has fired
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(s["Name"] == name for s in scheduler.list_schedules()["Schedules"]):
        time.sleep(0.1)
    assert failure(scheduler.get_schedule, Name=name)[:2] == (404, "ResourceNotFoundException")


def test_scheduled_rule_sends_aws_scheduled_events(fast: LaminaServer) -> None:
    events, sqs = aws_client(fast.endpoint, "events"), aws_client(fast.endpoint, "sqs")
    url, arn = make_queue(sqs, "sched")
    rule = unique_name("tick")
    rule_arn = events.put_rule(Name=rule, ScheduleExpression="rate(1 minute)")["RuleArn"]
    events.put_targets(Rule=rule, Targets=[{"Id": "q", "Arn": arn}])
    got = [json.loads(b) for b in receive(sqs, url, 2)]
    events.disable_rule(Name=rule)
    assert len(got) >= 2
    assert all(e["source"] == "aws.events" and e["detail-type"] == "Scheduled Event" and e["resources"] == [rule_arn]
               and e["detail"] == {} for e in got)
    times = sorted(dt.datetime.strptime(e["time"], "%Y-%m-%dT%H:%M:%SZ") for e in got)
    assert (times[1] - times[0]).total_seconds() == 60.0


def test_schedule_group_tags(scheduler) -> None:
    group = unique_name("tg")
    arn = scheduler.create_schedule_group(Name=group, Tags=[{"Key": "team", "Value": "core"}])["ScheduleGroupArn"]
    assert scheduler.list_tags_for_resource(ResourceArn=arn)["Tags"] == [{"Key": "team", "Value": "core"}]
    scheduler.tag_resource(ResourceArn=arn, Tags=[{"Key": "env", "Value": "dev"}, {"Key": "team", "Value": "ops"}])
    assert sorted((t["Key"], t["Value"]) for t in scheduler.list_tags_for_resource(ResourceArn=arn)["Tags"]) == [
        ("env", "dev"), ("team", "ops")]
    scheduler.untag_resource(ResourceArn=arn, TagKeys=["team"])
    assert scheduler.list_tags_for_resource(ResourceArn=arn)["Tags"] == [{"Key": "env", "Value": "dev"}]
    scheduler.delete_schedule_group(Name=group)
    assert failure(scheduler.list_tags_for_resource, ResourceArn=arn)[:2] == (404, "ResourceNotFoundException")
