"""The `lamina` command: run a server, and deploy / invoke / inspect functions on one."""

from __future__ import annotations

import base64
import json
import os
import re
import sys
import time
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.text import Text

from lamina import __version__
from lamina.cli.client import Client, LaminaError, ServerUnreachable
from lamina.cli.common import (
    EXIT_ERROR,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    EndpointOption,
    confirm,
    err,
    fail,
    make_client,
    out,
)
from lamina.cli.packaging import PackagingError, guess_handler, zip_directory

app = typer.Typer(
    name="lamina",
    help="Lamina: the AWS Lambda API on your own host.",
    no_args_is_help=True,
    add_completion=False,
    # Locals would include whole zip archives and payloads; the traceback alone is enough.
    pretty_exceptions_show_locals=False,
)

# The host's own Python: what the process sandbox runs a function with.
DEFAULT_RUNTIME = f"python{sys.version_info[0]}.{sys.version_info[1]}"
POLL_INTERVAL = 0.2
DEPLOY_WAIT_SECONDS = 300.0


class SandboxKind(StrEnum):
    auto = "auto"
    linux = "linux"
    process = "process"


class LogLevel(StrEnum):
    critical = "critical"
    error = "error"
    warning = "warning"
    info = "info"
    debug = "debug"
    trace = "trace"


@app.callback()
def _global(ctx: typer.Context, endpoint: EndpointOption = None) -> None:
    ctx.obj = {"endpoint": endpoint}


# -- serve -------------------------------------------------------------------------------------------


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on.", show_default="127.0.0.1")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Port.", show_default="8800")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Where functions, code and logs are kept.")] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="A lamina.toml settings file (LAMINA_CONFIG).")
    ] = None,
    sandbox: Annotated[SandboxKind | None, typer.Option(help="Sandbox backend.", show_default="auto")] = None,
    log_level: Annotated[LogLevel | None, typer.Option(show_default="info")] = None,
    example: Annotated[bool, typer.Option("--example", help="Deploy the example function 'hello' if absent.")] = False,
) -> None:
    """Run a Lamina server in the foreground (flags > LAMINA_* > lamina.toml > defaults)."""
    from lamina.config import Settings

    try:
        settings = Settings.load(
            config_file=config,
            host=host,
            port=port,
            data_dir=data_dir,
            sandbox=sandbox.value if sandbox else None,
            log_level=log_level.value if log_level else None,
            example=example or None,
        )
    except (OSError, ValueError) as exc:  # unreadable/invalid TOML, unknown keys, non-numeric ports
        fail(f"Error: bad setting: {exc}", EXIT_USAGE)
    # Values from the environment or a file bypass the flag choices above, so check them here.
    if settings.sandbox not in {k.value for k in SandboxKind}:
        fail(f"Error: bad setting: sandbox={settings.sandbox!r} (choose auto, linux or process)", EXIT_USAGE)
    from lamina.sandbox.base import SCHEDULING

    if settings.sandbox_scheduling not in SCHEDULING:
        fail(f"Error: bad setting: sandbox_scheduling={settings.sandbox_scheduling!r} (choose batch or normal)",
             EXIT_USAGE)
    if not 0 < settings.port < 65536:
        fail(f"Error: bad setting: port={settings.port} (choose 1-65535)", EXIT_USAGE)

    # Imported here so client commands never pay for the server's dependencies.
    from lamina.server import run

    run(settings)


# -- deploy ------------------------------------------------------------------------------------------


def parse_env(pairs: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--env")
        env[key] = value
    return env


def human_size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / (1024 * 1024):.1f} MiB"


def wait_until_ready(client: Client, name: str, what: str, judge: bool = True) -> dict[str, Any]:
    """Poll like boto3's function_active_v2 / function_updated_v2 waiters, but faster.

    With judge=False only wait for the update in progress to finish, whatever its outcome.
    """
    deadline = time.monotonic() + DEPLOY_WAIT_SECONDS
    with err.status(f"{what} [bold]{escape(name)}[/]…"):
        while True:
            cfg = client.get_function_configuration(name)
            state, update = cfg.get("State"), cfg.get("LastUpdateStatus")
            if not judge and update != "InProgress":
                return cfg
            # The update's outcome first: a function whose creation Failed keeps State=Failed
            # until a later update succeeds, so State alone would fail a fixing redeploy.
            if update == "Failed":
                fail(f"Deploy of {name} failed: {cfg.get('LastUpdateStatusReason') or 'no reason given'}")
            if update != "InProgress":
                if state == "Failed":
                    fail(f"Deploy of {name} failed: {cfg.get('StateReason') or 'no reason given'}")
                if state in (None, "Active"):
                    return cfg
            if time.monotonic() > deadline:
                fail(
                    f"Gave up after {DEPLOY_WAIT_SECONDS:.0f} s: {name} is still "
                    f"State={state}, LastUpdateStatus={update}"
                )
            time.sleep(POLL_INTERVAL)


