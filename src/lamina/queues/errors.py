"""SQS errors: each has the JSON protocol's shape name, the query protocol's code and an HTTP status
(spec/events.md §2.2; codes from botocore's query model of SQS)."""

from __future__ import annotations


class SqsError(Exception):
    def __init__(self, shape: str, code: str, message: str, status: int = 400, sender: bool = True) -> None:
        super().__init__(message)
        self.shape = shape         # JSON: __type com.amazonaws.sqs#<shape>
        self.code = code           # query: <Code>, and the x-amzn-query-error header
        self.message = message
        self.status = status
        self.sender = sender


def _aws(shape: str, message: str, status: int = 400) -> SqsError:
    return SqsError(shape, f"AWS.SimpleQueueService.{shape}", message, status)


def queue_missing() -> SqsError:
    return SqsError("QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue",
                    "The specified queue does not exist.")


def queue_exists(attribute: str) -> SqsError:
    return SqsError("QueueNameExists", "QueueAlreadyExists",
                    f"A queue already exists with the same name and a different value for attribute {attribute}")


def deleted_recently() -> SqsError:
    return _aws("QueueDeletedRecently", "You must wait 60 seconds after deleting a queue before you can create "
                "another with the same name.")


def purge_in_progress(name: str) -> SqsError:
    return _aws("PurgeQueueInProgress", f"Only one PurgeQueue operation on {name} is allowed every 60 seconds.", 403)


def invalid_parameter(message: str) -> SqsError:
    return SqsError("InvalidParameterValueException", "InvalidParameterValue", message)


def invalid_value(name: str, value: object, reason: str) -> SqsError:
    return invalid_parameter(f"Value {value} for parameter {name} is invalid. Reason: {reason}")


def missing_parameter(name: str) -> SqsError:
    return SqsError("MissingRequiredParameterException", "MissingParameter",
                    f"The request must contain the parameter {name}.")


def invalid_attribute_name(name: str) -> SqsError:
    return SqsError("InvalidAttributeName", "InvalidAttributeName", f"Unknown Attribute {name}.")


def invalid_attribute_value(name: str, reason: str = "") -> SqsError:
    return SqsError("InvalidAttributeValue", "InvalidAttributeValue",
                    f"Invalid value for the parameter {name}." + (f" Reason: {reason}" if reason else ""))


def receipt_handle_invalid(handle: str) -> SqsError:
    return SqsError("ReceiptHandleIsInvalid", "ReceiptHandleIsInvalid",
                    f'The input receipt handle "{handle}" is not a valid receipt handle.')


def not_inflight() -> SqsError:
    return _aws("MessageNotInflight", "Message does not exist or is not available for visibility timeout change.")


def too_many_entries(n: int) -> SqsError:
    return _aws("TooManyEntriesInBatchRequest", f"Maximum number of entries per request are 10. You have sent {n}.")


def empty_batch(kind: str) -> SqsError:
    return _aws("EmptyBatchRequest", f"There should be at least one {kind} in the request.")


def invalid_batch_id(entry_id: str) -> SqsError:
    return _aws("InvalidBatchEntryId", "A batch entry id can only contain alphanumeric characters, hyphens and "
                "underscores. It can be at most 80 letters long.")


def ids_not_distinct(entry_id: str) -> SqsError:
    return _aws("BatchEntryIdsNotDistinct", f"Id {entry_id} repeated.")


def batch_too_long(size: int, limit: int) -> SqsError:
    return _aws("BatchRequestTooLong", f"Batch requests cannot be longer than {limit} bytes. You have sent {size} "
                "bytes.")


def invalid_contents() -> SqsError:
    return SqsError("InvalidMessageContents", "InvalidMessageContents",
                    "Invalid characters found. Valid unicode characters are #x9 | #xA | #xD | #x20 to #xD7FF | "
                    "#xE000 to #xFFFD | #x10000 to #x10FFFF")


def over_limit(message: str) -> SqsError:
    return SqsError("OverLimit", "OverLimit", message, 403)


def unsupported(message: str) -> SqsError:
    return _aws("UnsupportedOperation", message)


def invalid_action(action: str) -> SqsError:
    return SqsError("InvalidAction", "InvalidAction", f"The action {action} is not valid for this endpoint.")
