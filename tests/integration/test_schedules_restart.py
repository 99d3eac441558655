"""Schedules across real restarts of `lamina serve` on the same data directory: a one-time schedule that came due
while the server was stopped fires once after the start; a rate schedule that fired before the stop does not fire
again after it; a third start fires nothing."""

from __future__ import annotations

import datetime as dt
import time

import boto3
from botocore.config import Config

from helpers import ACCESS_KEY, REGION, SECRET_KEY, unique_name

ROLE = "arn:aws:iam::000000000000:role/s"


def client(server, service: str):
    return boto3.client(service, endpoint_url=server.endpoint, region_name=REGION, aws_access_key_id=ACCESS_KEY,
                        aws_secret_access_key=SECRET_KEY, config=Config(retries={"total_max_attempts": 1}))


def drain(sqs, url: str, seconds: float) -> list[str]:
    got: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
            got.append(m["Body"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return got


def test_missed_occurrence_fires_once_and_nothing_twice(lamina_factory, tmp_path) -> None:
    data = tmp_path / "data"
    first = lamina_factory(data_dir=data)
    sqs, scheduler = client(first, "sqs"), client(first, "scheduler")
    url = sqs.create_queue(QueueName=unique_name("restart"))["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    due = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=4)
    scheduler.create_schedule(Name="once", ScheduleExpression=f"at({due.strftime('%Y-%m-%dT%H:%M:%S')})",
                              FlexibleTimeWindow={"Mode": "OFF"},
                              Target={"Arn": arn, "RoleArn": ROLE, "Input": '"once"'})
    scheduler.create_schedule(Name="hourly", ScheduleExpression="rate(1 hour)", FlexibleTimeWindow={"Mode": "OFF"},
                              Target={"Arn": arn, "RoleArn": ROLE, "Input": '"hourly"'})
    assert drain(sqs, url, 1.5) == ['"hourly"']   # a rate starts when it is created
    assert first.stop() == 0
    time.sleep(max(0.0, (due - dt.datetime.now(dt.UTC)).total_seconds()) + 1.5)

    second = lamina_factory(data_dir=data)
    sqs = client(second, "sqs")
    assert drain(sqs, url, 3) == ['"once"']
    assert second.stop() == 0

    third = lamina_factory(data_dir=data)
    sqs = client(third, "sqs")
    assert drain(sqs, url, 2) == []
    assert {s["Name"] for s in client(third, "scheduler").list_schedules()["Schedules"]} == {"once", "hourly"}


def test_sigkill_just_before_the_due_time_loses_nothing_and_repeats_nothing(lamina_factory, tmp_path) -> None:
    """SIGKILL half a second before one-time schedules are due (after the scheduler has committed them, within its
    1 s lead, but before their targets have them) and again right after a start has sent them: each arrives once."""
    data = tmp_path / "data"
    first = lamina_factory(data_dir=data)
    sqs, scheduler = client(first, "sqs"), client(first, "scheduler")
    url = sqs.create_queue(QueueName=unique_name("kill"))["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    due = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=4)).replace(microsecond=0)
    for i in range(3):
        scheduler.create_schedule(Name=f"k{i}", ScheduleExpression=f"at({due.strftime('%Y-%m-%dT%H:%M:%S')})",
                                  FlexibleTimeWindow={"Mode": "OFF"},
                                  Target={"Arn": arn, "RoleArn": ROLE, "Input": f'"k{i}"'})
    time.sleep(max(0.0, (due - dt.datetime.now(dt.UTC)).total_seconds() - 0.5))
    first.proc.kill()
    first.proc.wait(10)

    second = lamina_factory(data_dir=data)
    sqs = client(second, "sqs")
    got = drain(sqs, url, 3)
    second.proc.kill()                 # right after the start sent them: they must not come again
    second.proc.wait(10)
    assert sorted(got) == ['"k0"', '"k1"', '"k2"']

    third = lamina_factory(data_dir=data)
    assert drain(client(third, "sqs"), url, 2) == []
