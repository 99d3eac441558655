"""Isolation never degrades silently: a root server whose linux sandbox cannot be built refuses to start (instead of
falling back to the process backend), and another server's leftover cgroups never stop a new one: a live server's
subtree is left alone, a stale one that stays busy is skipped."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

import lamina.sandbox as sandbox
from lamina.sandbox.base import SandboxError
from lamina.sandbox.cgroups import TOP, CgroupLayout, CgroupTree


def test_root_auto_without_a_working_linux_sandbox_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    import lamina.sandbox.linux as linux

    def broken(self: object) -> None:
        raise OSError(errno.EBUSY, "Device or resource busy", "/sys/fs/cgroup/memory/lamina/123")

    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(linux.LinuxBackend, "__init__", broken)
    with pytest.raises(SandboxError) as info:
        sandbox.get_backend("auto")
    message = str(info.value)
    assert "refusing to start" in message and "--sandbox process" in message and "busy" in message
    with pytest.raises(SandboxError):
        sandbox.get_backend("linux")
    # Unisolated only when asked for.
    assert sandbox.get_backend("process").name == "process"


def test_a_busy_stale_subtree_is_skipped_and_a_live_one_left_alone(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    mount = tmp_path / "memory"
    live = mount / TOP / str(os.getppid())            # another server, still running
    stale = mount / TOP / "4194303"                     # a server pid that is not running (beyond pid_max)
    for path in (live / "sandbox-a", stale / "sandbox-b"):
        path.mkdir(parents=True)
    (stale / "sandbox-b" / "busy").write_text("")       # rmdir fails (ENOTEMPTY), as a busy cgroup does (EBUSY)
    tree = CgroupTree(CgroupLayout(mode="v1", v1={"memory": str(mount)}), instance=str(os.getpid()))
    assert tree.remove_stale() == 0                      # nothing removed, and no exception
    assert live.is_dir() and (live / "sandbox-a").is_dir()
    assert "not removed" in caplog.text and "4194303" in caplog.text


def test_serve_exits_with_the_reason(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import lamina.server as server
    from lamina.config import Settings

    def refuse(name: str, scheduling: str) -> None:
        raise SandboxError("refusing to start: the linux sandbox could not be set up (EBUSY). Fix that, or run with "
                           "--sandbox process")

    monkeypatch.setattr(server, "get_backend", refuse)
    with pytest.raises(SystemExit) as info:
        server.run(Settings(data_dir=tmp_path / "data"))
    assert "refusing to start" in str(info.value.code) and "--sandbox process" in str(info.value.code)
