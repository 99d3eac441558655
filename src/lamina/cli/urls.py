"""`lamina url ...`: function URLs (create, get, ls, update, rm) over the Lambda API's function URL configs.

`create` and `get` print the URL alone on stdout, so `curl "$(lamina url get NAME)"` works.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.table import Table

from lamina.cli.common import EndpointOption, make_client, out
from lamina.cli.tables import print_table

API = "/2021-10-31/functions"

app = typer.Typer(name="url", help="Function URLs: an HTTP address that invokes a function.", no_args_is_help=True)

FunctionArg = Annotated[str, typer.Argument(help="Function name or ARN.")]
QualifierOption = Annotated[str | None, typer.Option("--qualifier", "-q", help="An alias (its own URL).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the server's JSON.")]


class AuthType(StrEnum):
    NONE = "NONE"
    AWS_IAM = "AWS_IAM"


def _url_path(name: str) -> str:
    return f"{API}/{quote(name, safe='')}/url"


def _query(qualifier: str | None) -> dict[str, str] | None:
    return {"Qualifier": qualifier} if qualifier else None


def cors_config(origins: list[str] | None, methods: list[str] | None, headers: list[str] | None,
                credentials: bool | None, max_age: int | None) -> dict[str, Any] | None:
    """The Cors structure from the flags, or None when no CORS flag was given."""
    cors: dict[str, Any] = {}
    for key, values in (("AllowOrigins", origins), ("AllowMethods", methods), ("AllowHeaders", headers)):
        if values:
            cors[key] = values
    if credentials is not None:
        cors["AllowCredentials"] = credentials
    if max_age is not None:
        cors["MaxAge"] = max_age
    return cors or None


def _show(config: dict[str, Any], as_json: bool) -> None:
    if as_json:
        out.print_json(json.dumps(config))
    else:
        out.print(config["FunctionUrl"], markup=False, soft_wrap=True)


CorsOrigin = Annotated[list[str] | None, typer.Option("--cors-origin", help="CORS: an allowed origin, or * "
                                                                           "(repeatable).")]
CorsMethod = Annotated[list[str] | None, typer.Option("--cors-method", help="CORS: an allowed method (repeatable).")]
CorsHeader = Annotated[list[str] | None, typer.Option("--cors-header", help="CORS: an allowed header (repeatable).")]
CorsCredentials = Annotated[bool | None, typer.Option("--cors-credentials/--no-cors-credentials",
                                                      help="CORS: allow credentials.")]
CorsMaxAge = Annotated[int | None, typer.Option("--cors-max-age", min=0, max=86400,
                                                help="CORS: seconds a preflight answer may be cached.")]


@app.command("create")
def create(
    ctx: typer.Context,
    name: FunctionArg,
    qualifier: QualifierOption = None,
    auth_type: Annotated[AuthType, typer.Option("--auth-type", help="NONE: anyone who can reach the server; "
                                                "AWS_IAM: refused (SigV4 is not verified yet).")] = AuthType.NONE,
    stream: Annotated[bool, typer.Option("--stream", help="InvokeMode RESPONSE_STREAM: pass a streaming "
                                         "function's response on as it comes.")] = False,
    cors_origin: CorsOrigin = None,
    cors_method: CorsMethod = None,
    cors_header: CorsHeader = None,
    cors_credentials: CorsCredentials = None,
    cors_max_age: CorsMaxAge = None,
    as_json: JsonOption = False,
    endpoint: EndpointOption = None,
) -> None:
    """Give a function (or one of its aliases) a URL; prints it."""
    body: dict[str, Any] = {"AuthType": auth_type.value, "InvokeMode": "RESPONSE_STREAM" if stream else "BUFFERED"}
    if (cors := cors_config(cors_origin, cors_method, cors_header, cors_credentials, cors_max_age)) is not None:
        body["Cors"] = cors
    config = make_client(ctx, endpoint).request("POST", _url_path(name), query=_query(qualifier),
                                                json_body=body).json()
    _show(config, as_json)


@app.command("get")
def get(ctx: typer.Context, name: FunctionArg, qualifier: QualifierOption = None, as_json: JsonOption = False,
        endpoint: EndpointOption = None) -> None:
    """Print a function's URL (--json: its whole configuration)."""
    _show(make_client(ctx, endpoint).request("GET", _url_path(name), query=_query(qualifier)).json(), as_json)


@app.command("update")
def update(
    ctx: typer.Context,
    name: FunctionArg,
    qualifier: QualifierOption = None,
    auth_type: Annotated[AuthType | None, typer.Option("--auth-type", help="NONE or AWS_IAM.")] = None,
    stream: Annotated[bool | None, typer.Option("--stream/--buffered", help="The invoke mode.")] = None,
    cors_origin: CorsOrigin = None,
    cors_method: CorsMethod = None,
    cors_header: CorsHeader = None,
    cors_credentials: CorsCredentials = None,
    cors_max_age: CorsMaxAge = None,
    no_cors: Annotated[bool, typer.Option("--no-cors", help="Remove the CORS settings.")] = False,
    as_json: JsonOption = False,
    endpoint: EndpointOption = None,
) -> None:
    """Change a URL's auth type, invoke mode or CORS settings (the URL itself stays)."""
    body: dict[str, Any] = {}
    if auth_type is not None:
        body["AuthType"] = auth_type.value
    if stream is not None:
        body["InvokeMode"] = "RESPONSE_STREAM" if stream else "BUFFERED"
    cors = cors_config(cors_origin, cors_method, cors_header, cors_credentials, cors_max_age)
    if cors is not None and no_cors:
        raise typer.BadParameter("give CORS flags or --no-cors, not both", param_hint="--no-cors")
    if cors is not None:
        body["Cors"] = cors
    elif no_cors:
        body["Cors"] = {}
    if not body:
        raise typer.BadParameter("nothing to change: give --auth-type, --stream/--buffered or CORS flags")
    config = make_client(ctx, endpoint).request("PUT", _url_path(name), query=_query(qualifier),
                                                json_body=body).json()
    _show(config, as_json)


@app.command("ls")
def ls(ctx: typer.Context, name: FunctionArg, as_json: JsonOption = False, endpoint: EndpointOption = None) -> None:
    """A function's URLs (its own and its aliases')."""
    client = make_client(ctx, endpoint)
    items: list[dict[str, Any]] = []
    marker: str | None = None
    while True:
        page = client.request("GET", f"{API}/{quote(name, safe='')}/urls",
                              query={"Marker": marker} if marker else None).json() or {}
        items += page.get("FunctionUrlConfigs") or []
        marker = page.get("NextMarker")
        if not marker:
            break
    if as_json:
        out.print_json(json.dumps(items))
        return
    table = Table("URL", "FOR", "AUTH", "MODE", box=None, header_style="bold")
    for item in items:
        arn = item.get("FunctionArn", "")
        # arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]
        target = ":".join(arn.split(":")[6:]) or arn
        table.add_row(item.get("FunctionUrl", ""), target, item.get("AuthType", ""), item.get("InvokeMode", ""))
    print_table(out, table)


@app.command("rm")
def rm(ctx: typer.Context, name: FunctionArg, qualifier: QualifierOption = None,
       endpoint: EndpointOption = None) -> None:
    """Delete a URL (the function stays)."""
    make_client(ctx, endpoint).request("DELETE", _url_path(name), query=_query(qualifier))
    out.print(f"Deleted the URL of {name}" + (f":{qualifier}" if qualifier else ""), markup=False)
