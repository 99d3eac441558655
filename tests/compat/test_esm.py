"""Event source mappings against `lamina serve`: the API's states and errors, batches, partial batch failures,
poison messages reaching the dead-letter queue, MaximumConcurrency, filters, disable/enable, FIFO order, a
Powertools BatchProcessor function written for AWS, and queues as async-invoke destinations and DLQs."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable

import pytest
from test_sqs import sqs_client

from helpers import create_function, failure, installed_files, unique_name

pytestmark = pytest.mark.timeout(180)

# Each batch's records as one log line: "ESM {json}".
RECORDER = '''
import json, time

def handler(event, context):
    records = event["Records"]
    start = time.time()
    time.sleep(float(__import__("os").environ.get("SLEEP", "0")))
    print("ESM " + json.dumps({"bodies": [r["body"] for r in records], "start": start, "end": time.time(),
                               "receives": [r["attributes"]["ApproximateReceiveCount"] for r in records],
                               "groups": [r["attributes"].get("MessageGroupId") for r in records],
                               "record": records[0]}))
    failed = [{"itemIdentifier": r["messageId"]} for r in records if "bad" in r["body"]]
    if any("boom" in r["body"] and r["attributes"]["ApproximateReceiveCount"] == "1" for r in records):
        raise RuntimeError("boom on the first receive")
    return {"batchItemFailures": failed}
'''


@pytest.fixture(scope="module")
def sqs(endpoint):
    return sqs_client(endpoint, "json")


def batches(endpoint: str, name: str) -> list[dict]:
    with urllib.request.urlopen(f"{endpoint}/lamina/v1/functions/{name}/logs", timeout=10) as resp:
        lines = [json.loads(x).get("message", "") for x in resp.read().splitlines()]
    return [json.loads(line.split("ESM ", 1)[1]) for line in lines if "ESM {" in line]


def bodies(endpoint: str, name: str) -> list[str]:
    return [b for batch in batches(endpoint, name) for b in batch["bodies"]]


def wait_for(check: Callable[[], object], timeout: float = 60.0, what: str = "the condition") -> object:
    """Poll until check() is truthy (bounded; the assertion is on what happened, not how fast)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def queue(sqs, prefix: str, dlq_url: str | None = None, max_receives: int = 2, **attributes: str) -> tuple[str, str]:
    attrs = dict(attributes)
    if dlq_url:
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        attrs["RedrivePolicy"] = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives})
    url = sqs.create_queue(QueueName=unique_name(prefix) + (".fifo" if attrs.get("FifoQueue") else ""),
                           Attributes=attrs)["QueueUrl"]
    return url, sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def depth(sqs, url: str) -> tuple[int, int]:
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(a["ApproximateNumberOfMessages"]), int(a["ApproximateNumberOfMessagesNotVisible"])


def settled(lambda_client, uuid: str) -> str:
    return wait_for(lambda: (s := lambda_client.get_event_source_mapping(UUID=uuid)["State"]) in
                    ("Enabled", "Disabled") and s, 10, "the mapping to settle")


@pytest.fixture
def recorder(functions):
    def make(**env: str) -> str:
        return functions({"app.py": RECORDER}, prefix="esm", Timeout=2, Environment={"Variables": env})
    return make


