"""The SQS API on the server's port (spec/events.md §2): every operation, over both protocols (sqs_protocol.py).

Requests are told apart from the REST APIs by `X-Amz-Target: AmazonSQS.*` (JSON) or by a form post to `/` or to
a queue's path `/ACCOUNT/NAME` (query); SqsRoute claims exactly those, ahead of the REST routes. A queue URL
is resolved from its path whatever host the client used, and the URLs handed out use the host the client
called, so they work from wherever the client is.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

import orjson
from starlette.datastructures import URLPath
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, NoMatchFound, Route
from starlette.types import Receive, Scope, Send

from lamina.api import sqs_protocol as wire
from lamina.auth import policy
from lamina.auth.keys import Caller
from lamina.functions.rest import json_response, read_body
from lamina.queues import errors
from lamina.queues.errors import SqsError
from lamina.queues.message import Message, attributes_md5
from lamina.queues.queue import Queue
from lamina.queues.service import BATCH_ID, GROUP_ID, MAX_BATCH, QueueService, integer

BODY_LIMIT = 4 * 1024 * 1024      # a 1 MiB batch, escaped as JSON or a form, fits
BATCH_LIMIT = 1024 * 1024
QUEUE_PATH = re.compile(r"/(\d{12})/([A-Za-z0-9_.-]{1,80})/?")
SYSTEM_ATTRIBUTES = ("SenderId", "SentTimestamp", "ApproximateReceiveCount", "ApproximateFirstReceiveTimestamp",
                     "SequenceNumber", "MessageDeduplicationId", "MessageGroupId", "AWSTraceHeader",
                     "DeadLetterQueueSourceArn")
MAX_RESULTS = (1, 1000)
ATTEMPT_ID = GROUP_ID   # 1-128 of alphanumerics and punctuation, as MessageGroupId

Params = dict
Operation = Callable[["SqsApi", Params, "Context"], Awaitable[dict]]


class Context:
    """Where the request came from: the URL base its queue URLs are written with, the path it was posted to, and the
    account it acts in (the verified caller's, auth/; the server's when no keys are configured)."""

    __slots__ = ("base", "path", "account", "caller")

    def __init__(self, scope: Scope, account: str) -> None:
        self.caller: Caller | None = scope.get("lamina.caller")
        self.account = self.caller.account if self.caller is not None else account
        host = ""
        for name, value in scope["headers"]:
            if name == b"host":
                host = value.decode("latin-1")
                break
        if not host:
            server = scope.get("server") or ("127.0.0.1", 80)
            host = f"{server[0]}:{server[1]}"
        self.base = f"{scope.get('scheme', 'http')}://{host}"
        self.path = scope.get("path", "/")

    def url(self, q: Queue) -> str:
        return f"{self.base}/{q.account}/{q.name}"


class SqsApi:
    """The ASGI endpoint of the SQS API."""

    def __init__(self, service: QueueService) -> None:
        self.service = service
        self.account = service.account

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = None
        for name, value in scope["headers"]:
            if name == b"x-amz-target":
                target = value.decode("latin-1")
                break
        query = target is None
        operation = target.partition(".")[2] if target is not None else ""
        try:
            body = await read_body(receive, BODY_LIMIT)
            if body is None:
                raise errors.batch_too_long(BODY_LIMIT + 1, BATCH_LIMIT)
            if query:
                pairs = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
                pairs += parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
                params = wire.query_params(pairs)
                operation = str(params.pop("Action", ""))
                params.pop("Version", None)
            else:
                params = orjson.loads(body) if body.strip() else {}
                if not isinstance(params, dict):
                    raise errors.invalid_parameter("The request body must be a JSON object.")
            if "QueueUrl" not in params and QUEUE_PATH.fullmatch(scope.get("path", "")):
                params["QueueUrl"] = scope["path"]   # posted to the queue's URL (older SDKs do)
            handler = OPERATIONS.get(operation)
            if handler is None:
                raise errors.invalid_action(operation or "(none)")
            ctx = Context(scope, self.account)
            caller = scope.get("lamina.caller")
            if "QueueUrl" in params:
                self._check_access(caller, operation, params["QueueUrl"])
            for member in ("SourceArn", "DestinationArn"):   # message move tasks name queues by ARN
                if isinstance(params.get(member), str):
                    self._check_access(caller, operation, params[member])
            result = await handler(self, params, ctx)
            status, headers, payload = (wire.xml_result(operation, result) if query else wire.json_result(result))
        except SqsError as err:
            status, headers, payload = wire.xml_error(err) if query else wire.json_error(err)
        except orjson.JSONDecodeError as exc:
            bad = SqsError("SerializationException", "SerializationException", f"Could not parse the request: {exc}")
            status, headers, payload = wire.xml_error(bad) if query else wire.json_error(bad)
        headers.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    def _check_access(self, caller: Caller | None, operation: str, url: object) -> None:
        """Another account's queue: only what its Policy attribute allows the caller (sqs:<Operation>)."""
        if caller is None or not isinstance(url, str):
            return
        try:
            q = self.service.queue_for_arn(url) if url.startswith("arn:") else self.service.queue_for_url(url)
        except SqsError:
            return   # the handler answers for a missing or malformed queue
        if q is None:
            return
        if q.account == caller.account:
            return
        try:
            document = orjson.loads(q.attributes.get("Policy") or "{}")
        except orjson.JSONDecodeError:
            document = {}
        statements = document.get("Statement", []) if isinstance(document, dict) else []
        statements = [statements] if isinstance(statements, dict) else statements
        if not (isinstance(statements, list) and policy.allows(
                [s for s in statements if isinstance(s, dict)], caller, f"sqs:{operation}",
                {"aws:sourceaccount": caller.account, "aws:principalaccount": caller.account})):
            raise SqsError("AccessDeniedException", "AccessDenied",
                           f"Access to the resource {url} is denied.", 403)

    # ------------------------------------------------------------------ queues

    def queue(self, params: Params) -> Queue:
        return self.service.queue_for_url(params.get("QueueUrl"))

    async def create_queue(self, params: Params, ctx: Context) -> dict:
        tags = params.get("tags", params.get("Tags"))
        q = await self.service.create_queue(ctx.account, params.get("QueueName"), params.get("Attributes"), tags)
        return {"QueueUrl": ctx.url(q)}

    async def get_queue_url(self, params: Params, ctx: Context) -> dict:
        name = params.get("QueueName")
        if not isinstance(name, str) or not name:
            raise errors.missing_parameter("QueueName")
        account = params.get("QueueOwnerAWSAccountId") or ctx.account
        url = ctx.url(self.service.queue(str(account), name))
        if account != ctx.account:
            self._check_access(ctx.caller, "GetQueueUrl", url)
        return {"QueueUrl": url}

    async def list_queues(self, params: Params, ctx: Context) -> dict:
        queues = self.service.list_queues(ctx.account, params.get("QueueNamePrefix"))
        return _page(params, [ctx.url(q) for q in queues], "QueueUrls")

    async def delete_queue(self, params: Params, ctx: Context) -> dict:
        await self.service.delete_queue(self.queue(params))
        return {}

    async def purge_queue(self, params: Params, ctx: Context) -> dict:
        await self.service.purge(self.queue(params))
        return {}

    async def get_queue_attributes(self, params: Params, ctx: Context) -> dict:
        attributes = self.service.get_attributes(self.queue(params), params.get("AttributeNames"))
        return {"Attributes": attributes} if attributes else {}

    async def set_queue_attributes(self, params: Params, ctx: Context) -> dict:
        await self.service.set_attributes(self.queue(params), params.get("Attributes"))
        return {}

    async def tag_queue(self, params: Params, ctx: Context) -> dict:
        await self.service.tag(self.queue(params), params.get("Tags"))()  # type: ignore[misc]
        return {}

    async def untag_queue(self, params: Params, ctx: Context) -> dict:
        await self.service.untag(self.queue(params), params.get("TagKeys"))()  # type: ignore[misc]
        return {}

    async def list_queue_tags(self, params: Params, ctx: Context) -> dict:
        q = self.queue(params)
        return {"Tags": dict(q.tags)} if q.tags else {}

    async def list_dead_letter_source_queues(self, params: Params, ctx: Context) -> dict:
        sources = self.service.dead_letter_sources(self.queue(params))
        out = _page(params, [ctx.url(q) for q in sources], "queueUrls")
        out.setdefault("queueUrls", [])
        return out

    async def add_permission(self, params: Params, ctx: Context) -> dict:
        q = self.queue(params)
        label = params.get("Label")
        accounts = params.get("AWSAccountIds")
        actions = params.get("Actions")
        if not isinstance(label, str) or not label:
            raise errors.missing_parameter("Label")
        if not isinstance(accounts, list) or not accounts:
            raise errors.missing_parameter("AWSAccountIds")
        if not isinstance(actions, list) or not actions:
            raise errors.missing_parameter("Actions")
        policy: dict = orjson.loads(q.attributes["Policy"]) if q.attributes.get("Policy") else {
            "Version": "2012-10-17", "Id": f"{q.arn}/SQSDefaultPolicy", "Statement": []}
        statements: list = policy.setdefault("Statement", [])
        if any(s.get("Sid") == label for s in statements):
            raise errors.invalid_parameter(f"Value {label} for parameter Label is invalid. Reason: Already exists.")
        statements.append({"Sid": label, "Effect": "Allow",
                           "Principal": {"AWS": [f"arn:aws:iam::{a}:root" for a in accounts]},
                           "Action": [f"SQS:{a}" for a in actions], "Resource": q.arn})
        await self.service.set_attributes(q, {"Policy": orjson.dumps(policy).decode()})
        return {}

    async def remove_permission(self, params: Params, ctx: Context) -> dict:
        q = self.queue(params)
        label = params.get("Label")
        if not isinstance(label, str) or not label:
            raise errors.missing_parameter("Label")
        policy = orjson.loads(q.attributes["Policy"]) if q.attributes.get("Policy") else {}
        statements = policy.get("Statement") or []
        kept = [s for s in statements if s.get("Sid") != label]
        if len(kept) == len(statements):
            raise errors.invalid_parameter(f"Value {label} for parameter Label is invalid. Reason: can't find label.")
        policy["Statement"] = kept
        await self.service.set_attributes(q, {"Policy": orjson.dumps(policy).decode() if kept else ""})
        return {}

    # ------------------------------------------------------------------ messages

    async def send_message(self, params: Params, ctx: Context) -> dict:
        q = self.queue(params)
        if "MessageBody" not in params:
            raise errors.missing_parameter("MessageBody")
        result = (await self.service.send(q, [params]))[0]
        if isinstance(result, SqsError):
            raise result
        return result

    async def send_message_batch(self, params: Params, ctx: Context) -> dict:
        q = self.queue(params)
        entries = _entries(params, "SendMessageBatchRequestEntry")
        size = sum(len(str(e.get("MessageBody", "")).encode()) for e in entries)
        if size > BATCH_LIMIT:
            raise errors.batch_too_long(size, BATCH_LIMIT)
        if q.fifo:   # AWS fails the whole batch for these two, not the entry (recorded)
            for entry in entries:
                if entry.get("MessageGroupId") is None:
                    raise errors.invalid_parameter("The request must contain the parameter MessageGroupId.")
                if entry.get("MessageDeduplicationId") is None and not q.content_dedup:
                    raise errors.invalid_parameter("The queue should either have ContentBasedDeduplication enabled "
                                                   "or MessageDeduplicationId provided explicitly")
        results = await self.service.send(q, entries)
        successful, failed = [], []
        for entry, result in zip(entries, results, strict=True):
            if isinstance(result, SqsError):
                failed.append(_failure(entry["Id"], result))
            else:
                successful.append({"Id": entry["Id"], **result})
        return {"Successful": successful, "Failed": failed}

    async def receive_message(self, params: Params, ctx: Context) -> dict:
        q = self.queue(params)
        n = params.get("MaxNumberOfMessages")
        n = 1 if n is None else integer(n, "MaxNumberOfMessages")
        if not 1 <= n <= 10:
            raise errors.invalid_value("MaxNumberOfMessages", n, "Must be between 1 and 10, if provided.")
        vt = params.get("VisibilityTimeout")
        if vt is not None:
            vt = integer(vt, "VisibilityTimeout")
            if not 0 <= vt <= 43200:
                raise errors.invalid_value("VisibilityTimeout", vt, "Must be >= 0 and <= 43200, if provided.")
        wait = params.get("WaitTimeSeconds")
        wait = q.wait_default if wait is None else integer(wait, "WaitTimeSeconds")
        if not 0 <= wait <= 20:
            raise errors.invalid_value("WaitTimeSeconds", wait, "Must be >= 0 and <= 20, if provided.")
        attempt = params.get("ReceiveRequestAttemptId") if q.fifo else None   # a standard queue ignores it (AWS)
        if attempt is not None and (not isinstance(attempt, str) or not ATTEMPT_ID.fullmatch(attempt)):
            raise errors.invalid_value("ReceiveRequestAttemptId", attempt, "ReceiveRequestAttemptId can only include "
                                       "alphanumeric and punctuation characters. 1 to 128 in length.")
        system_names = {*_names(params.get("AttributeNames")), *_names(params.get("MessageSystemAttributeNames"))}
        attribute_names = _names(params.get("MessageAttributeNames"))
        messages = await self.service.receive(q, n, vt, wait, attempt)
        if not messages:
            return {}
        return {"Messages": [render_message(m, system_names, attribute_names, self.account) for m in messages]}

    async def delete_message(self, params: Params, ctx: Context) -> dict:
        self.service.delete_message(self.queue(params), params.get("ReceiptHandle"))
        return {}

    async def delete_message_batch(self, params: Params, ctx: Context) -> dict:
        q = self.queue(params)
        successful, failed = [], []
        for entry in _entries(params, "DeleteMessageBatchRequestEntry"):
            try:
                self.service.delete_message(q, entry.get("ReceiptHandle"))
                successful.append({"Id": entry["Id"]})
            except SqsError as err:
                failed.append(_failure(entry["Id"], err))
        return {"Successful": successful, "Failed": failed}

    async def change_message_visibility(self, params: Params, ctx: Context) -> dict:
        q = self.queue(params)
        if "VisibilityTimeout" not in params:
            raise errors.missing_parameter("VisibilityTimeout")
        self.service.change_visibility(q, params.get("ReceiptHandle"), params["VisibilityTimeout"])
        return {}

    async def change_message_visibility_batch(self, params: Params, ctx: Context) -> dict:
        q = self.queue(params)
        successful, failed = [], []
        for entry in _entries(params, "ChangeMessageVisibilityBatchRequestEntry"):
            try:
                if "VisibilityTimeout" not in entry:
                    raise errors.missing_parameter("VisibilityTimeout")
                self.service.change_visibility(q, entry.get("ReceiptHandle"), entry["VisibilityTimeout"])
                successful.append({"Id": entry["Id"]})
            except SqsError as err:
                failed.append(_failure(entry["Id"], err))
        return {"Successful": successful, "Failed": failed}

    # ------------------------------------------------------------------ dead-letter queue redrive

    async def start_message_move_task(self, params: Params, ctx: Context) -> dict:
        source = params.get("SourceArn")
        if not isinstance(source, str) or not source:
            raise errors.missing_parameter("SourceArn")
        moved, handle = await self.service.move_messages(source, params.get("DestinationArn"))
        self._tasks[handle] = {"TaskHandle": handle, "Status": "COMPLETED", "SourceArn": source,
                               "ApproximateNumberOfMessagesMoved": moved,
                               "ApproximateNumberOfMessagesToMove": moved, "StartedTimestamp": int(time.time() * 1000)}
        if params.get("DestinationArn"):
            self._tasks[handle]["DestinationArn"] = params["DestinationArn"]
        return {"TaskHandle": handle}

    async def list_message_move_tasks(self, params: Params, ctx: Context) -> dict:
        source = params.get("SourceArn")
        if not isinstance(source, str) or not source:
            raise errors.missing_parameter("SourceArn")
        if self.service.queue_for_arn(source) is None:
            raise SqsError("ResourceNotFoundException", "ResourceNotFoundException",
                           "The resource that you specified for the SourceArn parameter doesn't exist.", 404)
        tasks = [t for t in self._tasks.values() if t["SourceArn"] == source]
        return {"Results": [{k: v for k, v in t.items() if k != "TaskHandle"} for t in reversed(tasks)][:10]}

    async def cancel_message_move_task(self, params: Params, ctx: Context) -> dict:
        handle = params.get("TaskHandle")
        task = self._tasks.get(handle) if isinstance(handle, str) else None
        if task is None:
            raise SqsError("ResourceNotFoundException", "ResourceNotFoundException",
                           "The resource that you specified for the TaskHandle parameter doesn't exist.", 404)
        raise errors.unsupported("Only a task with the status RUNNING can be cancelled: this one is "
                                 f"{task['Status']} (Lamina moves messages at once).")

    @property
    def _tasks(self) -> dict[str, dict]:
        return self.service.move_tasks