@app.command()
def deploy(
    ctx: typer.Context,
    directory: Annotated[
        Path | None, typer.Argument(exists=True, file_okay=False, dir_okay=True, help="Directory with the code.")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", "-n", help="Function name.")] = None,
    handler: Annotated[
        str | None,
        typer.Option(help="MODULE.FUNCTION.", show_default="guessed from lambda_function.py, app.py or main.py"),
    ] = None,
    runtime: Annotated[str | None, typer.Option(show_default=DEFAULT_RUNTIME)] = None,
    memory: Annotated[int | None, typer.Option(min=128, max=32768, help="Memory size in MB.")] = None,
    timeout: Annotated[int | None, typer.Option(min=1, max=900, help="Timeout in seconds.")] = None,
    env: Annotated[
        list[str] | None,
        typer.Option("--env", "-e", help="KEY=VALUE, repeatable; on update replaces all variables."),
    ] = None,
    description: Annotated[str | None, typer.Option(help="Free text.")] = None,
    template: Annotated[
        Path | None,
        typer.Option("--template", "-t", exists=True, dir_okay=False, help="An AWS SAM template to deploy as a stack."),
    ] = None,
    stack_name: Annotated[str | None, typer.Option(help="The stack that owns what --template creates.")] = None,
    parameter: Annotated[
        list[str] | None, typer.Option("--parameter", "-p", help="KEY=VALUE for a template parameter, repeatable.")
    ] = None,
    delete_stack: Annotated[bool, typer.Option("--delete", help="Remove everything the stack created.")] = False,
    region: Annotated[str, typer.Option(help="Region for the template's ARNs.")] = "us-east-1",
    endpoint: EndpointOption = None,
) -> None:
    """Create a function from DIR, or update its code (and any given settings) if it exists; or, with --template,
    deploy an AWS SAM template as a stack (--delete removes it)."""
    client = make_client(ctx, endpoint)
    if template is not None or delete_stack:
        if not stack_name:
            fail("Error: --stack-name is required with --template and --delete", EXIT_USAGE)
        from lamina.cli import template_deploy  # aws-sam-translator and boto3 load only for templates

        template_deploy.run(template, stack_name, parameter or [], delete_stack, client.endpoint, region)
        return
    if directory is None or not name:
        fail("Error: give DIR and --name (or --template TEMPLATE --stack-name NAME)", EXIT_USAGE)
    variables = parse_env(env) if env else None
    try:
        zip_bytes = zip_directory(directory)
    except PackagingError as exc:
        fail(f"Error: {exc}", EXIT_USAGE)

    config: dict[str, Any] = {}
    if handler:
        config["Handler"] = handler
    if runtime:
        config["Runtime"] = runtime
    if memory is not None:
        config["MemorySize"] = memory
    if timeout is not None:
        config["Timeout"] = timeout
    if variables is not None:
        config["Environment"] = {"Variables": variables}
    if description is not None:
        config["Description"] = description

    if client.get_function(name) is None:
        try:
            # Only a new function needs a guess; an existing one keeps its handler unless told.
            config.setdefault("Handler", guess_handler(directory))
        except PackagingError as exc:
            fail(f"Error: {exc}", EXIT_USAGE)
        config.setdefault("Runtime", DEFAULT_RUNTIME)
        with err.status(f"Creating [bold]{escape(name)}[/] ({human_size(len(zip_bytes))})…"):
            client.create_function({"FunctionName": name, **config}, zip_bytes)
        action = "Created"
    else:
        with err.status(f"Uploading code for [bold]{escape(name)}[/] ({human_size(len(zip_bytes))})…"):
            client.update_function_code(name, zip_bytes)
        if config:
            # Updating configuration while the code update is InProgress is a 409 conflict. Its
            # outcome does not matter: the new code may only work with the new configuration.
            wait_until_ready(client, name, "Updating code of", judge=False)
            client.update_function_configuration(name, config)
        action = "Updated"
    cfg = wait_until_ready(client, name, "Waiting for")

    out.print(f"[green]✓[/] {action} [bold]{escape(name)}[/]")
    for label, value in (
        ("runtime", cfg.get("Runtime")),
        ("handler", cfg.get("Handler")),
        ("code size", human_size(int(cfg.get("CodeSize") or len(zip_bytes)))),
        ("sha256", cfg.get("CodeSha256")),
    ):
        out.print(f"  {label:<10} {value}", markup=False)
    out.print(f"  invoke it: [bold]lamina invoke {escape(name)}[/]")


# -- invoke ------------------------------------------------------------------------------------------


def read_payload(payload: str) -> bytes:
    """--payload as given, or from a file with @path (@- for stdin); must be JSON."""
    if payload.startswith("@"):
        source = payload[1:]
        try:
            data = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
        except OSError as exc:
            msg = f"cannot read {source}: {exc.strerror}"
            raise typer.BadParameter(msg, param_hint="--payload") from None
    else:
        data = payload.encode()
    try:
        json.loads(data)
    except ValueError as exc:
        raise typer.BadParameter(f"not valid JSON: {exc}", param_hint="--payload") from None
    return data


def write_payload(data: bytes) -> None:
    """Pretty JSON for people, the exact bytes (and a newline) for pipes."""
    if out.is_terminal:
        try:
            out.print_json(data.decode())
            return
        except ValueError:  # includes UnicodeDecodeError
            pass
    # Newline-terminated for pipes too (a shell prompt or `wc -l` would otherwise join the next line); JSON
    # readers ignore it.
    sys.stdout.buffer.write(data + (b"" if data.endswith(b"\n") else b"\n"))
    sys.stdout.flush()


@app.command()
def invoke(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Function name or ARN.")],
    payload: Annotated[str, typer.Option("--payload", "-p", help="JSON event, or @file.json.")] = "{}",
    asynchronous: Annotated[bool, typer.Option("--async", help="Queue the event; do not wait.")] = False,
    qualifier: Annotated[str | None, typer.Option(help="Version or alias.")] = None,
    log: Annotated[bool, typer.Option("--log", help="Show the invocation's log tail on stderr.")] = False,
    endpoint: EndpointOption = None,
) -> None:
    """Invoke a function and print its result."""
    client = make_client(ctx, endpoint)
    body = read_payload(payload)
    resp = client.invoke(name, body, asynchronous=asynchronous, tail_log=log, qualifier=qualifier)
    if asynchronous:
        out.print(f"Accepted ({resp.status}), request id {resp.headers.get('x-amzn-RequestId', '?')}")
        return
    if log and (tail := resp.headers.get("X-Amz-Log-Result")):
        log_text = base64.b64decode(tail).decode("utf-8", "replace").rstrip("\n")
        err.print(Text(log_text, style="dim"), soft_wrap=True)
    write_payload(resp.body)
    if kind := resp.headers.get("X-Amz-Function-Error"):
        try:
            info = json.loads(resp.body)
        except ValueError:
            info = None
        info = info if isinstance(info, dict) else {}
        message = info.get("errorMessage")
        fail(f"Function error: {info.get('errorType') or kind}" + (f": {message}" if message else ""))


# -- logs --------------------------------------------------------------------------------------------

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(value: str) -> int:
    """'10m', '1h', '30s', '2d' ago, or an ISO-8601 time (local if no zone) → epoch milliseconds."""
    if m := _DURATION.match(value.strip()):
        start = datetime.now().astimezone() - timedelta(seconds=float(m.group(1)) * _UNIT_SECONDS[m.group(2)])
    else:
        try:
            start = datetime.fromisoformat(value.strip())
        except ValueError:
            raise typer.BadParameter(
                f"{value!r}: use e.g. 30s, 10m, 1h, 2d or 2024-05-01T12:00:00", param_hint="--since"
            ) from None
        if start.tzinfo is None:
            start = start.astimezone()  # naive means local time, as people type it
    return int(start.timestamp() * 1000)


def format_event(event: dict[str, Any]) -> Text:
    ts = event.get("timestamp")
    try:
        stamp = datetime.fromtimestamp(float(ts) / 1000).strftime("%H:%M:%S.%f")[:-3]  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError, OSError):
        stamp = " " * 12
    return Text.assemble((stamp, "dim"), " ", str(event.get("message", "")).rstrip("\n"))


