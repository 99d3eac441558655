"""boto3's SQS client against `lamina serve`, over both protocols: JSON (what current botocore sends) and query
(botocore 1.34.89's model, vendored in data/sqs-query, as older SDKs send it). Every operation, AWS's errors, FIFO
order and deduplication, redrive, long polling."""

from __future__ import annotations

import hashlib
import json
import struct
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import boto3
import botocore.session
import pytest
from botocore.config import Config

from helpers import ACCESS_KEY, REGION, SECRET_KEY, failure, raw_request, unique_name

QUERY_MODEL = Path(__file__).parent / "data" / "sqs-query"


def sqs_client(endpoint: str, protocol: str):
    session = botocore.session.get_session()
    if protocol == "query":
        session.get_component("data_loader").search_paths.insert(0, str(QUERY_MODEL))
    client = boto3.Session(botocore_session=session).client(
        "sqs", endpoint_url=endpoint, region_name=REGION, aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY, config=Config(retries={"total_max_attempts": 1}, read_timeout=65))
    assert client.meta.service_model.protocol == protocol
    return client


@pytest.fixture(scope="module", params=["json", "query"])
def sqs(request, endpoint):
    return sqs_client(endpoint, request.param)


def _arn(sqs, url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def _attributes_md5(attributes: dict) -> str:
    """MD5OfMessageAttributes as AWS computes it (the SDKs' own check)."""
    out = b""
    for name in sorted(attributes):
        attr = attributes[name]
        def field(data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + data
        out += field(name.encode()) + field(attr["DataType"].encode())
        if "BinaryValue" in attr:
            out += b"\x02" + field(attr["BinaryValue"])
        else:
            out += b"\x01" + field(attr["StringValue"].encode())
    return hashlib.md5(out).hexdigest()


def test_queue_lifecycle_attributes_tags_listing(sqs):
    prefix = unique_name("life")
    url = sqs.create_queue(QueueName=prefix + "-a", Attributes={"VisibilityTimeout": "45", "DelaySeconds": "0"},
                           tags={"team": "core"})["QueueUrl"]
    assert url.endswith(f"/000000000000/{prefix}-a")
    # Same attributes again: the same queue; a different value: QueueNameExists.
    assert sqs.create_queue(QueueName=prefix + "-a", Attributes={"VisibilityTimeout": "45"})["QueueUrl"] == url
    status, code, message = failure(sqs.create_queue, QueueName=prefix + "-a", Attributes={"VisibilityTimeout": "5"})
    assert (status, code) == (400, "QueueAlreadyExists") and "VisibilityTimeout" in message
    url_b = sqs.create_queue(QueueName=prefix + "-b")["QueueUrl"]
    assert sqs.get_queue_url(QueueName=prefix + "-a")["QueueUrl"] == url

    assert sqs.list_queues(QueueNamePrefix=prefix)["QueueUrls"] == [url, url_b]
    page = sqs.list_queues(QueueNamePrefix=prefix, MaxResults=1)
    assert page["QueueUrls"] == [url] and page["NextToken"]
    page2 = sqs.list_queues(QueueNamePrefix=prefix, MaxResults=1, NextToken=page["NextToken"])
    assert page2["QueueUrls"] == [url_b] and "NextToken" not in page2

    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["VisibilityTimeout"] == "45" and attrs["MaximumMessageSize"] == "1048576"
    assert attrs["QueueArn"] == f"arn:aws:sqs:{REGION}:000000000000:{prefix}-a"
    assert attrs["ApproximateNumberOfMessages"] == "0" and "RedrivePolicy" not in attrs
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"MessageRetentionPeriod": "600", "DelaySeconds": "2"})
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["MessageRetentionPeriod", "DelaySeconds"])
    assert attrs["Attributes"] == {"MessageRetentionPeriod": "600", "DelaySeconds": "2"}
    status, code, message = failure(sqs.set_queue_attributes, QueueUrl=url, Attributes={"VisibilityTimeout": "50000"})
    assert (status, code) == (400, "InvalidAttributeValue"), message
    status, code, message = failure(sqs.set_queue_attributes, QueueUrl=url, Attributes={"FifoQueue": "true"})
    assert (status, code) == (400, "InvalidAttributeName"), message

    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"team": "core"}
    sqs.tag_queue(QueueUrl=url, Tags={"env": "dev"})
    sqs.untag_queue(QueueUrl=url, TagKeys=["team"])
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"env": "dev"}

    sqs.add_permission(QueueUrl=url, Label="p1", AWSAccountIds=["111122223333"], Actions=["SendMessage"])
    policy = json.loads(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])["Attributes"]["Policy"])
    assert [s["Sid"] for s in policy["Statement"]] == ["p1"]
    sqs.remove_permission(QueueUrl=url, Label="p1")

    sqs.delete_queue(QueueUrl=url)
    sqs.delete_queue(QueueUrl=url_b)
    status, code, message = failure(sqs.get_queue_url, QueueName=prefix + "-a")
    assert (status, code) == (400, "AWS.SimpleQueueService.NonExistentQueue")
    assert message.startswith("The specified queue does not exist")
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.send_message(QueueUrl=url, MessageBody="x")


