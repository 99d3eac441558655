"""`lamina queue ...` and `lamina esm ...`: the server's SQS-compatible queues and the event source mappings that feed
functions from them. Queue commands speak the SQS API's JSON protocol (what boto3 sends); `ls` reads Lamina's own
view (/lamina/v1/queues: depth, in flight, delayed, oldest message's age)."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from lamina.cli.client import Client
from lamina.cli.common import EndpointOption, confirm, fail, make_client, out
from lamina.cli.tables import print_table

queue_app = typer.Typer(name="queue", help="SQS-compatible queues on the server.", no_args_is_help=True)
esm_app = typer.Typer(name="esm", help="Event source mappings: queues that feed functions.", no_args_is_help=True)

JSON_HEADERS = {"Content-Type": "application/x-amz-json-1.0"}
ESM_PATH = "/2015-03-31/event-source-mappings"


def _sqs(client: Client, operation: str, params: dict, timeout: float = 60.0) -> dict:
    resp = client.request("POST", "/", body=json.dumps(params).encode(), timeout=timeout,
                          headers={**JSON_HEADERS, "X-Amz-Target": f"AmazonSQS.{operation}"})
    return resp.json() or {}


def _url(client: Client, name: str) -> str:
    return str(_sqs(client, "GetQueueUrl", {"QueueName": name})["QueueUrl"])


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


@queue_app.command("ls")
def queue_ls(ctx: typer.Context,
             as_json: Annotated[bool, typer.Option("--json", help="Print the server's JSON.")] = False,
             endpoint: EndpointOption = None) -> None:
    """Queues with their depth (visible), in-flight and delayed messages and the oldest message's age."""
    doc: dict[str, Any] = make_client(ctx, endpoint).request("GET", "/lamina/v1/queues").json()
    if as_json:
        out.print_json(json.dumps(doc))
        return
    table = Table("NAME", "TYPE", "MESSAGES", "IN FLIGHT", "DELAYED", "OLDEST", "DEAD-LETTER QUEUE", box=None,
                  header_style="bold")
    for q in doc["Queues"]:
        dlq = q.get("DeadLetterTarget") or ""
        table.add_row(q["Name"], "fifo" if q["Fifo"] else "standard", str(q["Messages"]), str(q["InFlight"]),
                      str(q["Delayed"]), _age(q.get("OldestAgeSeconds")), dlq.rsplit(":", 1)[-1])
    print_table(out, table)


@queue_app.command("create")
def queue_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Queue name (FIFO queues end in .fifo).")],
    fifo: Annotated[bool, typer.Option("--fifo", help="A FIFO queue (the name must end in .fifo).")] = False,
    visibility_timeout: Annotated[int | None, typer.Option(help="Seconds a received message stays hidden.")] = None,
    dlq: Annotated[str | None, typer.Option("--dlq", help="Dead-letter queue name (redrive policy).")] = None,
    max_receives: Annotated[int, typer.Option(help="Receives before a message moves to --dlq.")] = 5,
    attribute: Annotated[list[str] | None, typer.Option("--attribute", "-a", help="NAME=VALUE, repeatable.")] = None,
    endpoint: EndpointOption = None,
) -> None:
    """Create a queue (the same attributes again is a no-op, as CreateQueue is) and print its URL."""
    client = make_client(ctx, endpoint)
    attributes: dict[str, str] = {}
    if fifo or name.endswith(".fifo"):
        attributes["FifoQueue"] = "true"
    if visibility_timeout is not None:
        attributes["VisibilityTimeout"] = str(visibility_timeout)
    if dlq:
        arn = _sqs(client, "GetQueueAttributes", {"QueueUrl": _url(client, dlq),
                                                  "AttributeNames": ["QueueArn"]})["Attributes"]["QueueArn"]
        attributes["RedrivePolicy"] = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": max_receives})
    for item in attribute or []:
        key, sep, value = item.partition("=")
        if not sep:
            fail(f"Error: --attribute takes NAME=VALUE, not {item!r}", 2)
        attributes[key] = value
    out.print(_sqs(client, "CreateQueue", {"QueueName": name, "Attributes": attributes})["QueueUrl"], markup=False)


