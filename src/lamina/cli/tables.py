"""Printing tables that stay usable when piped: ids and endpoints are what users copy, so a table
going to a pipe or a file is printed at its natural width instead of being cut to 80 columns."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

NATURAL_WIDTH = 1000  # wider than any table we print; rows are only as wide as their cells


def print_table(console: Console, table: Table) -> None:
    if console.is_terminal:
        console.print(table)
        return
    wide = Console(file=console.file, width=NATURAL_WIDTH, highlight=False, color_system=None,
                   force_terminal=False)
    wide.print(table)