def _names(value: object) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        return [str(value)]
    return [str(v) for v in value]


def render_message(m: Message, system_names: set[str], attribute_names: list[str], account: str) -> dict:
    """A received message as ReceiveMessage returns it (its latest receipt handle)."""
    out: dict = {"MessageId": m.id, "ReceiptHandle": m.handle, "MD5OfBody": m.md5_body, "Body": m.body}
    if system_names:
        system = system_attributes(m, account)
        if "All" not in system_names:
            system = {k: v for k, v in system.items() if k in system_names}
        if system:
            out["Attributes"] = system
    if attribute_names and m.attributes:
        if "All" in attribute_names or ".*" in attribute_names:
            chosen = m.attributes
        else:
            prefixes = tuple(n[:-2] for n in attribute_names if n.endswith(".*"))
            chosen = {k: v for k, v in m.attributes.items()
                      if k in attribute_names or (prefixes and k.startswith(prefixes))}
        if chosen:
            out["MD5OfMessageAttributes"] = m.md5_attributes if chosen is m.attributes else attributes_md5(chosen)
            out["MessageAttributes"] = chosen
    return out


def system_attributes(m: Message, account: str) -> dict[str, str]:
    out = {"SenderId": account, "SentTimestamp": str(int(m.sent * 1000)),
           "ApproximateReceiveCount": str(m.receives),
           "ApproximateFirstReceiveTimestamp": str(int(m.first_receive * 1000))}
    if m.group is not None:
        out["MessageGroupId"] = m.group
    if m.dedup is not None:
        out["MessageDeduplicationId"] = m.dedup
        out["SequenceNumber"] = f"{m.seq:020d}"
    if m.trace is not None:
        out["AWSTraceHeader"] = m.trace
    if m.dlq_source is not None:
        out["DeadLetterQueueSourceArn"] = m.dlq_source
    return out


