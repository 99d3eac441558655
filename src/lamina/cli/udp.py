"""`lamina udp ...`: the UDP gateway's listeners (create, ls, get, rm) with their metrics."""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.table import Table
from rich.text import Text

from lamina.cli.client import Client, LaminaError
from lamina.cli.common import err, make_client, out
from lamina.cli.tables import print_table

app = typer.Typer(name="udp", help="The UDP gateway: listeners and their destinations.", no_args_is_help=True)
listener_app = typer.Typer(help="UDP listeners: a port whose packets go to functions or sinks.",
                           no_args_is_help=True)
app.add_typer(listener_app, name="listener")

API = "/lamina/v1/udp/listeners"

EndpointOption = Annotated[
    str | None,
    typer.Option("--endpoint", help="Lamina server URL, or set LAMINA_ENDPOINT.", show_default="http://127.0.0.1:8800"),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the server's JSON instead of a table.")]


def parse_destination(text: str) -> dict[str, Any]:
    """`function:NAME`, `function-async:NAME` (NAME may be name:qualifier or an ARN), `microvm:IMAGE` (a name or
    ARN) or `log`."""
    kind, _, target = text.partition(":")
    if kind == "log" and not target:
        return {"Type": "log"}
    if kind in ("function", "function-async") and target:
        return {"Type": kind, "Function": target}
    if kind == "microvm" and target:
        return {"Type": "microvm", "Image": target}
    raise typer.BadParameter(f"{text!r}: use function:NAME, function-async:NAME, microvm:IMAGE or log",
                             param_hint="--destination")


def _given(**options: Any) -> dict[str, Any]:
    """The options the command line set (those not None), in order."""
    return {k: v for k, v in options.items() if v is not None}


def build_request(*, port: int, host: str | None, name: str | None, destinations: list[str], allow: list[str],
                  batch_count: int | None, batch_timeout: float | None, batch_size_mb: float | None,
                  formatter: str | None, tenant_id: str | None, tenant_expression: str | None,
                  tenant_formatter: str | None, max_in_flight: int | None,
                  log_rate: int | None, microvm: dict[str, Any] | None = None) -> dict[str, Any]:
    """The POST body for `lamina udp listener create`; batching and tenancy flags apply to every function
    destination given (the API takes them per destination); `microvm` holds the microvm destinations' own
    Arguments (Port, MaxDuration, MaxIdle, MaxSuspended, AutoResume, Delivery; None values left out)."""
    if not destinations:
        raise typer.BadParameter("give at least one, e.g. --destination function:my-function",
                                 param_hint="--destination")
    dests = []
    for text in destinations:
        d = parse_destination(text)
        if formatter:
            d["Formatter"] = formatter
        if d["Type"] == "log":
            if log_rate is not None:
                d["Arguments"] = {"MaxLinesPerSecond": log_rate}
        else:
            batching = _given(Count=batch_count, TimeoutInSeconds=batch_timeout, SizeInMb=batch_size_mb)
            if batching:
                d["Batching"] = batching
            args = _given(TenantId=tenant_id, TenantIdExpression=tenant_expression, TenantIdFormatter=tenant_formatter)
            if d["Type"] == "microvm":
                args.update(_given(**(microvm or {})))
            if args:
                d["Arguments"] = args
            if max_in_flight is not None:
                d["MaxInFlightBatches"] = max_in_flight
        dests.append(d)
    body: dict[str, Any] = {"Port": port, "Destinations": dests}
    if host:
        body["Host"] = host
    if name:
        body["Name"] = name
    if allow:
        body["ClientRestrictions"] = {"Networks": list(allow)}
    return body


def _client(ctx: typer.Context, endpoint: str | None) -> Client:

    return make_client(ctx, endpoint)


def _out():

    return out


def _warn(message: str) -> None:

    err.print(message, markup=False, style="yellow")


def _dest_label(d: dict[str, Any]) -> str:
    if d.get("Type") == "microvm":
        return f"microvm:{d.get('Image')}"
    return d["Type"] if d.get("Type") == "log" else f"{d.get('Type')}:{d.get('Function')}"


def _dropped(listener: dict[str, Any]) -> int:
    m = listener.get("Metrics") or {}
    total = m.get("DroppedRestricted", 0) + m.get("DroppedSend", 0)
    for d in listener.get("Destinations") or []:
        dm = d.get("Metrics") or {}
        total += dm.get("DroppedOverload", 0) + dm.get("DroppedTenant", 0) + dm.get("DroppedFormat", 0)
        total += dm.get("DroppedHeld", 0) + dm.get("DroppedStart", 0) + dm.get("DroppedSuspended", 0)
    return total


def _errors(listener: dict[str, Any]) -> int:
    return sum((d.get("Metrics") or {}).get("Errors", 0) + (d.get("Metrics") or {}).get("Throttles", 0)
               for d in listener.get("Destinations") or [])


@listener_app.command("create")
def create(
    ctx: typer.Context,
    destination: Annotated[list[str], typer.Option("--destination", "-d", help="function:NAME, "
                                                   "function-async:NAME, microvm:IMAGE or log; repeat for "
                                                   "several.")],
    port: Annotated[int, typer.Option(min=0, max=65535, help="UDP port; 0 picks a free one.")] = 0,
    host: Annotated[str | None, typer.Option(help="Address to bind.", show_default="the server's address")] = None,
    name: Annotated[str | None, typer.Option(help="A name to refer to the listener by.")] = None,
    allow: Annotated[list[str] | None, typer.Option("--allow", help="Accept packets only from this CIDR "
                                                    "block (IPv4 or IPv6); repeat for several.")] = None,
    batch_count: Annotated[int | None, typer.Option(help="Invoke at this many packets.")] = None,
    batch_timeout: Annotated[float | None, typer.Option(help="Invoke this many seconds after a batch's first "
                                                        "packet (0: at once).")] = None,
    batch_size_mb: Annotated[float | None, typer.Option(help="Invoke at this many MiB of payload.")] = None,
    formatter: Annotated[str | None, typer.Option(help="Data encoding: base64, hex, ascii or utf8.",
                                                  show_default="base64")] = None,
    tenant_id: Annotated[str | None, typer.Option(help="Invoke with this tenant id (PER_TENANT functions).")] = None,
    tenant_expression: Annotated[str | None, typer.Option(help="BREX picking each packet's tenant id, e.g. "
                                                          "'[0:4]'.")] = None,
    tenant_formatter: Annotated[str | None, typer.Option(help="How the expression's bytes become the tenant id.",
                                                         show_default="utf8")] = None,
    max_in_flight: Annotated[int | None, typer.Option(help="Batches invoked at once before batches are "
                                                      "dropped.", show_default="32")] = None,
    log_rate: Annotated[int | None, typer.Option(help="log destination: lines per second.",
                                                 show_default="100")] = None,
    instance_port: Annotated[int | None, typer.Option(help="microvm destination: the instance's port its app "
                                                      "takes packets on.", show_default="8080")] = None,
    max_duration: Annotated[int | None, typer.Option(help="microvm destination: seconds an instance may live "
                                                     "(at most 28800).", show_default="28800")] = None,
    max_idle: Annotated[int | None, typer.Option(help="microvm destination: suspend an instance after this many "
                                                 "seconds without packets.", show_default="never")] = None,
    max_suspended: Annotated[int | None, typer.Option(help="microvm destination: terminate an instance "
                                                      "suspended this long.", show_default="max-duration")] = None,
    auto_resume: Annotated[bool | None, typer.Option("--auto-resume/--no-auto-resume", help="microvm destination: "
                                                     "a packet resumes a suspended instance.",
                                                     show_default="on")] = None,
    delivery: Annotated[str | None, typer.Option(help="microvm destination: udp (datagrams) or http (POSTs of "
                                                 "{\"Messages\": [...]}).", show_default="udp")] = None,
    as_json: JsonOption = False,
    endpoint: EndpointOption = None,
) -> None:
    """Create a listener: its packets go to the destinations, replies back to the senders."""
    body = build_request(port=port, host=host, name=name, destinations=destination, allow=allow or [],
                         batch_count=batch_count, batch_timeout=batch_timeout, batch_size_mb=batch_size_mb,
                         formatter=formatter, tenant_id=tenant_id, tenant_expression=tenant_expression,
                         tenant_formatter=tenant_formatter, max_in_flight=max_in_flight, log_rate=log_rate,
                         microvm={"Port": instance_port, "MaxDuration": max_duration, "MaxIdle": max_idle,
                                  "MaxSuspended": max_suspended, "AutoResume": auto_resume, "Delivery": delivery})
    client = _client(ctx, endpoint)
    listener = client.request("POST", API, json_body=body).json()
    out = _out()
    if as_json:
        out.print_json(json.dumps(listener))
        return
    dests = ", ".join(_dest_label(d) for d in listener.get("Destinations") or [])
    out.print(f"Created UDP listener {listener['Name']} ({listener['Id']}) on {listener['Endpoint']} -> {dests}",
              markup=False, soft_wrap=True)
    for warning in function_warnings(client, listener.get("Destinations") or []):
        _warn(f"Warning: {warning}")


def function_warnings(client: Client, destinations: list[dict]) -> list[str]:
    """What would make every invocation of a function destination fail: the server accepts these (the
    function may come or change later), but a typo would otherwise only show up as an error count."""
    warnings = []
    for d in destinations:
        target = d.get("Function")
        if d.get("Type") not in ("function", "function-async") or not target or target.startswith("arn:"):
            continue
        name, _, qualifier = target.partition(":")
        try:
            config = client.request("GET", f"/2015-03-31/functions/{quote(name, safe='')}",
                                    query={"Qualifier": qualifier} if qualifier else None).json()["Configuration"]
        except LaminaError as exc:
            if exc.status == 404:
                what = (f"function {name} has no version or alias {qualifier}" if qualifier else
                        f"function {name} does not exist (deploy it: lamina deploy DIR --name {name})")
                warnings.append(f"{what}; until it does, its packets are dropped and counted as errors.")
            continue
        per_tenant = (config.get("TenancyConfig") or {}).get("TenantIsolationMode") == "PER_TENANT"
        args = d.get("Arguments") or {}
        tenant = "TenantId" in args or "TenantIdExpression" in args
        if tenant and not per_tenant:
            warnings.append(f"function {name} is not PER_TENANT, so invocations with a tenant id fail: drop "
                            f"--tenant-id / --tenant-expression, or use a function created with TenancyConfig "
                            f"PER_TENANT.")
        elif per_tenant and not tenant:
            warnings.append(f"function {name} is PER_TENANT and needs a tenant id on every invocation: add "
                            f"--tenant-id or --tenant-expression.")
    return warnings


@listener_app.command("ls")
def list_listeners(ctx: typer.Context, as_json: JsonOption = False, endpoint: EndpointOption = None) -> None:
    """List listeners with their packet counts."""
    listeners = _client(ctx, endpoint).request("GET", API).json().get("Listeners") or []
    out = _out()
    if as_json:
        out.print_json(json.dumps(listeners))
        return
    if not listeners:
        out.print("No UDP listeners — create one with `lamina udp listener create --destination function:NAME`.",
                  markup=False)
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("Id", "Name", "Endpoint", "State", "Destinations", "In", "Out", "Dropped", "Errors"):
        # Ids, names and endpoints are what users copy: on a narrow terminal the other columns wrap.
        table.add_column(col, justify="right" if col in ("In", "Out", "Dropped", "Errors") else "left",
                         no_wrap=col in ("Id", "Name", "Endpoint"))
    for x in listeners:
        m = x.get("Metrics") or {}
        state = x.get("State", "")
        table.add_row(x["Id"], Text(x["Name"]), x.get("Endpoint", ""),
                      Text(state, style="green" if state == "Listening" else "red"),
                      Text(", ".join(_dest_label(d) for d in x.get("Destinations") or [])),
                      str(m.get("PacketsIn", 0)), str(m.get("PacketsOut", 0)), str(_dropped(x)), str(_errors(x)))
    print_table(out, table)


@listener_app.command("get")
def get(ctx: typer.Context, ref: Annotated[str, typer.Argument(help="Listener id or name.")],
        as_json: JsonOption = False, endpoint: EndpointOption = None) -> None:
    """Show one listener: its configuration and every metric."""
    x = _client(ctx, endpoint).request("GET", f"{API}/{quote(ref, safe='')}").json()
    out = _out()
    if as_json:
        out.print_json(json.dumps(x))
        return
    allowed = (x.get("ClientRestrictions") or {}).get("Networks") or ["everyone"]
    out.print(f"{x['Name']} ({x['Id']}) on {x.get('Endpoint', '')}: {x.get('State', '')}", markup=False)
    if x.get("StateReason"):
        out.print(f"  reason: {x['StateReason']}", markup=False, soft_wrap=True)
    out.print(f"  allowed clients: {', '.join(allowed)}", markup=False)
    out.print("  " + "  ".join(f"{k}={v}" for k, v in (x.get("Metrics") or {}).items()), markup=False, soft_wrap=True)
    for d in x.get("Destinations") or []:
        extra = {k: v for k, v in d.items() if k in ("Batching", "Formatter", "Arguments") and v}
        out.print(f"  destination {d['Name']}: {_dest_label(d)} {json.dumps(extra)}", markup=False, soft_wrap=True)
        metrics = "  ".join(f"{k}={v}" for k, v in (d.get("Metrics") or {}).items())
        if metrics:  # none while the listener is not bound
            out.print(f"    {metrics}", markup=False, soft_wrap=True)
        for tenant, microvm_id in (d.get("Instances") or {}).items():
            out.print(f"    tenant {tenant}: {microvm_id}", markup=False)


@listener_app.command("rm")
def rm(ctx: typer.Context, ref: Annotated[str, typer.Argument(help="Listener id or name.")],
       endpoint: EndpointOption = None) -> None:
    """Remove a listener; its port is free again when this returns."""
    _client(ctx, endpoint).request("DELETE", f"{API}/{quote(ref, safe='')}")
    _out().print(f"Removed UDP listener {ref}", markup=False)