def test_send_receive_delete_and_visibility(sqs):
    url = sqs.create_queue(QueueName=unique_name("msg"), Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
    attributes = {"color": {"DataType": "String", "StringValue": "blue"},
                  "size": {"DataType": "Number", "StringValue": "42"},
                  "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01\xff"}}
    body = 'héllo\r\n<xml & "quotes">'
    sent = sqs.send_message(QueueUrl=url, MessageBody=body, MessageAttributes=attributes,
                            MessageSystemAttributes={"AWSTraceHeader": {"DataType": "String",
                                                                        "StringValue": "Root=1-abc"}})
    assert sent["MD5OfMessageBody"] == hashlib.md5(body.encode()).hexdigest()
    assert sent["MD5OfMessageAttributes"] == _attributes_md5(attributes)

    [m] = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["All"], AttributeNames=["All"])["Messages"]
    assert m["MessageId"] == sent["MessageId"] and m["Body"] == body
    assert m["MessageAttributes"] == attributes
    assert m["MD5OfMessageAttributes"] == sent["MD5OfMessageAttributes"]
    assert m["Attributes"]["ApproximateReceiveCount"] == "1" and m["Attributes"]["AWSTraceHeader"] == "Root=1-abc"
    assert int(m["Attributes"]["SentTimestamp"]) <= int(m["Attributes"]["ApproximateFirstReceiveTimestamp"])
    assert "Messages" not in sqs.receive_message(QueueUrl=url)             # in flight
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessagesNotVisible"] == "1"
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
    [m2] = sqs.receive_message(QueueUrl=url, AttributeNames=["ApproximateReceiveCount"],
                               MessageAttributeNames=["col.*"])["Messages"]
    assert m2["Attributes"] == {"ApproximateReceiveCount": "2"}
    assert list(m2["MessageAttributes"]) == ["color"]
    sqs.delete_message(QueueUrl=url, ReceiptHandle=m2["ReceiptHandle"])

    batch = sqs.send_message_batch(QueueUrl=url, Entries=[
        {"Id": "a", "MessageBody": "one"}, {"Id": "b", "MessageBody": "two"},
        {"Id": "c", "MessageBody": "x", "MessageAttributes": {"bad": {"DataType": "Weird", "StringValue": "v"}}}])
    assert sorted(e["Id"] for e in batch["Successful"]) == ["a", "b"]
    [bad] = batch["Failed"]
    assert bad["Id"] == "c" and bad["SenderFault"] is True and bad["Code"] == "InvalidParameterValue"
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert sorted(x["Body"] for x in got) == ["one", "two"]
    changed = sqs.change_message_visibility_batch(QueueUrl=url, Entries=[
        {"Id": "x", "ReceiptHandle": got[0]["ReceiptHandle"], "VisibilityTimeout": 60},
        {"Id": "y", "ReceiptHandle": "bm90LWEtaGFuZGxl", "VisibilityTimeout": 60}])
    assert [e["Id"] for e in changed["Successful"]] == ["x"] and changed["Failed"][0]["Id"] == "y"
    deleted = sqs.delete_message_batch(QueueUrl=url, Entries=[
        {"Id": str(i), "ReceiptHandle": x["ReceiptHandle"]} for i, x in enumerate(got)])
    assert len(deleted["Successful"]) == 2 and not deleted.get("Failed")
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == attrs["ApproximateNumberOfMessagesNotVisible"] == "0"
    sqs.delete_queue(QueueUrl=url)