def _entries(params: Params, kind: str) -> list[dict]:
    entries = params.get("Entries")
    if entries is None or entries == []:
        raise errors.empty_batch(kind)
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise errors.invalid_parameter("Entries must be a list of structures.")
    if len(entries) > MAX_BATCH:
        raise errors.too_many_entries(len(entries))
    seen: set[str] = set()
    for entry in entries:
        entry_id = entry.get("Id")
        if not isinstance(entry_id, str) or not BATCH_ID.fullmatch(entry_id):
            raise errors.invalid_batch_id(str(entry_id))
        if entry_id in seen:
            raise errors.ids_not_distinct(entry_id)
        seen.add(entry_id)
    return entries


def _failure(entry_id: str, err: SqsError) -> dict:
    return {"Id": entry_id, "SenderFault": err.sender, "Code": err.code, "Message": err.message}


def _page(params: Params, items: list[str], key: str) -> dict:
    """ListQueues / ListDeadLetterSourceQueues paging: NextToken only when MaxResults is given."""
    limit = params.get("MaxResults")
    token = params.get("NextToken")
    start = 0
    if token:
        try:
            start = int(base64.urlsafe_b64decode(str(token).encode()).decode())
        except (ValueError, UnicodeDecodeError):
            raise errors.invalid_parameter("Invalid NextToken value.") from None
    if limit is None:
        page = items[start:]
        return {key: page} if page else {}
    n = integer(limit, "MaxResults")
    if not MAX_RESULTS[0] <= n <= MAX_RESULTS[1]:
        raise errors.invalid_value("MaxResults", n, "MaxResults must be an integer between 1 and 1000.")
    page = items[start : start + n]
    out: dict = {key: page} if page else {}
    if start + n < len(items):
        out["NextToken"] = base64.urlsafe_b64encode(str(start + n).encode()).decode()
    return out