def test_api_states_and_errors(lambda_client, sqs, recorder):
    name = recorder()
    url, arn = queue(sqs, "api", VisibilityTimeout="30")
    created = lambda_client.create_event_source_mapping(EventSourceArn=arn, FunctionName=name, Enabled=False)
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert created["State"] == "Creating" and created["BatchSize"] == 10
    assert created["MaximumBatchingWindowInSeconds"] == 0 and created["FunctionResponseTypes"] == []
    assert created["EventSourceMappingArn"].endswith(":event-source-mapping:" + created["UUID"])
    assert created["FunctionArn"].endswith(":function:" + name) and "ScalingConfig" not in created
    uuid = created["UUID"]
    assert settled(lambda_client, uuid) == "Disabled"
    updated = lambda_client.update_event_source_mapping(UUID=uuid, Enabled=True, BatchSize=5,
                                                        ScalingConfig={"MaximumConcurrency": 3})
    assert updated["State"] == "Enabling" and updated["BatchSize"] == 5
    assert settled(lambda_client, uuid) == "Enabled"
    assert lambda_client.update_event_source_mapping(UUID=uuid, BatchSize=6)["State"] == "Updating"
    listed = lambda_client.list_event_source_mappings(FunctionName=name)["EventSourceMappings"]
    assert [m["UUID"] for m in listed] == [uuid] and listed[0]["ScalingConfig"] == {"MaximumConcurrency": 3}
    assert [m["UUID"] for m in lambda_client.list_event_source_mappings(EventSourceArn=arn)["EventSourceMappings"]] \
        == [uuid]

    cases = [
        (dict(EventSourceArn=arn, FunctionName=name), 409, "ResourceConflictException", "already exists"),
        (dict(EventSourceArn=arn, FunctionName="no-such-function"), 400, "InvalidParameterValueException",
         "Function does not exist"),
        (dict(EventSourceArn=arn[:-3] + "zzz", FunctionName=name), 400, "InvalidParameterValueException",
         "AWS.SimpleQueueService.NonExistentQueue"),
        (dict(EventSourceArn=arn, FunctionName=name, BatchSize=20), 400, "InvalidParameterValueException",
         "Maximum batch window in seconds must be greater than 0 if maximum batch size is greater than 10"),
        (dict(EventSourceArn=arn, FunctionName=name, BatchSize=10001, MaximumBatchingWindowInSeconds=1), 400,
         "ValidationException", "less than or equal to 10000"),
        (dict(EventSourceArn=arn, FunctionName=name, FilterCriteria={"Filters": [{"Pattern": "{\"a\": 1}"}]}), 400,
         "InvalidParameterValueException", "Invalid filter pattern definition."),
        (dict(EventSourceArn=arn, FunctionName=name, ScalingConfig={"MaximumConcurrency": 1001}), 400,
         "ValidationException", "less than or equal to 1000"),
        (dict(EventSourceArn=arn, FunctionName=name, StartingPosition="LATEST"), 400,
         "InvalidParameterValueException", "StartingPosition"),
    ]
    for kwargs, status, code, text in cases:
        got = failure(lambda_client.create_event_source_mapping, **kwargs)
        assert got[:2] == (status, code) and text in got[2], got

    deleted = lambda_client.delete_event_source_mapping(UUID=uuid)
    assert deleted["State"] == "Deleting" and deleted["ResponseMetadata"]["HTTPStatusCode"] == 202
    got = failure(lambda_client.get_event_source_mapping, UUID=uuid)
    assert got == (404, "ResourceNotFoundException", "The resource you requested does not exist.")
    sqs.delete_queue(QueueUrl=url)


def test_batches_of_the_configured_size_and_the_sqs_event(lambda_client, sqs, recorder, endpoint):
    name = recorder()
    url, arn = queue(sqs, "batch", VisibilityTimeout="30")
    mapping = lambda_client.create_event_source_mapping(EventSourceArn=arn, FunctionName=name, Enabled=False,
                                                        BatchSize=10)
    settled(lambda_client, mapping["UUID"])
    for start in (0, 10, 20):
        sqs.send_message_batch(QueueUrl=url, Entries=[
            {"Id": str(i), "MessageBody": f"m{i}", "MessageAttributes": {
                "n": {"DataType": "Number", "StringValue": str(i)}}} for i in range(start, min(start + 10, 25))])
    lambda_client.update_event_source_mapping(UUID=mapping["UUID"], Enabled=True)
    wait_for(lambda: len(bodies(endpoint, name)) >= 25, what="25 messages handled")
    sizes = sorted(len(b["bodies"]) for b in batches(endpoint, name))
    assert sizes == [5, 10, 10]
    assert sorted(bodies(endpoint, name)) == sorted(f"m{i}" for i in range(25))
    wait_for(lambda: depth(sqs, url) == (0, 0), what="the batches deleted")

    record = batches(endpoint, name)[0]["record"]
    assert list(record) == ["messageId", "receiptHandle", "body", "attributes", "messageAttributes",
                            "md5OfMessageAttributes", "md5OfBody", "eventSource", "eventSourceARN", "awsRegion"]
    assert record["eventSource"] == "aws:sqs" and record["eventSourceARN"] == arn and record["awsRegion"] == "us-east-1"
    assert list(record["attributes"]) == ["ApproximateReceiveCount", "SentTimestamp", "SenderId",
                                          "ApproximateFirstReceiveTimestamp"]
    [(attr_name, attr)] = record["messageAttributes"].items()
    assert attr_name == "n" and attr == {"stringValue": attr["stringValue"], "stringListValues": [],
                                         "binaryListValues": [], "dataType": "Number"}
    lambda_client.delete_event_source_mapping(UUID=mapping["UUID"])
    sqs.delete_queue(QueueUrl=url)