@queue_app.command("send")
def queue_send(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Queue name.")],
    body: Annotated[str, typer.Argument(help="Message body ('-' reads standard input).")],
    group: Annotated[str | None, typer.Option(help="MessageGroupId (FIFO).")] = None,
    dedup: Annotated[str | None, typer.Option(help="MessageDeduplicationId (FIFO).")] = None,
    delay: Annotated[int | None, typer.Option(help="DelaySeconds (standard queues).")] = None,
    endpoint: EndpointOption = None,
) -> None:
    """Send one message; prints its MessageId once the server has it durably."""
    client = make_client(ctx, endpoint)
    params: dict[str, Any] = {"QueueUrl": _url(client, name), "MessageBody": sys.stdin.read() if body == "-" else body}
    for key, value in (("MessageGroupId", group), ("MessageDeduplicationId", dedup), ("DelaySeconds", delay)):
        if value is not None:
            params[key] = value
    out.print(_sqs(client, "SendMessage", params)["MessageId"], markup=False)


@queue_app.command("receive")
def queue_receive(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Queue name.")],
    max_messages: Annotated[int, typer.Option("--max", min=1, max=10, help="At most this many.")] = 10,
    wait: Annotated[int, typer.Option(min=0, max=20, help="Long-poll up to this many seconds.")] = 0,
    keep: Annotated[bool, typer.Option("--keep", help="Leave them in the queue (they reappear after the visibility "
                                                      "timeout) instead of deleting them.")] = False,
    endpoint: EndpointOption = None,
) -> None:
    """Receive messages and print them as JSON lines (deleted unless --keep)."""
    client = make_client(ctx, endpoint)
    url = _url(client, name)
    doc = _sqs(client, "ReceiveMessage", {"QueueUrl": url, "MaxNumberOfMessages": max_messages,
                                          "WaitTimeSeconds": wait, "MessageSystemAttributeNames": ["All"],
                                          "MessageAttributeNames": ["All"]}, timeout=wait + 30.0)
    messages = doc.get("Messages", [])
    for m in messages:
        out.print(json.dumps({"MessageId": m["MessageId"], "Body": m["Body"], "Attributes": m.get("Attributes", {}),
                              "MessageAttributes": m.get("MessageAttributes", {})}), markup=False, soft_wrap=True)
    if messages and not keep:
        _sqs(client, "DeleteMessageBatch", {"QueueUrl": url, "Entries": [
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]})


@queue_app.command("purge")
def queue_purge(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Queue name.")],
                yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
                endpoint: EndpointOption = None) -> None:
    """Delete every message of a queue."""
    confirm(f"Delete every message of {name}?", yes)
    client = make_client(ctx, endpoint)
    _sqs(client, "PurgeQueue", {"QueueUrl": _url(client, name)})


@queue_app.command("rm")
def queue_rm(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Queue name.")],
             yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
             endpoint: EndpointOption = None) -> None:
    """Delete a queue and its messages."""
    confirm(f"Delete queue {name} and its messages?", yes)
    client = make_client(ctx, endpoint)
    _sqs(client, "DeleteQueue", {"QueueUrl": _url(client, name)})


@esm_app.command("ls")
def esm_ls(ctx: typer.Context,
           function: Annotated[str | None, typer.Option(help="Only this function's mappings.")] = None,
           as_json: Annotated[bool, typer.Option("--json", help="Print the server's JSON.")] = False,
           endpoint: EndpointOption = None) -> None:
    """Event source mappings with their state and what their pollers did."""
    client = make_client(ctx, endpoint)
    doc = client.request("GET", ESM_PATH, query={"FunctionName": function} if function else None).json()
    stats = {s["UUID"]: s for s in client.request("GET", "/lamina/v1/event-source-mappings").json()
             ["EventSourceMappings"]}
    if as_json:
        out.print_json(json.dumps({"EventSourceMappings": doc["EventSourceMappings"], "Pollers": stats}))
        return
    table = Table("UUID", "QUEUE", "FUNCTION", "STATE", "BATCH", "INVOKES", "FAILED", "LAST ERROR", box=None,
                  header_style="bold")
    for m in doc["EventSourceMappings"]:
        s = stats.get(m["UUID"], {})
        table.add_row(m["UUID"], m["EventSourceArn"].rsplit(":", 1)[-1], m["FunctionArn"].split(":function:", 1)[-1],
                      m["State"], str(m["BatchSize"]), str(s.get("Invocations", "-")), str(s.get("FailedBatches", "-")),
                      s.get("LastError") or "")
    print_table(out, table)


