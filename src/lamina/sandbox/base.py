"""The sandbox interface every isolation backend implements.

An environment asks a backend to start one process tree from a SandboxSpec. The backend decides
how isolated it is (namespaces, cgroups, seccomp for `linux`; nothing for `process`) and where the
code and runtime appear inside it; the caller learns those paths from the backend so the
environment variables it builds are right for the backend in use. A VM backend slots in here too.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from lamina.sandbox.interpreters import Interpreter


@dataclass
class SandboxSpec:
    name: str                      # stable label for logs and cgroup names
    argv: list[str]                # as seen inside the sandbox
    env: dict[str, str]
    code_dir: Path                 # host path; appears read-only at backend.task_root
    opt_dir: Path | None = None    # host path of the function's layers; appears read-only at backend.opt_root
    memory_mb: int = 128
    ephemeral_mb: int = 512
    pass_fds: tuple[int, ...] = ()
    log_fd: int | None = None      # stdout and stderr go here (the write end of the environment's log pipe)
    zygote: bool = False           # a Python zygote: keeps what it needs to give each fork its own sandbox
    runtime_api: bool = False      # the Runtime API: the backend sets AWS_LAMBDA_RUNTIME_API and hands over
                                   # a listening socket (Sandbox.runtime_api_socket) for the server to serve
    network_handle: bool = False   # the server will connect to servers listening inside the sandbox
    # The network a launched sandbox joins (FunctionSpec.network: "outbound" or a VPC pair's key; backend.networks
    # has a pre-wired namespace for it); None or "none": a loopback of its own.
    network: str | None = None
                                   # (Sandbox.connect_tcp): a backend with a private network hands over its handle
    # A MicroVM sandbox (lamina/microvm/): its root is built from a mount plan instead of the function
    # layout. Keys: mounts, cwd, user ([uid, gid]), share_net, hostname, nofile. argv[0] is looked up
    # in env's PATH inside that root.
    layered: dict | None = None
    cpu_vcpus: float | None = None  # CPU quota; None: proportional to memory_mb (Lambda's ratio)
    pids_max: int = 1024
    guard_host: bool = False       # with layered["share_net"]: no connections to the host's own addresses
    # The function's language runtime (python3.12, nodejs22.x): the backend makes it visible, with its usual names
    # in /var/lang/bin as on AWS (linux), or leaves it where it is (process). argv[0] may be lang.executable.
    lang: Interpreter | None = None
    # The AWS SDKs Lamina ships (python/, nodejs/node_modules): host path, shown read-only at backend.sdk_root.
    sdk_dir: Path | None = None
    # Init runs with the host's CPUs (as a zygote's does: Lambda too is generous with CPU during init); end_init()
    # then holds the sandbox to cpu_vcpus (or its memory's share).
    init_boost: bool = False


ExitCallback = Callable[[int], None]


class NetnsPool(Protocol):
    """Pre-wired network namespaces for one zygote's forks (lamina/net/ keeps them)."""

    async def take(self) -> int:
        """A namespace's fd; the caller closes it once a fork has it."""
        ...

    def close(self) -> None: ...


class EnvNetworks(Protocol):
    """Where sandboxes get their networks (lamina/net/ provides it; the server sets SandboxBackend.networks).
    `network`: FunctionSpec.network ("none", "outbound" or a VPC pair's key)."""

    def zygote_pool(self, network: str, maker: socket.socket) -> NetnsPool | None:
        """A pool for a zygote whose namespace maker is at the other end of `maker` (None: no network)."""
        ...

    async def host_netns(self, network: str) -> int | None:
        """A pre-wired namespace a launched sandbox joins (None: no network)."""
        ...

# An isolated backend maps in-sandbox uids and gids 0..65535 to host ids UID_BASE.. (a user namespace;
# owned by nobody on the host): a file the sandbox's root should own is owned by UID_BASE on the host.
UID_BASE = 200_000_000


class ExitProtocol(asyncio.SubprocessProtocol):
    """Reports a sandbox's main process's exit status to its ExitCallback, once (-1 if unknown)."""

    def __init__(self, on_exit: ExitCallback) -> None:
        self.on_exit = on_exit
        self.transport: asyncio.SubprocessTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def process_exited(self) -> None:
        code = self.transport.get_returncode() if self.transport else -1
        self.on_exit(code if code is not None else -1)


