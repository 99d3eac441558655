"""`lamina events ...`: a function's asynchronous (Event) invocations waiting in the durable queue."""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.table import Table

from lamina.cli.client import Client
from lamina.cli.common import make_client, out
from lamina.cli.tables import print_table

app = typer.Typer(name="events", help="Async invocations waiting in the durable queue (ls); the EventBridge bus "
                  "(put, rules).", no_args_is_help=True)

EndpointOption = Annotated[
    str | None,
    typer.Option("--endpoint", help="Lamina server URL, or set LAMINA_ENDPOINT.", show_default="http://127.0.0.1:8800"),
]


def _client(ctx: typer.Context, endpoint: str | None) -> Client:
    return make_client(ctx, endpoint)


def _seconds(value: float) -> str:
    if value < 60:
        return f"{value:.1f}s"
    if value < 3600:
        return f"{value / 60:.1f}m"
    return f"{value / 3600:.1f}h"


@app.command("ls")
def list_events(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Function name.")],
    limit: Annotated[int, typer.Option(min=1, max=10000, help="Show at most this many (oldest first).")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="Print the server's JSON instead of a table.")] = False,
    endpoint: EndpointOption = None,
) -> None:
    """A function's pending async events: age, attempts, state and when the next attempt is due."""
    doc: dict[str, Any] = _client(ctx, endpoint).request(
        "GET", f"/lamina/v1/functions/{quote(name, safe='')}/events", query={"limit": str(limit)}).json()
    if as_json:
        out.print_json(json.dumps(doc))
        return
    table = Table("REQUEST ID", "VERSION", "AGE", "ATTEMPTS", "STATE", "NEXT ATTEMPT", "LAST ERROR",
                  box=None, header_style="bold")
    for e in doc["Events"]:
        table.add_row(e["RequestId"], e["Version"], _seconds(e["AgeSeconds"]), str(e["Attempts"]), e["State"],
                      "now" if e["State"] != "retrying" else f"in {_seconds(e['NextAttemptInSeconds'])}",
                      e.get("LastError") or "")
    print_table(out, table)
    q = doc["Queue"]
    oldest = q.get("oldest_age_seconds")
    out.print(f"{len(doc['Events'])} pending for {doc['FunctionName']}; whole queue: {q['depth']} event(s)"
              + (f", oldest {_seconds(oldest)}" if oldest is not None else "")
              + f"; redelivered after a stop: {q['redelivered']}", markup=False)
