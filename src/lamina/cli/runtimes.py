"""`lamina runtimes`: the language runtimes this host can run (each one's interpreter), and why the others cannot.

It looks at the host itself, as `lamina serve` does at start-up (sandbox/interpreters.py), with the same settings
(runtime_paths from flags' config file, LAMINA_RUNTIME_PATHS or lamina.toml), so it needs no running server.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from lamina.cli.common import EXIT_USAGE, fail, out
from lamina.cli.tables import print_table


def runtimes(
    config: Annotated[
        Path | None, typer.Option("--config", help="A lamina.toml settings file (LAMINA_CONFIG).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False,
) -> None:
    """List the runtimes this host can run (python3.X, nodejsN.x: each on an interpreter found here) and why the
    others are missing. provided.* runtimes need none: their package brings its own bootstrap."""
    from lamina.config import Settings
    from lamina.sandbox.interpreters import LANGUAGE_RUNTIMES, HostRuntimes, parse_runtime_paths

    try:
        configured = parse_runtime_paths(Settings.load(config_file=config).runtime_paths)
    except (OSError, ValueError) as exc:
        fail(f"Error: bad setting: {exc}", EXIT_USAGE)
    found = HostRuntimes.discover(configured)
    if as_json:
        out.print_json(json.dumps(found.as_dict()))
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("Runtime", "Version", "Source", "Interpreter or why it is missing"):
        table.add_column(col, overflow="fold")
    for runtime in LANGUAGE_RUNTIMES:
        interp = found.get(runtime)
        if interp is not None:
            table.add_row(Text(runtime, style="green"), interp.version, interp.source, Text(interp.executable))
        else:
            table.add_row(Text(runtime, style="red"), "-", "missing", Text(found.missing.get(runtime, "")))
    table.add_row(Text("provided.al2023", style="green"), "-", "-",
                  Text("no interpreter needed: the package's bootstrap runs (provided, provided.al2 too)"))
    print_table(out, table)