@esm_app.command("create")
def esm_create(
    ctx: typer.Context,
    function: Annotated[str, typer.Argument(help="Function name (or ARN, or name:alias).")],
    queue: Annotated[str, typer.Argument(help="Queue name (or its ARN).")],
    batch_size: Annotated[int | None, typer.Option(help="Messages per invoke (1-10000; default 10).")] = None,
    window: Annotated[int | None, typer.Option(help="MaximumBatchingWindowInSeconds (0-300).")] = None,
    report_failures: Annotated[bool, typer.Option("--report-failures",
                                                  help="ReportBatchItemFailures (partial batch responses).")] = False,
    max_concurrency: Annotated[int | None, typer.Option(help="ScalingConfig.MaximumConcurrency (2-1000).")] = None,
    filter_pattern: Annotated[list[str] | None, typer.Option("--filter", help="An event pattern (JSON), "
                                                                               "repeatable (ORed).")] = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="Create it disabled.")] = False,
    endpoint: EndpointOption = None,
) -> None:
    """Feed FUNCTION from QUEUE; prints the mapping's UUID."""
    client = make_client(ctx, endpoint)
    arn = queue if queue.startswith("arn:") else _sqs(client, "GetQueueAttributes", {
        "QueueUrl": _url(client, queue), "AttributeNames": ["QueueArn"]})["Attributes"]["QueueArn"]
    body: dict[str, Any] = {"FunctionName": function, "EventSourceArn": arn, "Enabled": not disabled}
    if batch_size is not None:
        body["BatchSize"] = batch_size
    if window is not None:
        body["MaximumBatchingWindowInSeconds"] = window
    if report_failures:
        body["FunctionResponseTypes"] = ["ReportBatchItemFailures"]
    if max_concurrency is not None:
        body["ScalingConfig"] = {"MaximumConcurrency": max_concurrency}
    if filter_pattern:
        body["FilterCriteria"] = {"Filters": [{"Pattern": p} for p in filter_pattern]}
    out.print(client.request("POST", ESM_PATH, json_body=body).json()["UUID"], markup=False)


def _set_enabled(ctx: typer.Context, mapping: str, enabled: bool, endpoint: str | None) -> None:
    make_client(ctx, endpoint).request("PUT", f"{ESM_PATH}/{mapping}", json_body={"Enabled": enabled})


@esm_app.command("enable")
def esm_enable(ctx: typer.Context, mapping: Annotated[str, typer.Argument(help="Mapping UUID.")],
               endpoint: EndpointOption = None) -> None:
    """Start feeding the function again."""
    _set_enabled(ctx, mapping, True, endpoint)


@esm_app.command("disable")
def esm_disable(ctx: typer.Context, mapping: Annotated[str, typer.Argument(help="Mapping UUID.")],
                endpoint: EndpointOption = None) -> None:
    """Stop feeding the function (messages stay in the queue)."""
    _set_enabled(ctx, mapping, False, endpoint)


@esm_app.command("rm")
def esm_rm(ctx: typer.Context, mapping: Annotated[str, typer.Argument(help="Mapping UUID.")],
           endpoint: EndpointOption = None) -> None:
    """Delete a mapping (its queue and messages stay)."""
    make_client(ctx, endpoint).request("DELETE", f"{ESM_PATH}/{mapping}")
