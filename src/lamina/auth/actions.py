"""What an AWS-API request asks to do, in IAM's terms: its action (`lambda:InvokeFunction`, `sqs:SendMessage`, ...)
and the ARN of the resource it acts on, for identity policies (auth/policy.py's identity_allows).

The REST APIs' operations are recognised by their method and path from botocore's own service models (Lambda,
EventBridge Scheduler); the JSON 1.1 APIs by X-Amz-Target (SQS, EventBridge, CloudWatch Logs); the query APIs by
their Action parameter (SQS, EC2). IAM names Invoke and InvokeWithResponseStream `lambda:InvokeFunction`, as AWS does.
Lamina's MicroVM API is `lambda:` + its operation; Lamina's own endpoints (`/lamina/v1/...`) are `lamina:Read` (GET)
and `lamina:Write`. The resource is the function's (unqualified), layer's, schedule's, queue's or log group's ARN
where the request names one, else `*`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote

import botocore.session
import orjson

# IAM's names where they differ from the operation's.
_RENAMED = {"Invoke": "InvokeFunction", "InvokeWithResponseStream": "InvokeFunction"}
_TARGETS = {b"AmazonSQS": "sqs", b"AWSEvents": "events", b"Logs_20140328": "logs"}
_MICROVM_ROUTES = (   # Lamina's MicroVM API (api/microvms_api.py): (method, path pattern, operation)
    ("POST", r"/microvms", "RunMicrovm"), ("GET", r"/microvms", "ListMicrovms"),
    ("GET", r"/microvms/[^/]+", "GetMicrovm"), ("DELETE", r"/microvms/[^/]+", "TerminateMicrovm"),
    ("POST", r"/microvms/[^/]+/suspend", "SuspendMicrovm"), ("POST", r"/microvms/[^/]+/resume", "ResumeMicrovm"),
    ("POST", r"/microvms/[^/]+/auth-token", "CreateMicrovmAuthToken"),
    ("POST", r"/microvms/[^/]+/shell-auth-token", "CreateMicrovmShellAuthToken"),
    ("POST", r"/microvm-images", "CreateMicrovmImage"), ("GET", r"/microvm-images", "ListMicrovmImages"),
    ("GET", r"/microvm-images/[^/]+", "GetMicrovmImage"), ("PUT", r"/microvm-images/[^/]+", "UpdateMicrovmImage"),
    ("DELETE", r"/microvm-images/[^/]+", "DeleteMicrovmImage"),
)


@dataclass(frozen=True, slots=True)
class Action:
    name: str       # service:Operation
    resource: str   # an ARN, or "*"


@dataclass(frozen=True, slots=True)
class _Route:
    method: str
    pattern: re.Pattern
    action: str
    service: str


@functools.cache
def _rest_routes() -> tuple[_Route, ...]:
    """The REST operations of the models Lamina serves, longest literal prefix first (a path that two templates
    match takes the more specific one)."""
    session = botocore.session.get_session()
    routes = []
    for service in ("lambda", "scheduler"):
        model = session.get_service_model(service)
        for op_name in model.operation_names:
            http = model.operation_model(op_name).http
            uri = http["requestUri"].split("?", 1)[0]
            pattern = re.sub(r"\\\{(\w+)\\\+\\\}", r"(?P<\1>.+)", re.escape(uri))
            pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", pattern)
            routes.append((len(uri.split("{", 1)[0]), _Route(http["method"], re.compile(pattern + "/?"),
                                                             f"{service}:{_RENAMED.get(op_name, op_name)}", service)))
    for method, path, op_name in _MICROVM_ROUTES:
        routes.append((len(path), _Route(method, re.compile(r"/\d{4}-\d{2}-\d{2}" + path + "/?"), f"lambda:{op_name}",
                                         "lambda")))
    routes.sort(key=lambda item: -item[0])
    return tuple(route for _, route in routes)


def request_action(method: str, path: str, query: bytes, headers: list[tuple[bytes, bytes]], body: bytes,
                   service: str, region: str, account: str) -> Action:
    """The action and resource of a request (path: decoded, without its query string) acting in `account`."""
    target = content_type = None
    for name, value in headers:
        if name == b"x-amz-target":
            target = value
        elif name == b"content-type":
            content_type = value
    if target is not None:
        prefix, _, target_op = target.partition(b".")
        iam = _TARGETS.get(prefix, service)
        return Action(f"{iam}:{target_op.decode('latin-1')}", _json_resource(iam, body, region, account))
    if method == "POST" and content_type is not None and content_type.startswith(b"application/x-www-form-urlencoded"):
        params = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        params.update(parse_qsl(query.decode("latin-1")))
        operation = params.get("Action", "")
        if service == "ec2":
            return Action(f"ec2:{operation}", "*")
        queue_url = params.get("QueueUrl") or (path if path.count("/") == 2 else "")
        return Action(f"sqs:{operation}", _queue_arn(queue_url, region, account))
    if path.startswith("/lamina/"):
        return Action("lamina:Read" if method in ("GET", "HEAD") else "lamina:Write", "*")
    for route in _rest_routes():
        if route.method != method:
            continue
        m = route.pattern.fullmatch(path)
        if m is not None:
            return Action(route.action, _rest_resource(route.service, m.groupdict(), path, query, body, region,
                                                       account))
    return Action(f"{service}:Unknown", "*")


def _rest_resource(service: str, params: dict[str, str], path: str, query: bytes, body: bytes, region: str,
                   account: str) -> str:
    if service == "lambda" and "FunctionName" in params:
        return function_arn(unquote(params["FunctionName"]), region, account)
    if service == "lambda" and "LayerName" in params:
        name = unquote(params["LayerName"])
        return name if name.startswith("arn:") else f"arn:aws:lambda:{region}:{account}:layer:{name}"
    if service == "scheduler" and "Name" in params and path.startswith("/schedules/"):
        group = dict(parse_qsl(query.decode("latin-1"))).get("groupName")
        if group is None and body:
            try:
                doc = orjson.loads(body)
            except orjson.JSONDecodeError:
                doc = None
            group = doc.get("GroupName") if isinstance(doc, dict) and isinstance(doc.get("GroupName"), str) else None
        return f"arn:aws:scheduler:{region}:{account}:schedule/{group or 'default'}/{unquote(params['Name'])}"
    return "*"


def function_arn(name: str, region: str, account: str) -> str:
    """The unqualified ARN of a FunctionName (a name, name:qualifier, partial or full ARN)."""
    parts = name.split(":")
    if name.startswith("arn:") and len(parts) >= 7:
        return ":".join(parts[:7])
    if len(parts) >= 3 and parts[1] == "function":   # ACCOUNT:function:NAME[:QUALIFIER]
        return f"arn:aws:lambda:{region}:{parts[0]}:function:{parts[2]}"
    return f"arn:aws:lambda:{region}:{account}:function:{parts[0]}"


def _queue_arn(queue_url: str, region: str, account: str) -> str:
    path = queue_url.split("://", 1)[-1]
    pieces = [p for p in path.split("/") if p]
    if len(pieces) >= 2 and pieces[-2].isdigit():
        return f"arn:aws:sqs:{region}:{pieces[-2]}:{pieces[-1]}"
    return "*"


def _json_resource(service: str, body: bytes, region: str, account: str) -> str:
    try:
        doc = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        return "*"
    if not isinstance(doc, dict):
        return "*"
    if service == "sqs" and isinstance(doc.get("QueueUrl"), str):
        return _queue_arn(doc["QueueUrl"], region, account)
    if service == "logs" and isinstance(doc.get("logGroupName"), str):
        return f"arn:aws:logs:{region}:{account}:log-group:{doc['logGroupName']}"
    if service == "events" and isinstance(doc.get("EventBusName"), str):
        bus = doc["EventBusName"]
        return bus if bus.startswith("arn:") else f"arn:aws:events:{region}:{account}:event-bus/{bus}"
    return "*"
