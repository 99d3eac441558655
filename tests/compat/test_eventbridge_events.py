"""boto3's EventBridge client against `lamina serve` (JSON 1.1, X-Amz-Target: AWSEvents.*): buses, rules with
event patterns and schedules, targets (Input, InputPath, InputTransformer) delivering to Lamina queues and
functions, PutEvents with per-entry results, TestEventPattern, and AWS's validation errors."""

from __future__ import annotations

import json
import time

import pytest

from helpers import aws_client, create_function, failure, make_queue, unique_name


@pytest.fixture(scope="module")
def events(endpoint: str):
    return aws_client(endpoint, "events")


@pytest.fixture(scope="module")
def sqs(endpoint: str):
    return aws_client(endpoint, "sqs")


def receive(sqs, url: str, want: int, timeout: float = 15.0) -> list:
    bodies: list = []
    deadline = time.monotonic() + timeout
    while len(bodies) < want and time.monotonic() < deadline:
        for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", []):
            bodies.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return bodies


def test_buses(events) -> None:
    name = unique_name("bus")
    arn = events.create_event_bus(Name=name, Description="orders")["EventBusArn"]
    assert arn == f"arn:aws:events:us-east-1:000000000000:event-bus/{name}"
    assert failure(events.create_event_bus, Name=name) == (400, "ResourceAlreadyExistsException",
                                                           f"Event bus {name} already exists.")
    described = events.describe_event_bus(Name=name)
    assert described["Arn"] == arn and described["Description"] == "orders"
    assert events.describe_event_bus()["Name"] == "default"
    names = [b["Name"] for b in events.list_event_buses()["EventBuses"]]
    assert "default" in names and name in names
    assert events.list_event_buses(NamePrefix=name)["EventBuses"][0]["Name"] == name
    events.delete_event_bus(Name=name)
    assert failure(events.describe_event_bus, Name=name) == (400, "ResourceNotFoundException",
                                                             f"Event bus {name} does not exist.")
    assert failure(events.delete_event_bus, Name="default") == (400, "ValidationException",
                                                                "Cannot delete event bus default.")


def test_rules_and_targets(events, sqs) -> None:
    _, queue_arn = make_queue(sqs, "ev")
    rule = unique_name("r")
    pattern = json.dumps({"source": ["shop"], "detail": {"total": [{"numeric": [">", 100]}]}})
    rule_arn = events.put_rule(Name=rule, EventPattern=pattern, Description="big orders")["RuleArn"]
    assert rule_arn == f"arn:aws:events:us-east-1:000000000000:rule/{rule}"
    described = events.describe_rule(Name=rule)
    assert described["EventPattern"] == pattern and described["State"] == "ENABLED"
    # PutRule replaces: the description not given is gone
    events.put_rule(Name=rule, EventPattern=pattern)
    assert "Description" not in events.describe_rule(Name=rule)
    events.disable_rule(Name=rule)
    assert events.describe_rule(Name=rule)["State"] == "DISABLED"
    events.enable_rule(Name=rule)
    assert [r["Name"] for r in events.list_rules(NamePrefix=rule)["Rules"]] == [rule]
    result = events.put_targets(Rule=rule, Targets=[
        {"Id": "q", "Arn": queue_arn, "InputPath": "$.detail"},
        {"Id": "missing", "Arn": "arn:aws:sqs:us-east-1:000000000000:nope"}])
    assert result["FailedEntryCount"] == 1 and result["FailedEntries"][0]["TargetId"] == "missing"
    assert [t["Id"] for t in events.list_targets_by_rule(Rule=rule)["Targets"]] == ["q"]
    assert failure(events.delete_rule, Name=rule) == (400, "ValidationException",
                                                      "Rule can't be deleted since it has targets.")
    removed = events.remove_targets(Rule=rule, Ids=["q", "other"])
    assert removed["FailedEntryCount"] == 1 and removed["FailedEntries"][0]["TargetId"] == "other"
    assert events.list_targets_by_rule(Rule=rule)["Targets"] == []
    events.delete_rule(Name=rule)
    assert failure(events.describe_rule, Name=rule) == (400, "ResourceNotFoundException",
                                                        f"Rule {rule} does not exist on EventBus default.")


