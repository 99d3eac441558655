"""Isolation backends behind one interface (see base.py)."""

from __future__ import annotations

import os

from lamina.sandbox.base import Sandbox, SandboxBackend, SandboxError, SandboxSpec

__all__ = ["Sandbox", "SandboxBackend", "SandboxError", "SandboxSpec", "get_backend"]


def get_backend(name: str = "auto") -> SandboxBackend:
    """The backend for a setting: linux, process, or auto (linux when root and available)."""
    from lamina.sandbox.process import ProcessBackend

    if name == "process":
        return ProcessBackend()
    if name in ("auto", "linux"):
        try:
            from lamina.sandbox.linux import LinuxBackend  # type: ignore[import-not-found]
        except ImportError:
            if name == "linux":
                raise SandboxError("the linux sandbox backend is not available in this build") from None
            return ProcessBackend()
        if os.geteuid() == 0 or name == "linux":
            return LinuxBackend()
        return ProcessBackend()
    raise SandboxError(f"unknown sandbox backend {name!r}: use auto, linux or process")