OPERATIONS: dict[str, Operation] = {
    "CreateQueue": SqsApi.create_queue,
    "GetQueueUrl": SqsApi.get_queue_url,
    "ListQueues": SqsApi.list_queues,
    "DeleteQueue": SqsApi.delete_queue,
    "PurgeQueue": SqsApi.purge_queue,
    "GetQueueAttributes": SqsApi.get_queue_attributes,
    "SetQueueAttributes": SqsApi.set_queue_attributes,
    "TagQueue": SqsApi.tag_queue,
    "UntagQueue": SqsApi.untag_queue,
    "ListQueueTags": SqsApi.list_queue_tags,
    "ListDeadLetterSourceQueues": SqsApi.list_dead_letter_source_queues,
    "AddPermission": SqsApi.add_permission,
    "RemovePermission": SqsApi.remove_permission,
    "SendMessage": SqsApi.send_message,
    "SendMessageBatch": SqsApi.send_message_batch,
    "ReceiveMessage": SqsApi.receive_message,
    "DeleteMessage": SqsApi.delete_message,
    "DeleteMessageBatch": SqsApi.delete_message_batch,
    "ChangeMessageVisibility": SqsApi.change_message_visibility,
    "ChangeMessageVisibilityBatch": SqsApi.change_message_visibility_batch,
    "StartMessageMoveTask": SqsApi.start_message_move_task,
    "ListMessageMoveTasks": SqsApi.list_message_move_tasks,
    "CancelMessageMoveTask": SqsApi.cancel_message_move_task,
}