@pytest.mark.parametrize("expression", ["rate(1 minutes)", "rate(10 minute)", "rate(10 MINUTES)",
                                        "rate(10 seconds)", "rate(0 minutes)", "rate( 10 minutes )",
                                        " rate(10 minutes)", "cron(0 1 * * * *)", "cron(71 8 1 * ? *)",
                                        "at(2030-01-01T00:00:00)"])
def test_invalid_schedule_expressions(events, expression: str) -> None:
    assert failure(events.put_rule, Name=unique_name("bad"), ScheduleExpression=expression) == (
        400, "ValidationException", "Parameter ScheduleExpression is not valid.")


def test_rule_validation(events) -> None:
    bus = unique_name("bus")
    events.create_event_bus(Name=bus)
    assert failure(events.put_rule, Name="x", ScheduleExpression="rate(5 minutes)", EventBusName=bus) == (
        400, "ValidationException", "ScheduleExpression is supported only on the default event bus.")
    assert failure(events.put_rule, Name="x") == (
        400, "ValidationException", "Parameter(s) EventPattern or ScheduleExpression must be specified.")
    assert failure(events.put_rule, Name="x", EventPattern='{"source": "not-an-array"}')[:2] == (
        400, "InvalidEventPatternException")
    assert failure(events.put_rule, Name="x", EventPattern="{}", EventBusName="nobus")[:2] == (
        400, "InvalidEventPatternException")
    assert failure(events.put_rule, Name="x", EventPattern='{"a": [1]}', EventBusName="nobus") == (
        400, "ResourceNotFoundException", "Event bus nobus does not exist.")
    assert failure(events.put_targets, Rule="nope", Targets=[{"Id": "a", "Arn": "arn:aws:sqs:us-east-1:0:q"}]) == (
        400, "ResourceNotFoundException", "Rule nope does not exist on EventBus default.")
    rule = unique_name("r")
    events.put_rule(Name=rule, EventPattern='{"source": ["a"]}')
    assert failure(events.put_targets, Rule=rule, Targets=[{"Id": "a", "Arn": "not-an-arn"}]) == (
        400, "ValidationException", "Parameter not-an-arn is not valid. Reason: Provided Arn is not in correct format.")
    assert failure(events.put_targets, Rule=rule, Targets=[{"Id": "a", "Arn": "arn:aws:sqs:us-east-1:0:q",
                                                            "Input": "{}", "InputPath": "$.detail"}])[:2] == (
        400, "ValidationException")
    assert failure(events.put_targets, Rule=rule, Targets=[{"Id": "a", "Arn": "arn:aws:sqs:us-east-1:0:q",
                                                            "Input": "not json"}])[:2] == (400, "ValidationException")
    events.delete_rule(Name=rule)
    events.delete_event_bus(Name=bus)


def test_put_events_routes_to_matching_targets(events, sqs) -> None:
    bus = unique_name("bus")
    events.create_event_bus(Name=bus)
    url, queue_arn = make_queue(sqs, "ev")
    rule = unique_name("r")
    events.put_rule(Name=rule, EventBusName=bus,
                    EventPattern=json.dumps({"source": ["shop"], "detail": {"total": [{"numeric": [">", 100]}]}}))
    events.put_targets(Rule=rule, EventBusName=bus, Targets=[
        {"Id": "whole", "Arn": queue_arn},
        {"Id": "const", "Arn": queue_arn, "Input": '{"constant": true}'},
        {"Id": "path", "Arn": queue_arn, "InputPath": "$.detail.items[0]"},
        {"Id": "tpl", "Arn": queue_arn, "InputTransformer": {
            "InputPathsMap": {"total": "$.detail.total", "src": "$.source"},
            "InputTemplate": '{"t": <total>, "msg": "from <src>", "rule": "<aws.events.rule-name>"}'}}])
    result = events.put_events(Entries=[
        {"EventBusName": bus, "Source": "shop", "DetailType": "order", "Detail": json.dumps(
            {"total": 250, "items": ["book"]})},
        {"EventBusName": bus, "Source": "shop", "DetailType": "order", "Detail": json.dumps({"total": 5})},
        {"EventBusName": bus, "Source": "shop", "DetailType": "order"},
        {"EventBusName": bus, "Source": "shop", "DetailType": "order", "Detail": "[1, 2"},
        {"EventBusName": "nobus", "Source": "shop", "DetailType": "order", "Detail": "{}"},
    ])
    assert result["FailedEntryCount"] == 3
    entries = result["Entries"]
    assert entries[0]["EventId"] and entries[1]["EventId"]
    assert entries[2]["ErrorCode"] == "InvalidArgument"
    assert entries[2]["ErrorMessage"] == "Parameter Detail is not valid. Reason: Detail is a required argument."
    assert entries[3]["ErrorCode"] == "MalformedDetail"
    assert entries[4]["ErrorCode"] == "InvalidArgument"
    got = receive(sqs, url, 4)
    assert len(got) == 4
    whole = next(b for b in got if isinstance(b, dict) and "detail-type" in b)
    assert whole["source"] == "shop" and whole["detail"] == {"total": 250, "items": ["book"]}
    assert whole["id"] == entries[0]["EventId"] and whole["account"] == "000000000000"
    assert {"constant": True} in got and "book" in got
    assert {"t": 250, "msg": "from shop", "rule": rule} in got
    assert receive(sqs, url, 1, timeout=1.5) == []   # the small order matched nothing
    assert failure(events.put_events, Entries=[{"Source": "a", "DetailType": "b", "Detail": "{}"}] * 11)[:2] == (
        400, "ValidationException")


