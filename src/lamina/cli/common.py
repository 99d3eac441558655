"""What every `lamina` command module shares: the consoles, exit codes, the --endpoint option, the client."""

from __future__ import annotations

import sys
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.text import Text

from lamina.cli.client import Client
from lamina.config import default_endpoint

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

EXIT_ERROR = 1  # the server (or the function) said no
EXIT_USAGE = 2  # bad flags or settings, as click uses for usage errors
EXIT_UNREACHABLE = 3  # no server to talk to


# Accepted both before and after the command name. No envvar= here: default_endpoint() reads
# LAMINA_ENDPOINT, so a flag anywhere on the line beats the environment.
EndpointOption = Annotated[
    str | None,
    typer.Option(
        "--endpoint",
        help="Lamina server URL, or set LAMINA_ENDPOINT.",
        show_default="http://127.0.0.1:8800",
    ),
]


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    err.print(Text(message, style="red"), soft_wrap=True)
    raise typer.Exit(code)


def confirm(question: str, yes: bool) -> None:
    """Ask before something destructive unless --yes was given; without a terminal to ask on, say to pass --yes."""
    if yes:
        return
    if not sys.stdin.isatty():
        fail("Error: not a terminal, so cannot ask — pass --yes to confirm", EXIT_USAGE)
    typer.confirm(question, abort=True)


def make_client(ctx: typer.Context, endpoint: str | None) -> Client:
    """The command's own --endpoint wins over the global one, which wins over the default."""
    # The global option sits on the root context (a subcommand of `microvm image` is two levels down).
    chosen = endpoint or (ctx.find_root().obj or {}).get("endpoint") or default_endpoint()
    try:
        return Client(chosen)
    except ValueError as exc:
        fail(f"Error: {exc}", EXIT_USAGE)
