"""The `process` backend: plain child processes, for hosts where Lamina is not root.

Nothing is isolated: the function runs as the server's user and sees the host's filesystem. The
server says so in its start-up banner and log. Each environment is its own session (process group),
so a function's own child processes are stopped with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from pathlib import Path

from lamina.sandbox.base import (
    ExitCallback,
    ExitProtocol,
    ForkedSandbox,
    Sandbox,
    SandboxBackend,
    SandboxError,
    SandboxSpec,
)

RUNTIME_DIR = Path(__file__).resolve().parent.parent / "runtime"


def _killpg(pid: int | None, sig: int) -> None:
    if pid:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)


def _vm_hwm(pid: int | None) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class _ProcessGroup:
    """A sandbox that is one session (process group) led by self.pid: signalled as a group, so the
    processes a function started in the background go with it."""

    pid: int | None

    def kill(self) -> None:
        _killpg(self.pid, signal.SIGKILL)

    def terminate(self) -> None:
        _killpg(self.pid, signal.SIGTERM)

    async def cleanup(self) -> None:
        _killpg(self.pid, signal.SIGKILL)

    def max_memory_bytes(self) -> int | None:
        return _vm_hwm(self.pid)


class ProcessSandbox(_ProcessGroup, Sandbox):
    def __init__(self, transport: asyncio.SubprocessTransport, api_socket: socket.socket | None = None) -> None:
        self.transport = transport
        self.pid = transport.get_pid()
        self.runtime_api_socket = api_socket

    async def cleanup(self) -> None:
        await super().cleanup()
        self.transport.close()


class ProcessForked(_ProcessGroup, ForkedSandbox):
    """A zygote's child: its own session, killed as a group by the pid the zygote reported."""


class ProcessBackend(SandboxBackend):
    name = "process"
    isolated = False

    def task_root(self, spec: SandboxSpec) -> str:
        return str(spec.code_dir)

    def opt_root(self, spec: SandboxSpec) -> str:
        # No mount namespace here: the layers stay where they were unpacked.
        return str(spec.opt_dir) if spec.opt_dir is not None else "/opt"

    def sdk_root(self, sdk_dir: Path) -> str:
        return str(sdk_dir)  # no mount namespace: where it is

    def runtime_dir(self) -> str:
        return str(RUNTIME_DIR)

    async def start(self, spec: SandboxSpec, on_exit: ExitCallback) -> Sandbox:
        loop = asyncio.get_running_loop()
        env = dict(spec.env)
        api_socket = None
        if spec.runtime_api:
            # No network namespace here: the server listens on a loopback port of its own.
            api_socket = socket.create_server(("127.0.0.1", 0))
            env["AWS_LAMBDA_RUNTIME_API"] = f"127.0.0.1:{api_socket.getsockname()[1]}"
        out = spec.log_fd if spec.log_fd is not None else asyncio.subprocess.DEVNULL
        try:
            transport, _ = await loop.subprocess_exec(
                lambda: ExitProtocol(on_exit), *spec.argv,
                stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out, env=env, cwd=str(spec.code_dir),
                pass_fds=spec.pass_fds, start_new_session=True,
            )
        except OSError as exc:
            if api_socket is not None:
                api_socket.close()
            raise SandboxError(f"cannot start {spec.argv[0]}: {exc.strerror or exc}") from exc
        # A zygote's forks set it themselves (runtime/zygote_server.py).
        if self.scheduling == "batch" and not spec.zygote:
            # Set from here, without a launcher of its own: what the child forks from now on inherits
            # it (a runtime forks nothing in the milliseconds before this).
            with contextlib.suppress(OSError):
                os.sched_setscheduler(transport.get_pid(), os.SCHED_BATCH, os.sched_param(0))
        return ProcessSandbox(transport, api_socket)

    def prepare_fork(self, spec: SandboxSpec) -> ForkedSandbox:
        return ProcessForked()
