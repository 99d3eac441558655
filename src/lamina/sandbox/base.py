"""The sandbox interface every isolation backend implements.

An environment asks a backend to start one process tree from a SandboxSpec. The backend decides
how isolated it is (namespaces, cgroups, seccomp for `linux`; nothing for `process`) and where the
code and runtime appear inside it; the caller learns those paths from the backend so the
environment variables it builds are right for the backend in use. A VM backend slots in here too.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass
class SandboxSpec:
    name: str                      # stable label for logs and cgroup names
    argv: list[str]                # as seen inside the sandbox
    env: dict[str, str]
    code_dir: Path                 # host path; appears read-only at backend.task_root
    memory_mb: int = 128
    ephemeral_mb: int = 512
    pass_fds: tuple[int, ...] = ()


OutputCallback = Callable[[bytes], None]
ExitCallback = Callable[[int], None]


class Sandbox(abc.ABC):
    """A started sandbox: one process tree whose stdout+stderr go to on_output."""

    pid: int

    @abc.abstractmethod
    def kill(self) -> None:
        """Stop everything in the sandbox at once (SIGKILL to the whole tree)."""

    @abc.abstractmethod
    def terminate(self) -> None:
        """Ask the sandbox's processes to stop (SIGTERM); kill() follows if they don't."""

    @abc.abstractmethod
    async def cleanup(self) -> None:
        """Release what the backend made for this sandbox, once its processes are gone."""

    def max_memory_bytes(self) -> int | None:
        """Peak memory of the whole sandbox, if the backend can tell."""
        return None


class SandboxBackend(abc.ABC):
    name: str = ""
    isolated: bool = False

    @abc.abstractmethod
    def task_root(self, spec: SandboxSpec) -> str:
        """Where the function's code appears inside the sandbox."""

    @abc.abstractmethod
    def runtime_dir(self) -> str:
        """Where Lamina's runtime files (lamina/runtime/) appear inside the sandbox."""

    @abc.abstractmethod
    def python(self) -> str:
        """The Python interpreter to run Python runtimes with, as seen inside the sandbox."""

    @abc.abstractmethod
    async def start(self, spec: SandboxSpec, on_output: OutputCallback, on_exit: ExitCallback) -> Sandbox:
        """Start spec.argv; on_output gets stdout+stderr bytes, on_exit the exit status once."""

    def describe(self) -> str:
        return f"{self.name} ({'isolated' if self.isolated else 'NOT isolated'})"


class SandboxError(Exception):
    """A sandbox could not be started."""
