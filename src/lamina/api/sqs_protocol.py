"""The SQS API's two wire protocols (spec/events.md §2.1): how a request's parameters are read and a result or an
error is written back.

- JSON (botocore >= 1.34.90): `POST /` with `X-Amz-Target: AmazonSQS.<Op>` and a JSON body; results are JSON;
  errors are `{"__type": "com.amazonaws.sqs#<Shape>", "message"}` plus `x-amzn-query-error: <Code>;Sender`.
- query (older SDKs, other languages): a form post `Action=<Op>&Version=2012-11-05&...` with flattened
  parameters (`Attribute.1.Name`, `SendMessageBatchRequestEntry.2.MessageBody`, ...); results are
  `<OpResponse><OpResult>...</OpResult><ResponseMetadata>` XML, errors `<ErrorResponse>`.

Operations see one shape either way: the JSON protocol's (query parameters are turned into it here, and results
written in the JSON shape are turned into the query model's XML).
"""

from __future__ import annotations

import uuid
from xml.sax.saxutils import escape

import orjson

from lamina.queues.errors import SqsError

JSON_TYPE = b"application/x-amz-json-1.0"
XML_NAMESPACE = "http://queue.amazonaws.com/doc/2012-11-05/"

# Query names of flattened maps -> (JSON name, key element, value element).
_QUERY_MAPS = {
    "Attribute": ("Attributes", "Name", "Value"),
    "MessageAttribute": ("MessageAttributes", "Name", "Value"),
    "MessageSystemAttribute": ("MessageSystemAttributes", "Name", "Value"),
    "Tag": ("Tags", "Key", "Value"),
}
# Query names of flattened lists -> JSON name.
_QUERY_LISTS = {
    "AttributeName": "AttributeNames",
    "MessageAttributeName": "MessageAttributeNames",
    "MessageSystemAttributeName": "MessageSystemAttributeNames",
    "TagKey": "TagKeys",
    "SendMessageBatchRequestEntry": "Entries",
    "DeleteMessageBatchRequestEntry": "Entries",
    "ChangeMessageVisibilityBatchRequestEntry": "Entries",
    "StringListValue": "StringListValues",
    "BinaryListValue": "BinaryListValues",
    "AWSAccountId": "AWSAccountIds",
    "ActionName": "Actions",
}

# Result lists -> the query model's element name for each item (flattened).
_XML_ITEMS = {"QueueUrls": "QueueUrl", "queueUrls": "QueueUrl", "Messages": "Message",
              "Failed": "BatchResultErrorEntry", "StringListValues": "StringListValue",
              "BinaryListValues": "BinaryListValue", "Results": "ListMessageMoveTasksResultEntry"}
_XML_SUCCESS = {"SendMessageBatch": "SendMessageBatchResultEntry",
                "DeleteMessageBatch": "DeleteMessageBatchResultEntry",
                "ChangeMessageVisibilityBatch": "ChangeMessageVisibilityBatchResultEntry"}
# Operations whose response has no <OpResult> element (no output shape in the query model).
_NO_RESULT = frozenset({"DeleteQueue", "PurgeQueue", "SetQueueAttributes", "TagQueue", "UntagQueue", "AddPermission",
                        "RemovePermission", "DeleteMessage", "ChangeMessageVisibility"})
# Result maps -> (element, key element, value element), flattened.
_XML_MAPS = {"Attributes": ("Attribute", "Name", "Value"), "MessageAttributes": ("MessageAttribute", "Name", "Value"),
             "Tags": ("Tag", "Key", "Value")}


def query_params(pairs: list[tuple[str, str]]) -> dict:
    """A query request's form fields as the JSON protocol's parameters."""
    tree: dict = {}
    for key, value in pairs:
        node = tree
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node.setdefault(parts[-1], value)
    return _convert(tree)


def _indexed(node: object) -> list:
    """The items of a flattened list ({"1": a, "2": b}) in index order."""
    if not isinstance(node, dict):
        return [node]
    items = []
    for key, value in node.items():
        try:
            items.append((int(key), value))
        except ValueError:
            continue
    return [v for _, v in sorted(items, key=lambda kv: kv[0])]


def _convert(node: dict) -> dict:
    out: dict = {}
    for key, value in node.items():
        if key in _QUERY_MAPS:
            name, key_name, value_name = _QUERY_MAPS[key]
            mapping: dict = {}
            for item in _indexed(value):
                if isinstance(item, dict) and key_name in item:
                    v = item.get(value_name)
                    mapping[item[key_name]] = _convert(v) if isinstance(v, dict) else v
            out[name] = mapping
        elif key in _QUERY_LISTS:
            out[_QUERY_LISTS[key]] = [_convert(v) if isinstance(v, dict) else v for v in _indexed(value)]
        elif isinstance(value, dict):
            out[key] = _convert(value)
        else:
            out[key] = value
    return out


def json_result(result: dict) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    return 200, [(b"content-type", JSON_TYPE), (b"x-amzn-requestid", str(uuid.uuid4()).encode())], orjson.dumps(result)


def json_error(err: SqsError) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    body = orjson.dumps({"__type": f"com.amazonaws.sqs#{err.shape}", "message": err.message})
    fault = "Sender" if err.sender else "Receiver"
    return err.status, [(b"content-type", JSON_TYPE), (b"x-amzn-requestid", str(uuid.uuid4()).encode()),
                        (b"x-amzn-query-error", f"{err.code};{fault}".encode())], body


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    # \r would be normalised away by an XML parser: keep it as a character reference.
    return escape(str(value)).replace("\r", "&#xD;")


def _xml(name: str, value: object, out: list[str], operation: str) -> None:
    if value is None:
        return
    if isinstance(value, dict):
        if name in _XML_MAPS:
            element, key_name, value_name = _XML_MAPS[name]
            for k, v in value.items():
                out.append(f"<{element}><{key_name}>{_text(k)}</{key_name}>")
                _xml(value_name, v, out, operation)
                out.append(f"</{element}>")
            return
        out.append(f"<{name}>")
        for k, v in value.items():
            _xml(k, v, out, operation)
        out.append(f"</{name}>")
    elif isinstance(value, list):
        item = _XML_SUCCESS.get(operation, name) if name == "Successful" else _XML_ITEMS.get(name, name)
        for v in value:
            _xml(item, v, out, operation)
    else:
        out.append(f"<{name}>{_text(value)}</{name}>")


def xml_result(operation: str, result: dict) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    request_id = str(uuid.uuid4())
    out = [f'<?xml version="1.0"?><{operation}Response xmlns="{XML_NAMESPACE}">']
    if operation not in _NO_RESULT:
        out.append(f"<{operation}Result>")
        for k, v in result.items():
            _xml(k, v, out, operation)
        out.append(f"</{operation}Result>")
    out.append(f"<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></{operation}Response>")
    return 200, [(b"content-type", b"text/xml"), (b"x-amzn-requestid", request_id.encode())], "".join(out).encode()


def xml_error(err: SqsError) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    request_id = str(uuid.uuid4())
    message = err.message
    if err.shape == "QueueDoesNotExist":
        message = message.rstrip(".") + " for this wsdl version."
    body = (f'<?xml version="1.0"?><ErrorResponse xmlns="{XML_NAMESPACE}"><Error>'
            f"<Type>{'Sender' if err.sender else 'Receiver'}</Type><Code>{_text(err.code)}</Code>"
            f"<Message>{_text(message)}</Message><Detail/></Error><RequestId>{request_id}</RequestId>"
            "</ErrorResponse>")
    return err.status, [(b"content-type", b"text/xml"), (b"x-amzn-requestid", request_id.encode())], body.encode()