@app.command()
def logs(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Function name.")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until Ctrl-C.")] = False,
    since: Annotated[str, typer.Option(help="How far back: 30s, 10m, 1h, 2d or an ISO time.")] = "10m",
    endpoint: EndpointOption = None,
) -> None:
    """Print a function's log lines."""
    client = make_client(ctx, endpoint)
    start = parse_since(since)
    try:
        for event in client.iter_logs(name, start, follow=follow):
            out.print(format_event(event), soft_wrap=True)
    except KeyboardInterrupt:
        return  # the normal way to stop following
    if follow:  # only the server ends a follow stream, e.g. when it shuts down
        err.print("The server closed the log stream.", style="dim")


# -- ls / rm / version -------------------------------------------------------------------------------


def format_modified(value: str | None) -> str:
    """AWS's '2024-05-01T12:00:00.000+0000' as local 'YYYY-MM-DD HH:MM:SS'."""
    if not value:
        return ""
    for fmt in ("%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z"):
        try:
            return datetime.strptime(value, fmt).astimezone().strftime("%Y-%m-%d %H:%M:%S")
        except ValueError:
            continue
    return value


@app.command("ls")
def list_functions(ctx: typer.Context, endpoint: EndpointOption = None) -> None:
    """List functions."""
    from rich.table import Table

    client = make_client(ctx, endpoint)
    functions = list(client.list_functions())
    if not functions:
        out.print("No functions yet — deploy one with `lamina deploy DIR --name NAME`.", markup=False)
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("Name", "Runtime", "Handler", "Memory", "Timeout", "State", "Last modified"):
        table.add_column(col, justify="right" if col in ("Memory", "Timeout") else "left")
    for fn in sorted(functions, key=lambda f: f.get("FunctionName", "")):
        state = fn.get("State") or ""
        color = {"Active": "green", "Failed": "red", "Pending": "yellow"}.get(state, "")
        table.add_row(
            Text(fn.get("FunctionName", "")),
            Text(fn.get("Runtime") or ""),
            Text(fn.get("Handler") or ""),
            f"{fn['MemorySize']} MB" if fn.get("MemorySize") else "",
            f"{fn['Timeout']} s" if fn.get("Timeout") else "",
            Text(state, style=color),
            format_modified(fn.get("LastModified")),
        )
    out.print(table)