def test_batching_window_gathers_more_than_one_send(lambda_client, sqs, recorder, endpoint):
    name = recorder()
    url, arn = queue(sqs, "window", VisibilityTimeout="60")
    mapping = lambda_client.create_event_source_mapping(EventSourceArn=arn, FunctionName=name, BatchSize=100,
                                                        MaximumBatchingWindowInSeconds=3)
    settled(lambda_client, mapping["UUID"])
    for start in (0, 10):
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": f"w{i}"}
                                                      for i in range(start, start + 10)])
    wait_for(lambda: len(bodies(endpoint, name)) >= 20, what="20 messages handled")
    # Each send holds 10 messages: a batch of more than 10 was gathered across sends by the window.
    assert max(len(b["bodies"]) for b in batches(endpoint, name)) > 10
    lambda_client.delete_event_source_mapping(UUID=mapping["UUID"])
    sqs.delete_queue(QueueUrl=url)


def test_partial_batch_failure_and_poison_messages_reach_the_dlq(lambda_client, sqs, recorder, endpoint):
    name = recorder()
    dlq, _ = queue(sqs, "esm-dlq")
    url, arn = queue(sqs, "partial", dlq_url=dlq, max_receives=2, VisibilityTimeout="2")
    mapping = lambda_client.create_event_source_mapping(EventSourceArn=arn, FunctionName=name, Enabled=False,
                                                        FunctionResponseTypes=["ReportBatchItemFailures"])
    settled(lambda_client, mapping["UUID"])
    sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": b, "MessageBody": b} for b in ("ok1", "bad", "ok2")])
    lambda_client.update_event_source_mapping(UUID=mapping["UUID"], Enabled=True)
    [dead] = wait_for(lambda: sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=5,
                                                  AttributeNames=["All"]).get("Messages"), what="the DLQ")
    assert dead["Body"] == "bad" and dead["Attributes"]["DeadLetterQueueSourceArn"] == arn
    seen = bodies(endpoint, name)
    # Only the failed message came back, once per receive up to maxReceiveCount (2); the others ran once.
    assert sorted(seen) == ["bad", "bad", "ok1", "ok2"]
    assert depth(sqs, url) == (0, 0)
    lambda_client.delete_event_source_mapping(UUID=mapping["UUID"])
    for u in (url, dlq):
        sqs.delete_queue(QueueUrl=u)


def test_a_function_error_returns_the_whole_batch(lambda_client, sqs, recorder, endpoint):
    name = recorder()
    url, arn = queue(sqs, "error", VisibilityTimeout="2")
    mapping = lambda_client.create_event_source_mapping(EventSourceArn=arn, FunctionName=name, Enabled=False)
    settled(lambda_client, mapping["UUID"])
    sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": b, "MessageBody": b} for b in ("boom", "fine")])
    lambda_client.update_event_source_mapping(UUID=mapping["UUID"], Enabled=True)
    wait_for(lambda: depth(sqs, url) == (0, 0) and len(bodies(endpoint, name)) >= 4, what="the retry")
    runs = batches(endpoint, name)
    assert [sorted(b["bodies"]) for b in runs] == [["boom", "fine"], ["boom", "fine"]]
    assert runs[1]["receives"] == ["2", "2"]
    lambda_client.delete_event_source_mapping(UUID=mapping["UUID"])
    sqs.delete_queue(QueueUrl=url)


