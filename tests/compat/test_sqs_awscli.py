"""`aws sqs ...` and `aws lambda ...-event-source-mapping` (the AWS CLI v1 from .venv-awscli, its own botocore)
against a real `lamina serve`: every queue command a user types, FIFO, and a mapping feeding a function."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from pathlib import Path

import pytest

from helpers import AwsCli, unique_name

pytestmark = pytest.mark.timeout(180)

HANDLER = '''
def handler(event, context):
    for r in event["Records"]:
        print("GOT " + r["body"])
'''


@pytest.fixture
def aws(endpoint: str, tmp_path: Path) -> AwsCli:
    return AwsCli(endpoint, tmp_path)


def test_aws_sqs_commands(aws):
    name = unique_name("cli")
    url = aws("sqs", "create-queue", "--queue-name", name, "--attributes", "VisibilityTimeout=40",
              "--tags", "team=core")["QueueUrl"]
    assert url.endswith("/000000000000/" + name)
    assert aws("sqs", "get-queue-url", "--queue-name", name)["QueueUrl"] == url
    assert url in aws("sqs", "list-queues", "--queue-name-prefix", name)["QueueUrls"]
    attrs = aws("sqs", "get-queue-attributes", "--queue-url", url, "--attribute-names", "All")["Attributes"]
    assert attrs["VisibilityTimeout"] == "40"
    aws("sqs", "tag-queue", "--queue-url", url, "--tags", "env=dev")
    assert aws("sqs", "list-queue-tags", "--queue-url", url)["Tags"] == {"team": "core", "env": "dev"}

    sent = aws("sqs", "send-message", "--queue-url", url, "--message-body", "hello from the cli",
               "--message-attributes", '{"k": {"DataType": "String", "StringValue": "v"}}')
    assert sent["MD5OfMessageBody"] == hashlib.md5(b"hello from the cli").hexdigest()
    batch = aws("sqs", "send-message-batch", "--queue-url", url, "--entries",
                json.dumps([{"Id": "1", "MessageBody": "b1"}, {"Id": "2", "MessageBody": "b2"}]))
    assert len(batch["Successful"]) == 2
    got = aws("sqs", "receive-message", "--queue-url", url, "--max-number-of-messages", "10",
              "--message-attribute-names", "All", "--attribute-names", "All")["Messages"]
    assert sorted(m["Body"] for m in got) == ["b1", "b2", "hello from the cli"]
    first = next(m for m in got if m["Body"] == "hello from the cli")
    assert first["MessageAttributes"]["k"]["StringValue"] == "v"
    aws("sqs", "change-message-visibility", "--queue-url", url, "--receipt-handle", first["ReceiptHandle"],
        "--visibility-timeout", "0")
    others = [m for m in got if m["Body"] != "hello from the cli"]
    aws("sqs", "delete-message", "--queue-url", url, "--receipt-handle", others[0]["ReceiptHandle"])
    aws("sqs", "delete-message-batch", "--queue-url", url, "--entries",
        json.dumps([{"Id": "x", "ReceiptHandle": others[1]["ReceiptHandle"]}]))
    aws("sqs", "purge-queue", "--queue-url", url)
    assert "PurgeQueueInProgress" in aws.fail("sqs", "purge-queue", "--queue-url", url)
    assert aws("sqs", "receive-message", "--queue-url", url) is None       # nothing: the CLI prints nothing

    fifo = aws("sqs", "create-queue", "--queue-name", name + ".fifo", "--attributes",
               "FifoQueue=true,ContentBasedDeduplication=true")["QueueUrl"]
    aws("sqs", "send-message-batch", "--queue-url", fifo, "--entries", json.dumps(
        [{"Id": b, "MessageBody": b, "MessageGroupId": "g"} for b in ("f1", "f2", "f3")]))
    got = aws("sqs", "receive-message", "--queue-url", fifo, "--max-number-of-messages", "10")["Messages"]
    assert [m["Body"] for m in got] == ["f1", "f2", "f3"]

    for q in (url, fifo):
        aws("sqs", "delete-queue", "--queue-url", q)
    assert "NonExistentQueue" in aws.fail("sqs", "get-queue-url", "--queue-name", name)


def test_aws_lambda_event_source_mapping(aws, functions, endpoint):
    fn = functions({"app.py": HANDLER}, prefix="cli-esm")
    url = aws("sqs", "create-queue", "--queue-name", unique_name("cli-esm"))["QueueUrl"]
    arn = aws("sqs", "get-queue-attributes", "--queue-url", url, "--attribute-names",
              "QueueArn")["Attributes"]["QueueArn"]
    mapping = aws("lambda", "create-event-source-mapping", "--function-name", fn, "--event-source-arn", arn,
                  "--batch-size", "5")
    assert mapping["State"] == "Creating" and mapping["BatchSize"] == 5
    aws("sqs", "send-message", "--queue-url", url, "--message-body", "via the cli")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        attrs = aws("sqs", "get-queue-attributes", "--queue-url", url, "--attribute-names", "All")["Attributes"]
        if attrs["ApproximateNumberOfMessages"] == attrs["ApproximateNumberOfMessagesNotVisible"] == "0":
            break
        time.sleep(0.2)
    assert aws("lambda", "get-event-source-mapping", "--uuid", mapping["UUID"])["State"] == "Enabled"
    listed = aws("lambda", "list-event-source-mappings", "--function-name", fn)["EventSourceMappings"]
    assert [m["UUID"] for m in listed] == [mapping["UUID"]]
    assert aws("lambda", "update-event-source-mapping", "--uuid", mapping["UUID"], "--no-enabled")["State"] \
        == "Disabling"
    assert aws("lambda", "delete-event-source-mapping", "--uuid", mapping["UUID"])["State"] == "Deleting"
    logs = subprocess.run(["curl", "-s", f"{endpoint}/lamina/v1/functions/{fn}/logs"], capture_output=True,
                          text=True, timeout=30).stdout
    assert "GOT via the cli" in logs
    aws("sqs", "delete-queue", "--queue-url", url)
