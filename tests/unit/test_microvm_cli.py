"""`lamina microvm`: the flag-to-request helpers (the commands themselves run in tests/compat)."""

from __future__ import annotations

import pytest
import typer

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
