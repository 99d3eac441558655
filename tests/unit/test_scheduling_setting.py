"""The sandbox scheduling setting: what is accepted, and what a bad value gets."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from lamina.cli.main import EXIT_USAGE, app
from lamina.config import Settings
from lamina.sandbox import SandboxError, get_backend


def test_batch_is_the_default():
    assert Settings().sandbox_scheduling == "batch"


@pytest.mark.parametrize("scheduling", ["batch", "normal"])
def test_backend_takes_the_policy(scheduling):
    assert get_backend("process", scheduling).scheduling == scheduling


def test_backend_refuses_an_unknown_policy():
    with pytest.raises(SandboxError, match="use batch or normal"):
        get_backend("process", "fifo")


def test_serve_refuses_an_unknown_policy_before_starting(tmp_path):
    result = CliRunner().invoke(app, ["serve", "--data-dir", str(tmp_path)],
                                env={"LAMINA_SANDBOX_SCHEDULING": "realtime"})
    assert result.exit_code == EXIT_USAGE, result.output
    assert "sandbox_scheduling='realtime' (choose batch or normal)" in result.output
    assert not (tmp_path / "lamina.db").exists()  # nothing started