def test_errors_have_aws_codes(sqs):
    url = sqs.create_queue(QueueName=unique_name("err"))["QueueUrl"]
    cases = [
        (lambda: sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=11), 400, "InvalidParameterValue",
         "Value 11 for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and 10, if provided."),
        (lambda: sqs.receive_message(QueueUrl=url, WaitTimeSeconds=21), 400, "InvalidParameterValue", "21"),
        (lambda: sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": "x"} for i in range(11)]),
         400, "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
         "Maximum number of entries per request are 10. You have sent 11."),
        (lambda: sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "a", "MessageBody": "x"},
                                                               {"Id": "a", "MessageBody": "y"}]),
         400, "AWS.SimpleQueueService.BatchEntryIdsNotDistinct", "a"),
        (lambda: sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": "no spaces", "MessageBody": "x"}]),
         400, "AWS.SimpleQueueService.InvalidBatchEntryId", "alphanumeric"),
        (lambda: sqs.delete_message(QueueUrl=url, ReceiptHandle="garbage"), 400, "ReceiptHandleIsInvalid", "garbage"),
        (lambda: sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Nope"]), 400, "InvalidAttributeName",
         "Unknown Attribute Nope."),
        (lambda: sqs.send_message(QueueUrl=url, MessageBody="x" * (1024 * 1024 + 1)), 400, "InvalidParameterValue",
         "Message must be shorter than 1048576 bytes."),
        (lambda: sqs.send_message(QueueUrl=url, MessageBody="bad \x01 char"), 400, "InvalidMessageContents",
         "Invalid characters"),
        (lambda: sqs.create_queue(QueueName="has.dot"), 400, "InvalidParameterValue", "alphanumeric"),
    ]
    for call, status, code, text in cases:
        got = failure(call)
        assert got[:2] == (status, code) and text in got[2], got
    sqs.delete_queue(QueueUrl=url)


