"""`lamina microvm`: the flag-to-request helpers (the commands themselves run in tests/compat)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import typer
from rich.table import Table

from lamina.cli.microvm import hooks_config, idle_policy
from lamina.microvm import validation


def test_idle_policy_flags() -> None:
    assert idle_policy(None, None, None) is None
    assert idle_policy(900, None, None) == {"maxIdleDurationSeconds": 900, "suspendedDurationSeconds": 28800,
                                            "autoResumeEnabled": True}
    assert idle_policy(60, 0, False) == {"maxIdleDurationSeconds": 60, "suspendedDurationSeconds": 0,
                                         "autoResumeEnabled": False}
    with pytest.raises(typer.BadParameter):
        idle_policy(None, 10, None)
    with pytest.raises(typer.BadParameter):
        idle_policy(None, None, True)


def test_hook_flags_make_a_valid_hooks_structure() -> None:
    assert hooks_config([], None) is None
    hooks = hooks_config(["run", "ready", "terminate"], 9001)
    assert hooks == {"microvmHooks": {"run": "ENABLED", "terminate": "ENABLED"},
                     "microvmImageHooks": {"ready": "ENABLED"}, "port": 9001}
    engine_hooks = validation.hooks({"hooks": hooks})
    assert engine_hooks.enabled == {"run", "ready", "terminate"} and engine_hooks.port == 9001
    with pytest.raises(typer.BadParameter):
        hooks_config(["launch"], None)


def test_image_create_names_a_missing_directory_or_dockerfile(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from lamina.cli.main import app

    runner = CliRunner()
    # All fail before any request: the endpoint is never contacted.
    result = runner.invoke(app, ["microvm", "image", "create", str(tmp_path / "nothere")])
    assert result.exit_code == 1 and "is not a directory" in result.output, result.output
    (tmp_path / "empty").mkdir()
    result = runner.invoke(app, ["microvm", "image", "create", str(tmp_path / "empty")])
    assert result.exit_code == 1 and "has no Dockerfile at its root" in result.output, result.output
    # The default name is the directory's: one the API would refuse is caught before the upload.
    (tmp_path / "my app.v2").mkdir()
    (tmp_path / "my app.v2" / "Dockerfile").write_text("FROM lamina/base\n")
    result = runner.invoke(app, ["microvm", "image", "create", str(tmp_path / "my app.v2")])
    assert result.exit_code == 1 and "give one with --name" in result.output, result.output


def test_tables_keep_ids_whole_when_piped() -> None:
    # Off a terminal rich would squeeze a table into 80 columns and cut ids and endpoints with an ellipsis.
    from rich.console import Console

    from lamina.cli.tables import print_table

    buf = io.StringIO()
    table = Table("ID", "ENDPOINT", "STATE", box=None)
    mid = "mvm-" + "0" * 36
    table.add_row(mid, f"{mid}.lambda-microvm.us-east-1.localhost:8800", "RUNNING")
    print_table(Console(file=buf, width=80), table)
    row = buf.getvalue().splitlines()[1]
    assert mid in row and f"{mid}.lambda-microvm.us-east-1.localhost:8800" in row and "RUNNING" in row, buf.getvalue()
