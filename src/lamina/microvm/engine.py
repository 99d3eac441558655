"""The contract between the MicroVM control plane and the machinery that builds and runs images.

`microvm/manager.py` (API state machine, idle policy, tokens, proxy) drives an `Engine`;
`microvm/builder.py`, `microvm/rootfs.py`, `microvm/instance.py` implement it on a sandbox backend.
The manager owns every state transition, timer and hook decision; the engine only does what it is
told and reports an instance whose processes died on their own (`Instance.exited`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

HOOK_NAMES = ("ready", "validate", "run", "resume", "suspend", "terminate")
HOOK_PATH = "/aws/lambda-microvms/runtime/v1/"
DEFAULT_PORT = 8080


class BuildError(Exception):
    """A build failed; the message is what the user sees in the build's status and log."""


@dataclass
class Hooks:
    """The image's lifecycle hooks (AWS's MicrovmImageHooks + MicrovmHooks): which are ENABLED,
    on which in-instance port, with their timeouts in seconds."""

    port: int = 9000
    enabled: set[str] = field(default_factory=set)  # subset of HOOK_NAMES
    timeouts: dict[str, float] = field(default_factory=dict)  # hook name -> seconds

    def timeout(self, name: str) -> float:
        default = 30.0 if name in ("ready", "validate") else 1.0
        return self.timeouts.get(name, default)

    def target(self, name: str) -> str:
        """Where the hook is called, for messages: an app that answers elsewhere learns what to serve."""
        return f"POST {HOOK_PATH}{name} on port {self.port} inside the MicroVM"


@dataclass
class ImageConfig:
    """What the Dockerfile said about running the image (after the build)."""

    cmd: list[str] = field(default_factory=list)  # final argv (ENTRYPOINT + CMD), exec form
    env: dict[str, str] = field(default_factory=dict)  # ENV lines + the image's environmentVariables
    workdir: str = "/"
    user: str = "root"
    expose: list[int] = field(default_factory=list)  # TCP ports
    expose_udp: list[int] = field(default_factory=list)  # `EXPOSE n/udp`


@dataclass
class BuildRequest:
    image_name: str
    version: str
    context_dir: Path  # the unpacked code artifact; its Dockerfile at the root
    layer_dir: Path  # where the build writes the image's filesystem layer (created empty by the caller)
    hooks: Hooks
    env: dict[str, str]  # the image's environmentVariables (override ENV lines)
    memory_mib: int
    log: Callable[[str], None]  # one line of build log (no trailing newline)


@dataclass
class BuiltImage:
    """A successfully built image version: everything needed to launch instances of it."""

    image_name: str
    version: str
    layer_dir: Path
    config: ImageConfig
    hooks: Hooks
    memory_mib: int

    def to_dict(self) -> dict:
        """JSON-able, for the control plane's store (relaunching images after a server restart)."""
        return {
            "image_name": self.image_name, "version": self.version, "layer_dir": str(self.layer_dir),
            "config": {"cmd": list(self.config.cmd), "env": dict(self.config.env), "workdir": self.config.workdir,
                       "user": self.config.user, "expose": list(self.config.expose),
                       "expose_udp": list(self.config.expose_udp)},
            "hooks": {"port": self.hooks.port, "enabled": sorted(self.hooks.enabled),
                      "timeouts": dict(self.hooks.timeouts)},
            "memory_mib": self.memory_mib,
        }

    @classmethod
    def from_dict(cls, data: dict) -> BuiltImage:
        config, hooks = data.get("config", {}), data.get("hooks", {})
        return cls(
            image_name=data["image_name"], version=str(data["version"]), layer_dir=Path(data["layer_dir"]),
            config=ImageConfig(cmd=list(config.get("cmd", [])), env=dict(config.get("env", {})),
                               workdir=config.get("workdir", "/"), user=config.get("user", "root"),
                               expose=[int(p) for p in config.get("expose", [])],
                               expose_udp=[int(p) for p in config.get("expose_udp", [])]),
            hooks=Hooks(port=int(hooks.get("port", 9000)), enabled=set(hooks.get("enabled", [])),
                        timeouts={k: float(v) for k, v in hooks.get("timeouts", {}).items()}),
            memory_mib=int(data["memory_mib"]),
        )


class Instance(Protocol):
    microvm_id: str
    # Resolves (with a short reason) when the instance's processes exit without being told to.
    exited: asyncio.Future[str]

    async def open_connection(self, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A TCP connection to 127.0.0.1:port inside the instance's own network namespace."""

    async def hook(self, name: str, body: bytes = b"") -> int | None:
        """POST the lifecycle hook; its HTTP status, or None when the image has not ENABLED it.
        Retries connection failures and 503 until the hook's timeout (ready/validate), then raises
        TimeoutError."""

    async def suspend(self) -> None:
        """Freeze every process of the instance (memory, disk and processes kept)."""

    async def resume(self) -> None:
        """Thaw it."""

    async def terminate(self) -> None:
        """Kill every process and remove the private disk layer. Idempotent."""


class Engine(Protocol):
    async def build(self, request: BuildRequest) -> BuiltImage:
        """Run the Dockerfile into request.layer_dir, start the app once, wait for /ready (or the
        first EXPOSEd TCP port / 8080 to accept; a UDP-only app's first `EXPOSE n/udp` port to be bound),
        call /validate when enabled, and keep what is needed to launch instances fast. Raises BuildError."""

    async def launch(self, image: BuiltImage, microvm_id: str) -> Instance:
        """An instance with its app started and ready (a pre-initialized standby when there is
        one), not yet /run-hooked. Raises BuildError-free RuntimeError on failure."""

    def forget(self, image: BuiltImage) -> None:
        """The image version was deleted: drop its standbys and snapshot."""

    async def close(self) -> None:
        """Stop every instance and standby (server shutdown)."""