def test_fifo_group_order_and_deduplication(sqs):
    url = sqs.create_queue(QueueName=unique_name("fifo") + ".fifo",
                           Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"})["QueueUrl"]
    ids = []
    for group, body in [("g1", "a1"), ("g2", "b1"), ("g1", "a2"), ("g2", "b2"), ("g1", "a3")]:
        ids.append(sqs.send_message(QueueUrl=url, MessageBody=body, MessageGroupId=group)["MessageId"])
    again = sqs.send_message(QueueUrl=url, MessageBody="a1", MessageGroupId="g1")   # same content: a duplicate
    assert again["MessageId"] == ids[0]
    explicit = sqs.send_message(QueueUrl=url, MessageBody="other", MessageGroupId="g3", MessageDeduplicationId="d")
    dup = sqs.send_message(QueueUrl=url, MessageBody="other2", MessageGroupId="g3", MessageDeduplicationId="d")
    assert dup["MessageId"] == explicit["MessageId"] and dup["SequenceNumber"] == explicit["SequenceNumber"]

    seen: dict[str, list[str]] = {}
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"]).get("Messages", [])
        if not got:
            break
        for m in got:
            seen.setdefault(m["Attributes"]["MessageGroupId"], []).append(m["Body"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    assert seen == {"g1": ["a1", "a2", "a3"], "g2": ["b1", "b2"], "g3": ["other"]}

    status, code, message = failure(sqs.send_message, QueueUrl=url, MessageBody="x")
    assert (status, code, message) == (400, "MissingParameter", "The request must contain the parameter "
                                                                "MessageGroupId.")
    status, code, message = failure(sqs.send_message, QueueUrl=url, MessageBody="x", MessageGroupId="g",
                                    DelaySeconds=2)
    assert (status, code) == (400, "InvalidParameterValue") and "DelaySeconds" in message
    sqs.delete_queue(QueueUrl=url)


def test_fifo_receive_request_attempt_id(sqs):
    url = sqs.create_queue(QueueName=unique_name("attempt") + ".fifo",
                           Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true",
                                       "VisibilityTimeout": "30"})["QueueUrl"]
    for group, body in [("g1", "a1"), ("g1", "a2"), ("g2", "b1")]:
        sqs.send_message(QueueUrl=url, MessageBody=body, MessageGroupId=group)
    attempt = "retry-1!#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"   # every punctuation character AWS allows

    def receive(attempt_id: str) -> list[dict]:
        return sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=2, ReceiveRequestAttemptId=attempt_id,
                                   AttributeNames=["ApproximateReceiveCount"]).get("Messages", [])

    first = receive(attempt)
    assert [m["Body"] for m in first] == ["a1", "a2"]
    # Retried with the same id (its response lost, say): the same messages with the same receipt handles.
    again = receive(attempt)
    assert [(m["Body"], m["ReceiptHandle"]) for m in again] == [(m["Body"], m["ReceiptHandle"]) for m in first]
    assert [m["Attributes"]["ApproximateReceiveCount"] for m in again] == ["1", "1"]
    # Another id is a new receive: group g1 is in flight, g2 is not.
    assert [m["Body"] for m in receive("other")] == ["b1"]
    # Once one of them is deleted, the retry is a new receive as well (g1's next message is in flight: nothing).
    sqs.delete_message(QueueUrl=url, ReceiptHandle=first[0]["ReceiptHandle"])
    assert receive(attempt) == []
    # Deleting with the handles the retry gave works.
    sqs.delete_message(QueueUrl=url, ReceiptHandle=again[1]["ReceiptHandle"])
    assert sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"])[
        "Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "1"   # b1

    for bad in ("", "x" * 129, "has space", "é"):
        status, code, message = failure(sqs.receive_message, QueueUrl=url, ReceiveRequestAttemptId=bad)
        assert (status, code) == (400, "InvalidParameterValue") and "ReceiveRequestAttemptId" in message, bad
    # A standard queue ignores it, as AWS does.
    standard = sqs.create_queue(QueueName=unique_name("attempt-std"))["QueueUrl"]
    sqs.send_message(QueueUrl=standard, MessageBody="s")
    assert [m["Body"] for m in sqs.receive_message(QueueUrl=standard, ReceiveRequestAttemptId="has space")[
        "Messages"]] == ["s"]
    sqs.delete_queue(QueueUrl=standard)
    sqs.delete_queue(QueueUrl=url)


def test_recorded_error_texts(sqs):
    """AWS's wording and codes as recorded (LocalStack's aws.validated snapshots of tests/aws/services/sqs)."""
    url = sqs.create_queue(QueueName=unique_name("texts"))["QueueUrl"]
    fifo = sqs.create_queue(QueueName=unique_name("texts") + ".fifo",
                            Attributes={"FifoQueue": "true", "VisibilityTimeout": "1"})["QueueUrl"]
    sqs.add_permission(QueueUrl=url, Label="p1", AWSAccountIds=["111122223333"], Actions=["SendMessage"])
    cases = [
        (lambda: sqs.remove_permission(QueueUrl=url, Label="p2"), "InvalidParameterValue",
         "Value p2 for parameter Label is invalid. Reason: can't find label."),
        (lambda: sqs.send_message(QueueUrl=url, MessageBody="x",
                                  MessageAttributes={"ErrorDetails": {"StringValue": "", "DataType": "String"}}),
         "InvalidParameterValue", "Message (user) attribute 'ErrorDetails' must contain a non-empty value of type "
         "'String'."),
        (lambda: sqs.create_queue(QueueName=unique_name("t"), Attributes={"FifoQueue": "false"}),
         "InvalidAttributeName", "Unknown Attribute FifoQueue."),
        (lambda: sqs.create_queue(QueueName=unique_name("t"), Attributes={"ContentBasedDeduplication": "false"}),
         "InvalidAttributeName", "Unknown Attribute ContentBasedDeduplication."),
        (lambda: sqs.create_queue(QueueName=unique_name("t"), Attributes={"DeduplicationScope": "queue"}),
         "InvalidAttributeName", "You can specify the DeduplicationScope only when FifoQueue is set to true."),
        (lambda: sqs.create_queue(QueueName=unique_name("t"), Attributes={"FifoThroughputLimit": "perQueue"}),
         "InvalidAttributeName", "You can specify the FifoThroughputLimit only when FifoQueue is set to true."),
        (lambda: sqs.set_queue_attributes(QueueUrl=fifo, Attributes={"FifoQueue": "false"}),
         "InvalidAttributeValue", "Invalid value for the parameter FifoQueue. Reason: Modifying queue type is not "
         "supported."),
        (lambda: sqs.send_message_batch(QueueUrl=fifo, Entries=[
            {"Id": "a", "MessageBody": "x", "MessageGroupId": "g", "MessageDeduplicationId": "d1"},
            {"Id": "b", "MessageBody": "x", "MessageDeduplicationId": "d2"}]),
         "InvalidParameterValue", "The request must contain the parameter MessageGroupId."),
        (lambda: sqs.send_message_batch(QueueUrl=fifo,
                                        Entries=[{"Id": "a", "MessageBody": "x", "MessageGroupId": "g"}]),
         "InvalidParameterValue", "The queue should either have ContentBasedDeduplication enabled or "
         "MessageDeduplicationId provided explicitly"),
    ]
    for call, code, text in cases:
        assert failure(call) == (400, code, text)
    # The receipt handle texts (LocalStack's aws.validated assertions): one that is not a handle, and a visibility
    # change with the handle of a message deleted since.
    assert failure(sqs.delete_message, QueueUrl=url, ReceiptHandle="garbage") == (
        400, "ReceiptHandleIsInvalid", 'The input receipt handle "garbage" is not a valid receipt handle.')
    sqs.send_message(QueueUrl=url, MessageBody="gone")
    [m] = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5)["Messages"]
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=42)
    sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])   # again: no error
    assert failure(sqs.change_message_visibility, QueueUrl=url, ReceiptHandle=m["ReceiptHandle"],
                   VisibilityTimeout=42) == (
        400, "InvalidParameterValue", f"Value {m['ReceiptHandle']} for parameter ReceiptHandle is invalid. Reason: "
        "Message does not exist or is not available for visibility timeout change.")
    sqs.set_queue_attributes(QueueUrl=fifo, Attributes={"FifoQueue": "true"})   # the same type: accepted
    # A FIFO message's handle after its visibility timeout ran out: refused (a standard queue's still deletes).
    sqs.send_message(QueueUrl=fifo, MessageBody="late", MessageGroupId="g", MessageDeduplicationId="late")
    [m] = sqs.receive_message(QueueUrl=fifo, WaitTimeSeconds=5)["Messages"]
    time.sleep(1.2)
    assert failure(sqs.delete_message, QueueUrl=fifo, ReceiptHandle=m["ReceiptHandle"]) == (
        400, "InvalidParameterValue",
        f"Value {m['ReceiptHandle']} for parameter ReceiptHandle is invalid. Reason: The receipt handle has expired.")
    sqs.delete_queue(QueueUrl=fifo)
    sqs.delete_queue(QueueUrl=url)


