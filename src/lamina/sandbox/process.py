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
import sys
from pathlib import Path

from lamina.sandbox.base import ExitCallback, OutputCallback, Sandbox, SandboxBackend, SandboxError, SandboxSpec

RUNTIME_DIR = Path(__file__).resolve().parent.parent / "runtime"


class _Protocol(asyncio.SubprocessProtocol):
    def __init__(self, on_output: OutputCallback, on_exit: ExitCallback) -> None:
        self.on_output = on_output
        self.on_exit = on_exit
        self.transport: asyncio.SubprocessTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self.on_output(data)

    def process_exited(self) -> None:
        code = self.transport.get_returncode() if self.transport else -1
        self.on_exit(code if code is not None else -1)


class ProcessSandbox(Sandbox):
    def __init__(self, transport: asyncio.SubprocessTransport) -> None:
        self.transport = transport
        self.pid = transport.get_pid()

    def _signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    async def cleanup(self) -> None:
        # The group may hold processes the function started in the background.
        self._signal(signal.SIGKILL)
        self.transport.close()

    def max_memory_bytes(self) -> int | None:
        try:
            with open(f"/proc/{self.pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            return None
        return None


class ProcessBackend(SandboxBackend):
    name = "process"
    isolated = False

    def task_root(self, spec: SandboxSpec) -> str:
        return str(spec.code_dir)

    def runtime_dir(self) -> str:
        return str(RUNTIME_DIR)

    def python(self) -> str:
        # The base interpreter, not the venv's: the function must not see Lamina's packages.
        return getattr(sys, "_base_executable", None) or sys.executable

    async def start(self, spec: SandboxSpec, on_output: OutputCallback, on_exit: ExitCallback) -> Sandbox:
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.subprocess_exec(
                lambda: _Protocol(on_output, on_exit), *spec.argv,
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, env=spec.env, cwd=str(spec.code_dir),
                pass_fds=spec.pass_fds, start_new_session=True,
            )
        except OSError as exc:
            raise SandboxError(f"cannot start {spec.argv[0]}: {exc.strerror or exc}") from exc
        return ProcessSandbox(transport)