def test_maximum_concurrency_is_never_exceeded(lambda_client, sqs, recorder, endpoint):
    name = recorder(SLEEP="0.3")
    url, arn = queue(sqs, "conc", VisibilityTimeout="30")
    mapping = lambda_client.create_event_source_mapping(EventSourceArn=arn, FunctionName=name, Enabled=False,
                                                        BatchSize=1, ScalingConfig={"MaximumConcurrency": 2})
    settled(lambda_client, mapping["UUID"])
    sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": f"c{i}"} for i in range(10)])
    lambda_client.update_event_source_mapping(UUID=mapping["UUID"], Enabled=True)
    wait_for(lambda: len(bodies(endpoint, name)) >= 10, what="10 messages handled")
    # Measured by the function itself: the most invocations whose [start, end] overlap.
    runs = batches(endpoint, name)
    edges = sorted([(b["start"], 1) for b in runs] + [(b["end"], -1) for b in runs], key=lambda e: (e[0], e[1]))
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    assert peak == 2
    with urllib.request.urlopen(f"{endpoint}/lamina/v1/event-source-mappings", timeout=10) as resp:
        [stats] = [s for s in json.load(resp)["EventSourceMappings"] if s["UUID"] == mapping["UUID"]]
    assert stats["PeakConcurrency"] == 2
    lambda_client.delete_event_source_mapping(UUID=mapping["UUID"])
    sqs.delete_queue(QueueUrl=url)


def test_filters_delete_what_does_not_match(lambda_client, sqs, recorder, endpoint):
    name = recorder()
    url, arn = queue(sqs, "filter", VisibilityTimeout="30")
    mapping = lambda_client.create_event_source_mapping(
        EventSourceArn=arn, FunctionName=name, Enabled=False, FilterCriteria={"Filters": [
            {"Pattern": json.dumps({"body": {"kind": ["order"], "total": [{"numeric": [">", 10]}]}})},
            {"Pattern": json.dumps({"messageAttributes": {"priority": {"stringValue": ["high"]}}})}]})
    settled(lambda_client, mapping["UUID"])
    entries = [("big", json.dumps({"kind": "order", "total": 50})),
               ("small", json.dumps({"kind": "order", "total": 5})),
               ("refund", json.dumps({"kind": "refund", "total": 50})), ("text", "not json")]
    sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": i, "MessageBody": b} for i, b in entries] + [
        {"Id": "urgent", "MessageBody": "plain", "MessageAttributes": {"priority": {"DataType": "String",
                                                                                  "StringValue": "high"}}}])
    lambda_client.update_event_source_mapping(UUID=mapping["UUID"], Enabled=True)
    wait_for(lambda: depth(sqs, url) == (0, 0), what="the queue emptied")
    assert sorted(bodies(endpoint, name)) == sorted([entries[0][1], "plain"])
    lambda_client.delete_event_source_mapping(UUID=mapping["UUID"])
    sqs.delete_queue(QueueUrl=url)


def test_disable_and_enable(lambda_client, sqs, recorder, endpoint):
    name = recorder()
    url, arn = queue(sqs, "toggle", VisibilityTimeout="30")
    mapping = lambda_client.create_event_source_mapping(EventSourceArn=arn, FunctionName=name)
    assert settled(lambda_client, mapping["UUID"]) == "Enabled"
    sqs.send_message(QueueUrl=url, MessageBody="first")
    wait_for(lambda: bodies(endpoint, name) == ["first"], what="the first message")
    assert lambda_client.update_event_source_mapping(UUID=mapping["UUID"], Enabled=False)["State"] == "Disabling"
    assert settled(lambda_client, mapping["UUID"]) == "Disabled"
    sqs.send_message(QueueUrl=url, MessageBody="second")
    # Disabled: nothing receives it; it waits, visible, in the queue.
    [m] = sqs.receive_message(QueueUrl=url, VisibilityTimeout=0)["Messages"]
    assert m["Body"] == "second" and bodies(endpoint, name) == ["first"]
    lambda_client.update_event_source_mapping(UUID=mapping["UUID"], Enabled=True)
    wait_for(lambda: bodies(endpoint, name) == ["first", "second"], what="the second message")
    lambda_client.delete_event_source_mapping(UUID=mapping["UUID"])
    sqs.delete_queue(QueueUrl=url)