def test_redrive_dead_letter_sources_and_move_back(sqs):
    dlq = sqs.create_queue(QueueName=unique_name("dlq"))["QueueUrl"]
    src = sqs.create_queue(QueueName=unique_name("src"), Attributes={"RedrivePolicy": json.dumps(
        {"deadLetterTargetArn": _arn(sqs, dlq), "maxReceiveCount": 2})})["QueueUrl"]
    sqs.send_message(QueueUrl=src, MessageBody="poison")
    for _ in range(2):
        assert len(sqs.receive_message(QueueUrl=src, VisibilityTimeout=0)["Messages"]) == 1
    assert "Messages" not in sqs.receive_message(QueueUrl=src)      # past maxReceiveCount: moved
    [m] = sqs.receive_message(QueueUrl=dlq, AttributeNames=["All"], VisibilityTimeout=0)["Messages"]
    assert m["Body"] == "poison" and m["Attributes"]["DeadLetterQueueSourceArn"] == _arn(sqs, src)
    assert sqs.list_dead_letter_source_queues(QueueUrl=dlq)["queueUrls"] == [src]

    task = sqs.start_message_move_task(SourceArn=_arn(sqs, dlq))
    assert task["TaskHandle"]
    [result] = sqs.list_message_move_tasks(SourceArn=_arn(sqs, dlq))["Results"]
    assert result["Status"] == "COMPLETED" and result["ApproximateNumberOfMessagesMoved"] == 1
    [back] = sqs.receive_message(QueueUrl=src)["Messages"]
    assert back["Body"] == "poison"

    status, code, message = failure(sqs.create_queue, QueueName=unique_name("x"), Attributes={
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": f"arn:aws:sqs:{REGION}:000000000000:nope",
                                     "maxReceiveCount": 1})})
    assert (status, code) == (400, "InvalidParameterValue") and "does not exist" in message
    for url in (src, dlq):
        sqs.delete_queue(QueueUrl=url)