@app.command()
def rm(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Function name.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    endpoint: EndpointOption = None,
) -> None:
    """Delete a function."""
    client = make_client(ctx, endpoint)
    confirm(f"Delete function {name}?", yes)
    client.delete_function(name)
    out.print(f"Deleted {name}", markup=False)


@app.command()
def version() -> None:
    """Print Lamina's version."""
    out.print(f"lamina {__version__}", markup=False)


def main() -> None:
    """Console-script entry point: run the app and map errors to messages and exit codes."""
    try:
        app()
    except ServerUnreachable as exc:
        err.print(Text(exc.message, style="red"), soft_wrap=True)
        sys.exit(EXIT_UNREACHABLE)
    except LaminaError as exc:
        err.print(Text(f"Error: {exc.code}: {exc.message}", style="red"), soft_wrap=True)
        sys.exit(EXIT_ERROR)
    except BrokenPipeError:
        # `lamina logs f | head`: the reader left; say nothing, as other Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(EXIT_ERROR)


# `lamina udp ...` lives in its own module (it imports this one's helpers when a command runs).
from lamina.cli.udp import app as _udp_app  # noqa: E402

app.add_typer(_udp_app, name="udp")

# `lamina microvm ...` likewise (cli/microvm.py).
from lamina.cli.microvm import app as _microvm_app  # noqa: E402

app.add_typer(_microvm_app, name="microvm")

# `lamina events ...` likewise (cli/events.py).
from lamina.cli.events import app as _events_app  # noqa: E402

app.add_typer(_events_app, name="events")

# `lamina schedule ...`, and `lamina events put|rules` beside `events ls` (cli/schedules.py).
from lamina.cli import schedules as _schedules  # noqa: E402

app.add_typer(_schedules.schedule_app, name="schedule")
_events_app.command("put")(_schedules.events_put)
_events_app.command("rules")(_schedules.events_rules)

# `lamina queue ...` and `lamina esm ...` (cli/queues.py).
from lamina.cli.queues import esm_app as _esm_app  # noqa: E402
from lamina.cli.queues import queue_app as _queue_app  # noqa: E402

app.add_typer(_queue_app, name="queue")
app.add_typer(_esm_app, name="esm")

# `lamina runtimes` (cli/runtimes.py).
from lamina.cli.runtimes import runtimes as _runtimes  # noqa: E402

app.command("runtimes")(_runtimes)

# Versions, aliases, function URLs, concurrency and tags (cli/versions.py, urls.py, concurrency.py, tags.py).
from lamina.cli import versions as _versions  # noqa: E402
from lamina.cli.concurrency import app as _concurrency_app  # noqa: E402
from lamina.cli.tags import app as _tag_app  # noqa: E402
from lamina.cli.urls import app as _url_app  # noqa: E402

_versions.register(app)
app.add_typer(_versions.alias_app, name="alias")
app.add_typer(_url_app, name="url")
app.add_typer(_concurrency_app, name="concurrency")
app.add_typer(_tag_app, name="tag")