def test_a_mapping_outlives_its_function(lambda_client, sqs, recorder, endpoint):
    name = recorder()
    url, arn = queue(sqs, "orphan", VisibilityTimeout="30")
    mapping = lambda_client.create_event_source_mapping(EventSourceArn=arn, FunctionName=name)
    uuid = mapping["UUID"]
    assert settled(lambda_client, uuid) == "Enabled"
    sqs.send_message(QueueUrl=url, MessageBody="before")
    wait_for(lambda: bodies(endpoint, name) == ["before"], what="the first message")
    wait_for(lambda: depth(sqs, url) == (0, 0), what="the first message's delete")

    lambda_client.delete_function(FunctionName=name)
    # As AWS records it: the mapping is still there, unchanged (Enabled), listable by the gone function's name.
    got = lambda_client.get_event_source_mapping(UUID=uuid)
    assert got["State"] == "Enabled" and got["FunctionArn"] == mapping["FunctionArn"]
    assert [m["UUID"] for m in lambda_client.list_event_source_mappings(FunctionName=name)["EventSourceMappings"]] \
        == [uuid]
    assert lambda_client.list_event_source_mappings(FunctionName="no-such-function")["EventSourceMappings"] == []
    # Nothing delivers meanwhile: the message waits, visible, and no receive is spent on it.
    sqs.send_message(QueueUrl=url, MessageBody="while-gone")
    assert depth(sqs, url) == (1, 0)

    # A function of the same name again: the mapping (by ARN) feeds it.
    create_function(lambda_client, name, {"app.py": RECORDER}, Timeout=2)
    try:
        wait_for(lambda: "while-gone" in bodies(endpoint, name), what="delivery to the new function")
        [batch] = [b for b in batches(endpoint, name) if b["bodies"] == ["while-gone"]]
        assert batch["receives"] == ["1"]
        assert lambda_client.delete_event_source_mapping(UUID=uuid)["State"] == "Deleting"
    finally:
        lambda_client.delete_function(FunctionName=name)
    sqs.delete_queue(QueueUrl=url)


def test_a_mapping_of_a_deleted_function_can_be_pointed_elsewhere_and_deleted(lambda_client, sqs, recorder,
                                                                               endpoint):
    name, other = recorder(), recorder()
    url, arn = queue(sqs, "orphan-rm", VisibilityTimeout="30")
    uuid = lambda_client.create_event_source_mapping(EventSourceArn=arn, FunctionName=name)["UUID"]
    lambda_client.delete_function(FunctionName=name)
    assert lambda_client.get_event_source_mapping(UUID=uuid)["UUID"] == uuid
    sqs.send_message(QueueUrl=url, MessageBody="for-the-other")
    updated = lambda_client.update_event_source_mapping(UUID=uuid, FunctionName=other)
    assert updated["FunctionArn"].endswith(":function:" + other)
    wait_for(lambda: bodies(endpoint, other) == ["for-the-other"], what="delivery to the other function")
    assert lambda_client.delete_event_source_mapping(UUID=uuid)["State"] == "Deleting"
    assert failure(lambda_client.get_event_source_mapping, UUID=uuid) == (
        404, "ResourceNotFoundException", "The resource you requested does not exist.")
    sqs.delete_queue(QueueUrl=url)


def test_fifo_order_per_group(lambda_client, sqs, recorder, endpoint):
    name = recorder()
    url, arn = queue(sqs, "fifo-esm", FifoQueue="true", ContentBasedDeduplication="true", VisibilityTimeout="30")
    mapping = lambda_client.create_event_source_mapping(EventSourceArn=arn, FunctionName=name, Enabled=False,
                                                        BatchSize=2)
    settled(lambda_client, mapping["UUID"])
    for i in range(6):
        for group in ("g1", "g2"):
            sqs.send_message(QueueUrl=url, MessageBody=f"{group}-{i}", MessageGroupId=group)
    lambda_client.update_event_source_mapping(UUID=mapping["UUID"], Enabled=True)
    wait_for(lambda: len(bodies(endpoint, name)) >= 12, what="12 messages handled")
    runs = sorted(batches(endpoint, name), key=lambda b: b["start"])
    for group in ("g1", "g2"):
        order = [body for b in runs for body in b["bodies"] if body.startswith(group)]
        assert order == [f"{group}-{i}" for i in range(6)]
    lambda_client.delete_event_source_mapping(UUID=mapping["UUID"])
    sqs.delete_queue(QueueUrl=url)


