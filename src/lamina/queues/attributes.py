"""Queue attributes (spec/events.md §2.4): which exist, their ranges and defaults, the checks on Create and
SetQueueAttributes."""

from __future__ import annotations

import re
from dataclasses import dataclass

import orjson

from lamina.queues import errors

RANGES = {
    "DelaySeconds": (0, 900),
    "MaximumMessageSize": (1024, 1048576),
    "MessageRetentionPeriod": (60, 1209600),
    "ReceiveMessageWaitTimeSeconds": (0, 20),
    "VisibilityTimeout": (0, 43200),
    "KmsDataKeyReusePeriodSeconds": (60, 86400),
}
DEFAULTS = {"VisibilityTimeout": "30", "MaximumMessageSize": "1048576", "MessageRetentionPeriod": "345600",
            "DelaySeconds": "0", "ReceiveMessageWaitTimeSeconds": "0", "SqsManagedSseEnabled": "true"}
FIFO_DEFAULTS = {"FifoQueue": "true", "ContentBasedDeduplication": "false", "DeduplicationScope": "queue",
                 "FifoThroughputLimit": "perQueue"}
BOOLEANS = {"SqsManagedSseEnabled", "ContentBasedDeduplication", "FifoQueue"}
CHOICES = {"DeduplicationScope": ("messageGroup", "queue"), "FifoThroughputLimit": ("perQueue", "perMessageGroupId")}
FIFO_ONLY = {"ContentBasedDeduplication", "DeduplicationScope", "FifoThroughputLimit"}
FREE_TEXT = {"Policy", "RedrivePolicy", "RedriveAllowPolicy", "KmsMasterKeyId"}
SETTABLE = set(RANGES) | BOOLEANS | set(CHOICES) | FREE_TEXT
READ_ONLY = ("QueueArn", "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
             "ApproximateNumberOfMessagesDelayed", "CreatedTimestamp", "LastModifiedTimestamp")
ALL = SETTABLE | set(READ_ONLY)

QUEUE_NAME = re.compile(r"[A-Za-z0-9_-]{1,80}")
FIFO_NAME = re.compile(r"[A-Za-z0-9_-]{1,75}\.fifo")
MAX_RECEIVE_COUNT = (1, 1000)


@dataclass(frozen=True, slots=True)
class Redrive:
    target_arn: str
    max_receive_count: int


def check_name(name: object, fifo: bool) -> str:
    if not isinstance(name, str) or not name:
        raise errors.missing_parameter("QueueName")
    if fifo:
        if not FIFO_NAME.fullmatch(name):
            raise errors.invalid_parameter("The name of a FIFO queue can only include alphanumeric characters, "
                                           "hyphens, or underscores, must end with .fifo suffix and be 1 to 80 in "
                                           "length.")
    elif not QUEUE_NAME.fullmatch(name):
        raise errors.invalid_parameter("Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 "
                                       "in length")
    return name


def check(raw: object, fifo: bool, creating: bool) -> dict[str, str]:
    """The attributes a Create or SetQueueAttributes gives, as strings, checked (AWS's errors)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise errors.invalid_parameter("Attributes must be a map.")
    out: dict[str, str] = {}
    for name, value in raw.items():
        if name not in SETTABLE:
            raise errors.invalid_attribute_name(name)
        if name == "FifoQueue" and not fifo:
            raise errors.invalid_attribute_name(name)   # AWS: even "false" on a standard queue
        if name == "FifoQueue" and not creating and str(value).lower() != "true":
            raise errors.invalid_attribute_value(name, "Modifying queue type is not supported.")
        if name in FIFO_ONLY and not fifo:
            if name == "ContentBasedDeduplication":
                raise errors.invalid_attribute_name(name)
            raise errors.SqsError("InvalidAttributeName", "InvalidAttributeName",
                                  f"You can specify the {name} only when FifoQueue is set to true.")
        text = value if isinstance(value, str) else str(value)
        if name in RANGES:
            low, high = RANGES[name]
            try:
                number = int(text)
            except ValueError:
                raise errors.invalid_attribute_value(name) from None
            if not low <= number <= high:
                raise errors.invalid_attribute_value(name)
            text = str(number)
        elif name in BOOLEANS:
            if text.lower() not in ("true", "false"):
                raise errors.invalid_attribute_value(name)
            text = text.lower()
        elif name in CHOICES and text not in CHOICES[name]:
            raise errors.invalid_attribute_value(name)
        elif name == "RedrivePolicy" and text:
            parse_redrive(text)
        elif name in ("Policy", "RedriveAllowPolicy") and text:
            try:
                orjson.loads(text)
            except orjson.JSONDecodeError:
                raise errors.invalid_attribute_value(name) from None
        out[name] = text
    return out


def parse_redrive(text: str) -> Redrive:
    """RedrivePolicy's JSON: {"deadLetterTargetArn": ARN, "maxReceiveCount": 1-1000}."""
    def bad(reason: str) -> errors.SqsError:
        return errors.invalid_value("RedrivePolicy", text, reason)

    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise bad("Invalid value for the parameter RedrivePolicy.") from None
    if not isinstance(doc, dict):
        raise bad("Invalid value for the parameter RedrivePolicy.")
    arn = doc.get("deadLetterTargetArn")
    count = doc.get("maxReceiveCount")
    if not isinstance(arn, str) or not arn:
        raise bad("Redrive policy does not contain mandatory attribute: deadLetterTargetArn.")
    if count is None:
        raise bad("Redrive policy does not contain mandatory attribute: maxReceiveCount.")
    try:
        number = int(count)
    except (TypeError, ValueError):
        raise bad("Invalid value for maxReceiveCount: " + str(count)) from None
    low, high = MAX_RECEIVE_COUNT
    if not low <= number <= high:
        raise bad(f"Invalid value for maxReceiveCount: {count}, valid values are from {low} to {high} both "
                  "inclusive.")
    return Redrive(arn, number)
