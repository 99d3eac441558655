"""`lamina schedule ...` (EventBridge Scheduler schedules: ls, create, rm) and `lamina events put|rules` (the event
bus), spoken over the same APIs boto3 uses: Scheduler's REST paths and EventBridge's JSON 1.1 operations."""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.table import Table

from lamina.cli.client import Client
from lamina.cli.common import EndpointOption, fail, make_client, out
from lamina.cli.tables import print_table

schedule_app = typer.Typer(name="schedule", help="EventBridge Scheduler schedules on the server.",
                           no_args_is_help=True)

EVENTS_HEADERS = {"Content-Type": "application/x-amz-json-1.1"}


def events_call(client: Client, operation: str, params: dict) -> dict:
    resp = client.request("POST", "/", body=json.dumps(params).encode(),
                          headers={**EVENTS_HEADERS, "X-Amz-Target": f"AWSEvents.{operation}"})
    return resp.json() or {}


def _target_arn(client: Client, function: str | None, queue: str | None, target: str | None) -> str:
    given = [x for x in (function, queue, target) if x]
    if len(given) != 1:
        fail("give one of --function, --queue or --target")
    if function:
        doc = client.request("GET", f"/2015-03-31/functions/{quote(function, safe='')}").json()
        return str(doc["Configuration"]["FunctionArn"])
    if queue:
        url = client.request("POST", "/", body=json.dumps({"QueueName": queue}).encode(),
                             headers={"Content-Type": "application/x-amz-json-1.0",
                                      "X-Amz-Target": "AmazonSQS.GetQueueUrl"}).json()["QueueUrl"]
        attrs = client.request("POST", "/", body=json.dumps({"QueueUrl": url, "AttributeNames": ["QueueArn"]}).encode(),
                               headers={"Content-Type": "application/x-amz-json-1.0",
                                        "X-Amz-Target": "AmazonSQS.GetQueueAttributes"}).json()
        return str(attrs["Attributes"]["QueueArn"])
    return str(target)


@schedule_app.command("ls")
def schedule_ls(ctx: typer.Context,
                group: Annotated[str | None, typer.Option(help="Only this schedule group.")] = None,
                as_json: Annotated[bool, typer.Option("--json", help="Print the schedules as JSON.")] = False,
                endpoint: EndpointOption = None) -> None:
    """Schedules with their expression, time zone, state and target."""
    client = make_client(ctx, endpoint)
    schedules: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        query = {k: v for k, v in (("ScheduleGroup", group), ("NextToken", token)) if v}
        page = client.request("GET", "/schedules", query=query).json()
        for s in page["Schedules"]:
            schedules.append(client.request("GET", f"/schedules/{quote(s['Name'], safe='')}",
                                            query={"groupName": s["GroupName"]}).json())
        token = page.get("NextToken")
        if not token:
            break
    if as_json:
        out.print_json(json.dumps(schedules))
        return
    table = Table("NAME", "GROUP", "STATE", "EXPRESSION", "TIME ZONE", "TARGET", box=None, header_style="bold")
    for s in schedules:
        table.add_row(s["Name"], s["GroupName"], s["State"], s["ScheduleExpression"],
                      s.get("ScheduleExpressionTimezone") or "UTC", s["Target"]["Arn"])
    print_table(out, table)


@schedule_app.command("create")
def schedule_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Schedule name.")],
    expression: Annotated[str, typer.Option(
        "--expression", "-e", help="rate(5 minutes), cron(0 12 ? * MON-FRI *) or at(2027-01-01T09:00:00).")],
    function: Annotated[str | None, typer.Option(help="Invoke this function (asynchronously).")] = None,
    queue: Annotated[str | None, typer.Option(help="Send to this queue.")] = None,
    target: Annotated[str | None, typer.Option(help="A target ARN.")] = None,
    input_json: Annotated[str | None, typer.Option("--input", help="The target's Input (JSON text).")] = None,
    timezone: Annotated[str | None, typer.Option(help="IANA time zone of a cron or at expression.")] = None,
    group: Annotated[str | None, typer.Option(help="Schedule group (default: default).")] = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="Create it disabled.")] = False,
    delete_after: Annotated[bool, typer.Option("--delete-after", help="Delete it after its last run.")] = False,
    endpoint: EndpointOption = None,
) -> None:
    """Create a schedule that invokes a function or sends to a queue; prints its ARN."""
    client = make_client(ctx, endpoint)
    arn = _target_arn(client, function, queue, target)
    account = arn.split(":")[4] or "000000000000"
    body: dict[str, Any] = {"ScheduleExpression": expression, "FlexibleTimeWindow": {"Mode": "OFF"},
                            "Target": {"Arn": arn, "RoleArn": f"arn:aws:iam::{account}:role/lamina-scheduler"},
                            "State": "DISABLED" if disabled else "ENABLED",
                            "ActionAfterCompletion": "DELETE" if delete_after else "NONE"}
    if input_json is not None:
        body["Target"]["Input"] = input_json
    if timezone:
        body["ScheduleExpressionTimezone"] = timezone
    if group:
        body["GroupName"] = group
    doc = client.request("POST", f"/schedules/{quote(name, safe='')}", json_body=body).json()
    out.print(doc["ScheduleArn"])


@schedule_app.command("rm")
def schedule_rm(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Schedule name.")],
                group: Annotated[str | None, typer.Option(help="Its schedule group.")] = None,
                endpoint: EndpointOption = None) -> None:
    """Delete a schedule."""
    query = {"groupName": group} if group else None
    make_client(ctx, endpoint).request("DELETE", f"/schedules/{quote(name, safe='')}", query=query)
    out.print(f"deleted {name}")


def events_put(
    ctx: typer.Context,
    source: Annotated[str, typer.Option(help="The event's source.")],
    detail_type: Annotated[str, typer.Option("--detail-type", help="The event's detail-type.")],
    detail: Annotated[str, typer.Option(help="The event's detail (a JSON object).")] = "{}",
    bus: Annotated[str | None, typer.Option(help="Event bus (default: default).")] = None,
    endpoint: EndpointOption = None,
) -> None:
    """Put one event on a bus (PutEvents) and print its event id; the bus's matching rules send it on."""
    entry = {"Source": source, "DetailType": detail_type, "Detail": detail}
    if bus:
        entry["EventBusName"] = bus
    result = events_call(make_client(ctx, endpoint), "PutEvents", {"Entries": [entry]})["Entries"][0]
    if "ErrorCode" in result:
        fail(f"{result['ErrorCode']}: {result.get('ErrorMessage', '')}")
    out.print(result["EventId"])


def events_rules(
    ctx: typer.Context,
    bus: Annotated[str | None, typer.Option(help="Event bus (default: default).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rules and their targets as JSON.")] = False,
    endpoint: EndpointOption = None,
) -> None:
    """A bus's rules: state, event pattern or schedule, and targets."""
    client = make_client(ctx, endpoint)
    params = {"EventBusName": bus} if bus else {}
    rules = events_call(client, "ListRules", params)["Rules"]
    for rule in rules:
        rule["Targets"] = events_call(client, "ListTargetsByRule", {**params, "Rule": rule["Name"]})["Targets"]
    if as_json:
        out.print_json(json.dumps(rules))
        return
    table = Table("NAME", "STATE", "PATTERN / SCHEDULE", "TARGETS", box=None, header_style="bold")
    for rule in rules:
        table.add_row(rule["Name"], rule["State"], rule.get("EventPattern") or rule.get("ScheduleExpression", ""),
                      ", ".join(t["Arn"].rsplit(":", 1)[-1] for t in rule["Targets"]))
    print_table(out, table)