POWERTOOLS_APP = '''
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

processor = BatchProcessor(event_type=EventType.SQS)


def record_handler(record: SQSRecord):
    if "fail" in record.body:
        raise ValueError("cannot process " + record.body)
    print("PROCESSED " + record.body + " " + record.message_id)


def lambda_handler(event, context):
    return process_partial_response(event=event, record_handler=record_handler, processor=processor,
                                    context=context)
'''


def test_powertools_batch_processor_works_unchanged(lambda_client, sqs, functions, endpoint):
    files = {"app.py": POWERTOOLS_APP, **installed_files("aws-lambda-powertools", "jmespath", "typing_extensions")}
    name = functions(files, prefix="pt", handler="app.lambda_handler", Timeout=5)
    dlq, _ = queue(sqs, "pt-dlq")
    url, arn = queue(sqs, "pt", dlq_url=dlq, max_receives=1, VisibilityTimeout="5")
    mapping = lambda_client.create_event_source_mapping(EventSourceArn=arn, FunctionName=name, Enabled=False,
                                                        FunctionResponseTypes=["ReportBatchItemFailures"])
    settled(lambda_client, mapping["UUID"])
    sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": b, "MessageBody": b} for b in ("one", "fail-me", "two")])
    lambda_client.update_event_source_mapping(UUID=mapping["UUID"], Enabled=True)
    [dead] = wait_for(lambda: sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=10).get("Messages"), what="the DLQ")
    assert dead["Body"] == "fail-me"
    with urllib.request.urlopen(f"{endpoint}/lamina/v1/functions/{name}/logs", timeout=10) as resp:
        text = resp.read().decode()
    assert text.count("PROCESSED one") == 1 and text.count("PROCESSED two") == 1, text[-3000:]
    assert depth(sqs, url) == (0, 0)
    lambda_client.delete_event_source_mapping(UUID=mapping["UUID"])
    for u in (url, dlq):
        sqs.delete_queue(QueueUrl=u)


FAILING_APP = '''
def handler(event, context):
    raise ValueError("always fails: " + str(event.get("n")))
'''


def test_async_failures_reach_queue_destinations_and_dlqs(lambda_client, sqs, functions):
    dest, dest_arn = queue(sqs, "dest")
    dlq, dlq_arn = queue(sqs, "fn-dlq")
    name = functions({"app.py": FAILING_APP}, prefix="async", DeadLetterConfig={"TargetArn": dlq_arn})
    lambda_client.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=0,
                                                   DestinationConfig={"OnFailure": {"Destination": dest_arn}})
    resp = lambda_client.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps({"n": 7}))
    assert resp["StatusCode"] == 202
    request_id = resp["ResponseMetadata"]["RequestId"]
    [m] = wait_for(lambda: sqs.receive_message(QueueUrl=dest, WaitTimeSeconds=5).get("Messages"), what="the record")
    record = json.loads(m["Body"])
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestPayload"] == {"n": 7} and record["responseContext"]["functionError"] == "Unhandled"
    [d] = wait_for(lambda: sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=5,
                                               MessageAttributeNames=["All"]).get("Messages"), what="the DLQ")
    assert json.loads(d["Body"]) == {"n": 7}
    attrs = d["MessageAttributes"]
    assert attrs["RequestID"] == {"DataType": "String", "StringValue": request_id}
    assert attrs["ErrorCode"]["DataType"] == "Number" and attrs["ErrorCode"]["StringValue"] == "200"
    assert "always fails: 7" in attrs["ErrorMessage"]["StringValue"]

    got = failure(lambda_client.put_function_event_invoke_config, FunctionName=name, DestinationConfig={
        "OnFailure": {"Destination": dest_arn + "-missing"}})
    assert got[:2] == (400, "InvalidParameterValueException") and "is invalid" in got[2]
    got = failure(lambda_client.update_function_configuration, FunctionName=name,
                  DeadLetterConfig={"TargetArn": dlq_arn + "-missing"})
    assert got[:2] == (400, "InvalidParameterValueException")
    for u in (dest, dlq):
        sqs.delete_queue(QueueUrl=u)
