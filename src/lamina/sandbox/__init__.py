"""Isolation backends behind one interface (see base.py)."""

from __future__ import annotations

import logging
import os
import sys

from lamina.sandbox.base import SCHEDULING, Sandbox, SandboxBackend, SandboxError, SandboxSpec

log = logging.getLogger("lamina.sandbox")

__all__ = ["Sandbox", "SandboxBackend", "SandboxError", "SandboxSpec", "get_backend"]


def get_backend(name: str = "auto", scheduling: str = "normal") -> SandboxBackend:
    """The backend for a setting: linux, process, or auto (linux when root and available); `scheduling`
    is the CPU policy of the sandboxes it starts (batch or normal)."""
    if scheduling not in SCHEDULING:
        raise SandboxError(f"unknown sandbox scheduling {scheduling!r}: use batch or normal")
    backend = _backend(name)
    backend.scheduling = scheduling
    return backend


def _backend(name: str) -> SandboxBackend:
    from lamina.sandbox.process import ProcessBackend

    if name == "process":
        return ProcessBackend()
    if name == "linux" or (name == "auto" and os.geteuid() == 0 and sys.platform == "linux"):
        try:
            from lamina.sandbox.linux import LinuxBackend

            return LinuxBackend()
        except (ImportError, OSError, SandboxError) as exc:
            if name == "linux":
                raise SandboxError(f"the linux sandbox is not available here: {exc}") from exc
            # Root asked for the default: isolation is expected, so its failure stops the server rather than
            # running every function unisolated behind a log line.
            raise SandboxError(f"refusing to start: the linux sandbox could not be set up ({exc}). Fix that, or "
                               "run with --sandbox process (LAMINA_SANDBOX=process) to run functions without "
                               "isolation knowingly.") from exc
    if name == "auto":
        return ProcessBackend()
    raise SandboxError(f"unknown sandbox backend {name!r}: use auto, linux or process")
