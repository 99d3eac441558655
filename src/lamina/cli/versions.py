"""`lamina publish` / `lamina versions` (a function's published versions) and `lamina alias ...` (names that point
at a version, optionally splitting traffic with a second one), over the Lambda API's versions and aliases."""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.table import Table

from lamina.cli.client import Client
from lamina.cli.common import EndpointOption, make_client, out
from lamina.cli.tables import print_table

API = "/2015-03-31/functions"

JsonOption = Annotated[bool, typer.Option("--json", help="Print the server's JSON instead of a table.")]
FunctionArg = Annotated[str, typer.Argument(help="Function name or ARN.")]
AliasArg = Annotated[str, typer.Argument(help="Alias name.")]

alias_app = typer.Typer(name="alias", help="Aliases: a name for a version (and an optional traffic split).",
                        no_args_is_help=True)


def _fn(name: str, suffix: str = "") -> str:
    return f"{API}/{quote(name, safe='')}{suffix}"


def _print_json(data: Any) -> None:
    out.print_json(json.dumps(data))


def _pages(client: Client, path: str, key: str) -> list[dict[str, Any]]:
    """Every item of a Marker/NextMarker-paged Lambda list."""
    items: list[dict[str, Any]] = []
    marker: str | None = None
    while True:
        page = client.request("GET", path, query={"Marker": marker} if marker else None).json() or {}
        items += page.get(key) or []
        marker = page.get("NextMarker")
        if not marker:
            return items


def parse_weights(pairs: list[str]) -> dict[str, float]:
    """--weight VERSION=FRACTION (repeatable) as RoutingConfig.AdditionalVersionWeights."""
    weights: dict[str, float] = {}
    for pair in pairs:
        version, sep, fraction = pair.partition("=")
        try:
            value = float(fraction)
        except ValueError:
            value = -1.0
        if not sep or not version or not 0.0 <= value <= 1.0:
            raise typer.BadParameter(f"{pair!r} is not VERSION=FRACTION (e.g. 2=0.1: 10% of calls go to version 2)",
                                     param_hint="--weight")
        weights[version] = value
    return weights


def describe_routing(alias: dict[str, Any]) -> str:
    """"1" or "1 (90%), 2 (10%)"."""
    extra = (alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}
    if not extra:
        return str(alias.get("FunctionVersion", ""))
    main = 1.0 - sum(extra.values())
    parts = [(alias.get("FunctionVersion", ""), main)] + list(extra.items())
    return ", ".join(f"{version} ({share * 100:g}%)" for version, share in parts)


# -- versions -----------------------------------------------------------------------------------------------


def publish(
    ctx: typer.Context,
    name: FunctionArg,
    description: Annotated[str | None, typer.Option(help="The version's description.")] = None,
    endpoint: EndpointOption = None,
) -> None:
    """Publish the function's current code and configuration as a new numbered version; prints its number."""
    body: dict[str, Any] = {} if description is None else {"Description": description}
    version = make_client(ctx, endpoint).request("POST", _fn(name, "/versions"), json_body=body).json()
    # Just the number on stdout, so scripts can capture it: V=$(lamina publish NAME)
    out.print(version["Version"], markup=False)


def versions(ctx: typer.Context, name: FunctionArg, as_json: JsonOption = False,
             endpoint: EndpointOption = None) -> None:
    """List a function's versions ($LATEST and every published one)."""
    items = _pages(make_client(ctx, endpoint), _fn(name, "/versions"), "Versions")
    if as_json:
        _print_json(items)
        return
    table = Table("VERSION", "DESCRIPTION", "STATE", "CODE SHA256", "LAST MODIFIED", box=None, header_style="bold")
    for item in items:
        table.add_row(item.get("Version", ""), item.get("Description") or "", item.get("State") or "",
                      item.get("CodeSha256") or "", item.get("LastModified") or "")
    print_table(out, table)


def register(app: typer.Typer) -> None:
    """Add `publish` and `versions` to the top-level `lamina` command (daily verbs, like deploy and invoke)."""
    app.command("publish")(publish)
    app.command("versions")(versions)


# -- aliases ------------------------------------------------------------------------------------------------


