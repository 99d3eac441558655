"""`lamina tag ...`: a function's tags (ls, add, rm) over the Lambda API's TagResource / UntagResource / ListTags."""

from __future__ import annotations

import json
from typing import Annotated
from urllib.parse import quote

import typer
from rich.table import Table

from lamina.cli.client import Client
from lamina.cli.common import EndpointOption, make_client, out
from lamina.cli.tables import print_table

app = typer.Typer(name="tag", help="Tags: key=value labels on a function.", no_args_is_help=True)

FunctionArg = Annotated[str, typer.Argument(help="Function name or ARN.")]


def _tags_path(client: Client, name: str) -> str:
    """The tagging API names the function by its ARN, as on AWS."""
    arn = client.get_function_configuration(name)["FunctionArn"]
    return f"/2017-03-31/tags/{quote(arn, safe='')}"


def parse_tags(pairs: list[str]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="TAGS")
        tags[key] = value
    return tags


@app.command("ls")
def ls(ctx: typer.Context, name: FunctionArg,
       as_json: Annotated[bool, typer.Option("--json", help="Print the server's JSON.")] = False,
       endpoint: EndpointOption = None) -> None:
    """A function's tags."""
    client = make_client(ctx, endpoint)
    tags: dict[str, str] = client.request("GET", _tags_path(client, name)).json().get("Tags") or {}
    if as_json:
        out.print_json(json.dumps(tags))
        return
    table = Table("KEY", "VALUE", box=None, header_style="bold")
    for key in sorted(tags):
        table.add_row(key, tags[key])
    print_table(out, table)


@app.command("add")
def add(ctx: typer.Context, name: FunctionArg,
        tags: Annotated[list[str], typer.Argument(help="KEY=VALUE ... (an existing key gets the new value).")],
        endpoint: EndpointOption = None) -> None:
    """Tag a function."""
    body = {"Tags": parse_tags(tags)}
    client = make_client(ctx, endpoint)
    client.request("POST", _tags_path(client, name), json_body=body)
    out.print(f"Tagged {name}: {', '.join(f'{k}={v}' for k, v in body['Tags'].items())}", markup=False)


@app.command("rm")
def rm(ctx: typer.Context, name: FunctionArg,
       keys: Annotated[list[str], typer.Argument(help="Tag keys to remove.")],
       endpoint: EndpointOption = None) -> None:
    """Remove tags from a function (keys it does not have are ignored)."""
    client = make_client(ctx, endpoint)
    client.request("DELETE", _tags_path(client, name), query=[("tagKeys", key) for key in keys])
    out.print(f"Removed from {name}: {', '.join(keys)}", markup=False)
