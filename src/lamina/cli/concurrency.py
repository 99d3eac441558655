"""`lamina concurrency ...`: a function's reserved concurrency (a cap and a guarantee) and provisioned concurrency
(pre-started environments for a version or alias), over the Lambda API's concurrency operations."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.table import Table

from lamina.cli.client import Client
from lamina.cli.common import EndpointOption, err, fail, make_client, out
from lamina.cli.tables import print_table

app = typer.Typer(name="concurrency", help="Reserved and provisioned concurrency.", no_args_is_help=True)

FunctionArg = Annotated[str, typer.Argument(help="Function name or ARN.")]
QualifierOption = Annotated[str, typer.Option("--qualifier", "-q", help="A published version or an alias.")]
PROVISION_WAIT_S = 300.0


def _reserved_path(name: str, api: str = "2017-10-31") -> str:
    return f"/{api}/functions/{quote(name, safe='')}/concurrency"


def _provisioned_path(name: str) -> str:
    return f"/2019-09-30/functions/{quote(name, safe='')}/provisioned-concurrency"


def provisioned_configs(client: Client, name: str) -> list[dict[str, Any]]:
    """Every provisioned concurrency config of a function (ListProvisionedConcurrencyConfigs, all pages)."""
    items: list[dict[str, Any]] = []
    marker: str | None = None
    while True:
        query = {"List": "ALL", **({"Marker": marker} if marker else {})}
        page = client.request("GET", _provisioned_path(name), query=query).json() or {}
        items += page.get("ProvisionedConcurrencyConfigs") or []
        marker = page.get("NextMarker")
        if not marker:
            return items


@app.command("get")
def get(ctx: typer.Context, name: FunctionArg,
        as_json: Annotated[bool, typer.Option("--json", help="Print the server's JSON.")] = False,
        endpoint: EndpointOption = None) -> None:
    """A function's reserved concurrency and its provisioned concurrency per version or alias."""
    client = make_client(ctx, endpoint)
    reserved = (client.request("GET", _reserved_path(name, "2019-09-30")).json() or {}).get(
        "ReservedConcurrentExecutions")
    provisioned = provisioned_configs(client, name)
    if as_json:
        out.print_json(json.dumps({"ReservedConcurrentExecutions": reserved,
                                   "ProvisionedConcurrencyConfigs": provisioned}))
        return
    out.print(f"reserved: {reserved if reserved is not None else 'none (uses the unreserved pool)'}", markup=False)
    if not provisioned:
        out.print("provisioned: none", markup=False)
        return
    table = Table("QUALIFIER", "REQUESTED", "AVAILABLE", "STATUS", "REASON", box=None, header_style="bold")
    for item in provisioned:
        table.add_row(item.get("FunctionArn", "").rsplit(":", 1)[-1],
                      str(item.get("RequestedProvisionedConcurrentExecutions", "")),
                      str(item.get("AvailableProvisionedConcurrentExecutions", "")), item.get("Status", ""),
                      item.get("StatusReason") or "")
    print_table(out, table)


@app.command("reserve")
def reserve(ctx: typer.Context, name: FunctionArg,
            count: Annotated[int, typer.Argument(min=0, help="Concurrent executions (0 throttles every invoke).")],
            endpoint: EndpointOption = None) -> None:
    """Reserve concurrency: at most COUNT run at once, and COUNT are always available to this function."""
    body = {"ReservedConcurrentExecutions": count}
    got = make_client(ctx, endpoint).request("PUT", _reserved_path(name), json_body=body).json()
    out.print(f"Reserved {got['ReservedConcurrentExecutions']} for {name}", markup=False)


@app.command("unreserve")
def unreserve(ctx: typer.Context, name: FunctionArg, endpoint: EndpointOption = None) -> None:
    """Remove the reservation (the function uses the unreserved pool again)."""
    make_client(ctx, endpoint).request("DELETE", _reserved_path(name))
    out.print(f"Removed the reserved concurrency of {name}", markup=False)


@app.command("provision")
def provision(
    ctx: typer.Context,
    name: FunctionArg,
    count: Annotated[int, typer.Argument(min=1, help="Environments to keep started.")],
    qualifier: QualifierOption,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until they are READY.")] = True,
    endpoint: EndpointOption = None,
) -> None:
    """Keep COUNT environments of a version or alias started and initialised (never reaped)."""
    client = make_client(ctx, endpoint)
    path = _provisioned_path(name)
    query = {"Qualifier": qualifier}
    config = client.request("PUT", path, query=query, json_body={"ProvisionedConcurrentExecutions": count}).json()
    if wait:
        deadline = time.monotonic() + PROVISION_WAIT_S
        with err.status(f"Starting {count} environment(s) for {name}:{qualifier}…"):
            while config.get("Status") == "IN_PROGRESS" and time.monotonic() < deadline:
                time.sleep(0.2)
                config = client.request("GET", path, query=query).json()
        if config.get("Status") == "FAILED":
            fail(f"Provisioned concurrency for {name}:{qualifier} FAILED: {config.get('StatusReason') or 'no reason'}")
    out.print(f"{name}:{qualifier}: {config.get('AvailableProvisionedConcurrentExecutions', 0)} of "
              f"{config.get('RequestedProvisionedConcurrentExecutions', count)} ready ({config.get('Status')})",
              markup=False)


@app.command("unprovision")
def unprovision(ctx: typer.Context, name: FunctionArg, qualifier: QualifierOption,
                endpoint: EndpointOption = None) -> None:
    """Remove a version's or alias's provisioned concurrency (its environments become ordinary ones)."""
    make_client(ctx, endpoint).request("DELETE", _provisioned_path(name), query={"Qualifier": qualifier})
    out.print(f"Removed the provisioned concurrency of {name}:{qualifier}", markup=False)