class SqsRoute(BaseRoute):
    """Claims the SQS API's requests: `X-Amz-Target: AmazonSQS.*`, or a form post to `/` or a queue's path."""

    def __init__(self, api: SqsApi) -> None:
        self.api = api

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or scope["method"] != "POST":
            return Match.NONE, {}
        form = False
        for name, value in scope["headers"]:
            if name == b"x-amz-target":
                return (Match.FULL if value.startswith(b"AmazonSQS.") else Match.NONE), {}
            if name == b"content-type":
                form = value.startswith(b"application/x-www-form-urlencoded")
        path = scope.get("path", "")
        if form and (path == "/" or QUEUE_PATH.fullmatch(path)):
            return Match.FULL, {}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: object) -> URLPath:
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.api(scope, receive, send)


def routes(service: QueueService) -> list[BaseRoute]:
    """The SQS API, and Lamina's own view of its queues (depth, in flight, oldest message: `lamina queue ls`)."""
    async def describe(request: Request) -> Response:
        caller: Caller | None = request.scope.get("lamina.caller")
        account = caller.account if caller is not None else service.account   # the caller's own queues
        out: dict = {"Queues": [service.describe(q) for q in service.list_queues(account)]}
        if account == service.account:
            out["Totals"] = service.stats()   # the server's, every account's: the operator's
        return json_response(out)

    return [SqsRoute(SqsApi(service)), Route("/lamina/v1/queues", describe, methods=["GET"])]