class Sandbox(abc.ABC):
    """A started sandbox: one process tree."""

    pid: int | None = None
    runtime_api_socket: socket.socket | None = None
    netns_fd: int | None = None    # the sandbox's network namespace, when it has one of its own

    async def connect_tcp(self, port: int, timeout: float = 2.0) -> socket.socket:
        """A connected, non-blocking TCP socket to 127.0.0.1:port as the sandbox sees its loopback.

        Without a network of its own (the process backend) that is the host's loopback."""
        sock = await self._tcp_socket()
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            async with asyncio.timeout(timeout):
                await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        except BaseException:
            sock.close()
            raise
        return sock

    async def _tcp_socket(self) -> socket.socket:
        return socket.socket(socket.AF_INET, socket.SOCK_STREAM)

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

    def oom_killed(self) -> bool:
        """Whether the kernel's OOM killer struck inside the sandbox (memory limit reached)."""
        return False

    def freeze(self) -> bool:
        """Stop every process of the sandbox until thaw() (the cgroup freezer); False if unsupported."""
        return False

    def thaw(self) -> None:  # noqa: B027 - nothing to do where freeze() is unsupported
        """Let a frozen sandbox run again."""

    def confined(self) -> bool:
        """Whether the environment really joined what the backend prepared for it. The zygote that
        forked it has run the function's init code, so the server checks instead of trusting it."""
        return True

    def end_init(self) -> None:  # noqa: B027 - nothing to do without an init boost
        """The runtime is initialised: a sandbox started with init_boost gets its own CPU share from now on."""

    def settle(self, memory_mb: int, max_forks: int) -> None:  # noqa: B027 - optional hook
        """A zygote finished its init: set the limits it keeps while it forks environments."""


class ForkedSandbox(Sandbox):
    """An environment a zygote forks: the backend prepares it, the zygote makes the process.

    `fds` go to the zygote with the fork request (e.g. cgroup.procs files the child joins itself);
    `bind(pid)` tells it the pid the zygote reported.
    """

    fds: tuple[int, ...] = ()

    def bind(self, pid: int) -> None:
        self.pid = pid


    def close_fds(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.fds = ()


SCHEDULING = ("batch", "normal")


class SandboxBackend(abc.ABC):
    name: str = ""
    isolated: bool = False
    # Each sandbox has a loopback of its own, so servers in different sandboxes may use the same port.
    private_network: bool = False
    # "batch": sandboxes run under SCHED_BATCH (Settings.sandbox_scheduling says why), all but a Python zygote,
    # whose forks set it themselves.
    scheduling: str = "normal"
    # The functions' networks (lamina/net/), where the backend can join pre-wired namespaces (linux).
    networks: EnvNetworks | None = None

    @abc.abstractmethod
    def task_root(self, spec: SandboxSpec) -> str:
        """Where the function's code appears inside the sandbox."""

    def sdk_root(self, sdk_dir: Path) -> str:
        """Where the SDK directory (SandboxSpec.sdk_dir) appears inside the sandbox."""
        return "/var/lang/sdk"

    def opt_root(self, spec: SandboxSpec) -> str:
        """Where the function's layers appear inside the sandbox (/opt, as on AWS)."""
        return "/opt"

    @abc.abstractmethod
    def runtime_dir(self) -> str:
        """Where Lamina's runtime files (lamina/runtime/) appear inside the sandbox."""

    def lang_bin_dir(self, lang: Interpreter) -> str:
        """A directory with the interpreter's usual names in it (python, python3, python3.X; node), as seen inside a
        sandbox started with it (for PATH)."""
        return os.path.dirname(lang.executable)

    @abc.abstractmethod
    async def start(self, spec: SandboxSpec, on_exit: ExitCallback) -> Sandbox:
        """Start spec.argv with stdout+stderr on spec.log_fd; on_exit gets the exit status once."""

    @abc.abstractmethod
    def prepare_fork(self, spec: SandboxSpec) -> ForkedSandbox:
        """Resources for one environment a zygote of this backend will fork (spec.argv unused)."""

    def zygote_env(self) -> dict[str, str]:
        """Extra environment for a zygote (e.g. the seccomp program its forks load)."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook; most backends hold nothing
        """Release what the backend holds (called when the server stops)."""

    def describe(self) -> str:
        return f"{self.name} ({'isolated' if self.isolated else 'NOT isolated'})"


class SandboxError(Exception):
    """A sandbox could not be started."""