def _print_alias(alias: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _print_json(alias)
        return
    out.print(f"{alias['Name']} -> {describe_routing(alias)}", markup=False, soft_wrap=True)
    out.print(f"  arn: {alias.get('AliasArn', '')}", markup=False, soft_wrap=True)


@alias_app.command("create")
def alias_create(
    ctx: typer.Context,
    name: FunctionArg,
    alias: AliasArg,
    version: Annotated[str, typer.Option("--version", "-v", help="The version it points at.")],
    weight: Annotated[list[str] | None, typer.Option(
        "--weight", help="VERSION=FRACTION: send that share of calls to a second version (e.g. 2=0.1).")] = None,
    description: Annotated[str | None, typer.Option(help="Free text.")] = None,
    as_json: JsonOption = False,
    endpoint: EndpointOption = None,
) -> None:
    """Create an alias: NAME:ALIAS then invokes VERSION (or splits calls by --weight)."""
    body: dict[str, Any] = {"Name": alias, "FunctionVersion": version}
    if weight:
        body["RoutingConfig"] = {"AdditionalVersionWeights": parse_weights(weight)}
    if description is not None:
        body["Description"] = description
    _print_alias(make_client(ctx, endpoint).request("POST", _fn(name, "/aliases"), json_body=body).json(), as_json)


@alias_app.command("update")
def alias_update(
    ctx: typer.Context,
    name: FunctionArg,
    alias: AliasArg,
    version: Annotated[str | None, typer.Option("--version", "-v", help="Point it at this version.")] = None,
    weight: Annotated[list[str] | None, typer.Option(
        "--weight", help="VERSION=FRACTION; replaces the split (e.g. 2=0.5).")] = None,
    no_weights: Annotated[bool, typer.Option("--no-weights", help="Remove the traffic split.")] = False,
    description: Annotated[str | None, typer.Option(help="Free text.")] = None,
    as_json: JsonOption = False,
    endpoint: EndpointOption = None,
) -> None:
    """Change where an alias points (shift traffic with --weight, finish with --version V --no-weights)."""
    if weight and no_weights:
        raise typer.BadParameter("give --weight or --no-weights, not both", param_hint="--no-weights")
    body: dict[str, Any] = {}
    if version is not None:
        body["FunctionVersion"] = version
    if weight:
        body["RoutingConfig"] = {"AdditionalVersionWeights": parse_weights(weight)}
    elif no_weights:
        body["RoutingConfig"] = {"AdditionalVersionWeights": {}}
    if description is not None:
        body["Description"] = description
    if not body:
        raise typer.BadParameter("nothing to change: give --version, --weight, --no-weights or --description")
    path = _fn(name, f"/aliases/{quote(alias, safe='')}")
    _print_alias(make_client(ctx, endpoint).request("PUT", path, json_body=body).json(), as_json)


@alias_app.command("get")
def alias_get(ctx: typer.Context, name: FunctionArg, alias: AliasArg, as_json: JsonOption = False,
              endpoint: EndpointOption = None) -> None:
    """Where an alias points."""
    path = _fn(name, f"/aliases/{quote(alias, safe='')}")
    _print_alias(make_client(ctx, endpoint).request("GET", path).json(), as_json)


@alias_app.command("ls")
def alias_ls(ctx: typer.Context, name: FunctionArg, as_json: JsonOption = False,
             endpoint: EndpointOption = None) -> None:
    """List a function's aliases."""
    items = _pages(make_client(ctx, endpoint), _fn(name, "/aliases"), "Aliases")
    if as_json:
        _print_json(items)
        return
    table = Table("ALIAS", "VERSION", "DESCRIPTION", box=None, header_style="bold")
    for item in items:
        table.add_row(item.get("Name", ""), describe_routing(item), item.get("Description") or "")
    print_table(out, table)


@alias_app.command("rm")
def alias_rm(ctx: typer.Context, name: FunctionArg, alias: AliasArg, endpoint: EndpointOption = None) -> None:
    """Delete an alias (its versions stay)."""
    make_client(ctx, endpoint).request("DELETE", _fn(name, f"/aliases/{quote(alias, safe='')}"))
    out.print(f"Deleted alias {name}:{alias}", markup=False)