def test_function_target(events, sqs, lambda_client) -> None:
    url, queue_arn = make_queue(sqs, "ev")
    fn = unique_name("efn")
    create_function(lambda_client, fn, {"app.py": "def handler(event, context):\n    return event\n"})
    lambda_client.put_function_event_invoke_config(FunctionName=fn,
                                                   DestinationConfig={"OnSuccess": {"Destination": queue_arn}})
    fn_arn = lambda_client.get_function(FunctionName=fn)["Configuration"]["FunctionArn"]
    rule = unique_name("r")
    events.put_rule(Name=rule, EventPattern=json.dumps({"detail-type": [{"prefix": "user."}]}))
    events.put_targets(Rule=rule, Targets=[{"Id": "fn", "Arn": fn_arn}])
    events.put_events(Entries=[{"Source": "app", "DetailType": "user.signup", "Detail": '{"id": 7}'}])
    records = receive(sqs, url, 1, timeout=30)
    assert len(records) == 1
    assert records[0]["requestPayload"]["detail"] == {"id": 7}
    assert records[0]["requestPayload"]["detail-type"] == "user.signup"
    events.remove_targets(Rule=rule, Ids=["fn"])
    events.delete_rule(Name=rule)


def test_test_event_pattern(events) -> None:
    event = json.dumps({"id": "1", "account": "000000000000", "source": "shop", "time": "2026-01-01T00:00:00Z",
                        "region": "us-east-1", "resources": [], "detail-type": "order",
                        "detail": {"ip": "10.0.0.7", "status": "PAID"}})
    assert events.test_event_pattern(EventPattern='{"detail": {"ip": [{"cidr": "10.0.0.0/24"}]}}', Event=event)[
        "Result"] is True
    assert events.test_event_pattern(EventPattern='{"detail": {"status": [{"anything-but": "PAID"}]}}',
                                     Event=event)["Result"] is False
    assert failure(events.test_event_pattern, EventPattern='{"a": "b"}', Event=event)[:2] == (
        400, "InvalidEventPatternException")
    assert failure(events.test_event_pattern, EventPattern='{"a": ["b"]}', Event='{"source": "x"}') == (
        400, "ValidationException", "Parameter Event is not valid.")


def test_lamina_function_state_changes_on_the_default_bus(events, sqs, lambda_client) -> None:
    url, queue_arn = make_queue(sqs, "ev")
    fn = unique_name("watched")
    rule = unique_name("r")
    events.put_rule(Name=rule, EventPattern=json.dumps({"source": ["lamina.lambda"],
                                                        "detail-type": ["Lambda Function State Change"],
                                                        "detail": {"functionName": [fn]}}))
    events.put_targets(Rule=rule, Targets=[{"Id": "q", "Arn": queue_arn}])
    arn = create_function(lambda_client, fn, {"app.py": "def handler(event, context):\n    return 1\n"})[
        "FunctionArn"]
    got = receive(sqs, url, 1)
    assert len(got) == 1
    assert got[0]["resources"] == [arn] and got[0]["account"] == "000000000000"
    assert got[0]["detail"]["state"] == "Active" and got[0]["detail"]["lastUpdateStatus"] == "Successful"
    events.remove_targets(Rule=rule, Ids=["q"])
    events.delete_rule(Name=rule)