def test_purge_queue_once_a_minute(sqs):
    url = sqs.create_queue(QueueName=unique_name("purge"))["QueueUrl"]
    sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": "x"} for i in range(5)])
    sqs.purge_queue(QueueUrl=url)
    assert "Messages" not in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
    status, code, message = failure(sqs.purge_queue, QueueUrl=url)
    assert (status, code) == (403, "AWS.SimpleQueueService.PurgeQueueInProgress") and "60 seconds" in message
    sqs.delete_queue(QueueUrl=url)


def test_long_poll_returns_a_message_sent_while_it_waits(sqs, endpoint):
    url = sqs.create_queue(QueueName=unique_name("lp"))["QueueUrl"]
    waiter = sqs_client(endpoint, sqs.meta.service_model.protocol)   # its own connection
    result: dict = {}
    started = time.time()
    thread = threading.Thread(target=lambda: result.update(
        waiter.receive_message(QueueUrl=url, WaitTimeSeconds=20, AttributeNames=["SentTimestamp"])))
    thread.start()
    time.sleep(0.5)   # let the long poll reach the server (the assertions below hold either way)
    sqs.send_message(QueueUrl=url, MessageBody="wake up")
    thread.join(30)
    [m] = result["Messages"]
    # Sent after the receive began, and returned by that receive: it was woken by the send.
    assert m["Body"] == "wake up" and int(m["Attributes"]["SentTimestamp"]) / 1000 >= started
    sqs.delete_queue(QueueUrl=url)


def test_query_form_posted_to_the_queue_url(sqs, endpoint):
    """Older SDKs post the form to the queue's own URL, without a QueueUrl parameter."""
    if sqs.meta.service_model.protocol != "query":
        pytest.skip("a query-protocol request")
    url = sqs.create_queue(QueueName=unique_name("form"))["QueueUrl"]
    path = "/" + url.split("/", 3)[3]
    form = urlencode({"Action": "SendMessage", "Version": "2012-11-05", "MessageBody": "by form",
                      "MessageAttribute.1.Name": "k", "MessageAttribute.1.Value.DataType": "String",
                      "MessageAttribute.1.Value.StringValue": "v"}).encode()
    resp = raw_request(endpoint, "POST", path, form, {"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status == 200 and b"<SendMessageResult><MD5OfMessageBody>" in resp.body, resp.describe()
    [m] = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["All"])["Messages"]
    assert m["Body"] == "by form" and m["MessageAttributes"]["k"]["StringValue"] == "v"
    resp = raw_request(endpoint, "POST", "/", urlencode({"Action": "NoSuchAction"}).encode(),
                       {"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status == 400 and b"<Code>InvalidAction</Code>" in resp.body, resp.describe()
    sqs.delete_queue(QueueUrl=url)


def test_json_errors_carry_the_query_error_header(endpoint):
    resp = raw_request(endpoint, "POST", "/", json.dumps({"QueueName": "no-such-queue"}).encode(),
                       {"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": "AmazonSQS.GetQueueUrl"})
    assert resp.status == 400, resp.describe()
    assert resp.headers["x-amzn-query-error"] == "AWS.SimpleQueueService.NonExistentQueue;Sender"
    assert resp.json() == {"__type": "com.amazonaws.sqs#QueueDoesNotExist",
                           "message": "The specified queue does not exist."}


def test_queue_urls_resolve_from_the_path_whatever_the_host(endpoint):
    sqs = sqs_client(endpoint, "json")
    url = sqs.create_queue(QueueName=unique_name("host"))["QueueUrl"]
    foreign = "https://sqs.eu-west-1.amazonaws.com/" + url.split("/", 3)[3]
    sqs.send_message(QueueUrl=foreign, MessageBody="anywhere")
    assert sqs.receive_message(QueueUrl=url)["Messages"][0]["Body"] == "anywhere"
    sqs.delete_queue(QueueUrl=url)
    assert failure(sqs.get_queue_url, QueueName=url.rsplit("/", 1)[1])[:2] == (
        400, "AWS.SimpleQueueService.NonExistentQueue")
