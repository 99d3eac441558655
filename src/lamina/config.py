"""Server settings: flags > environment (LAMINA_*) > lamina.toml > defaults."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

DEFAULT_PORT = 8800
DEFAULT_HOST = "127.0.0.1"


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "lamina"


def default_endpoint() -> str:
    """Where the CLI finds a running server."""
    return os.environ.get("LAMINA_ENDPOINT", f"http://{DEFAULT_HOST}:{DEFAULT_PORT}")


@dataclass
class Settings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    data_dir: Path = field(default_factory=default_data_dir)
    region: str = "us-east-1"
    account_id: str = "000000000000"
    # Account-wide concurrency pool, as AWS's default quota.
    account_concurrency: int = 1000
    # Sandbox backend: "auto" picks linux when root, else process.
    sandbox: str = "auto"
    # CPU scheduling of sandboxed processes (function environments, MicroVM instances): "batch"
    # (SCHED_BATCH: a sandbox woken by a request does not preempt what runs on its CPU, such as the
    # server's own front door; it runs at the next switch or tick) or "normal" (SCHED_OTHER).
    sandbox_scheduling: str = "batch"
    # How long SIGTERM waits for in-flight invocations before stopping environments.
    drain_seconds: float = 30.0
    # Idle environments are stopped after this long.
    keep_warm_seconds: float = 600.0
    # Scaler: "simple" (lambda-dispatch's default formula) or "ewma" (request rate x duration).
    scaler: str = "simple"
    # "queue": environments pull from the function's queue; "per-request": every waiting invocation
    # gets a new environment, as Lambda does (kept for comparison benchmarks).
    dispatch_mode: str = "queue"
    # A synchronous invocation that waited this long for an environment fails with 429.
    queue_timeout_seconds: float = 60.0
    log_level: str = "info"
    # Deploy the bundled example function "hello" at start-up if it is not there (make run).
    example: bool = False
    # MicroVMs: the lowest maxIdleDurationSeconds RunMicrovm accepts (AWS: 60; tests lower it), and
    # the memory quota over RUNNING + SUSPENDED instances (AWS's per-account quota, in MiB).
    microvm_min_idle_seconds: int = 60
    microvm_memory_quota_mib: int = 65536
    # Started, ready and frozen instances kept per MicroVM image version, so RunMicrovm only thaws one.
    microvm_standby: int = 1
    # Asynchronous invocation (events/): every retry wait, backoff and maximum event age is multiplied by
    # this (1.0 = AWS's minutes; tests use 0.01 to run a schedule in seconds).
    async_wait_scale: float = 1.0
    # EventBridge schedules and rules: their clock runs 1/scale as fast as the wall clock from the server's start
    # (1.0 = real time; tests use 0.01 so a rate(1 minute) schedule fires every 0.6 s). Target retries scale too.
    schedule_time_scale: float = 1.0
    # When an accepted Event invoke is durable before its 202: "fsync" (the queue's WAL is fsynced: survives
    # power loss) or "os" (written to the OS: survives the server being killed, not a power loss).
    async_durability: str = "fsync"
    # Async events handled at once (running, or about to run); more wait in the queue.
    async_max_in_flight: int = 1000
    # Interpreters for language runtimes, where Lamina would not find them itself (sandbox/interpreters.py):
    # "python3.12=/opt/py312/bin/python3.12,nodejs22.x=/opt/node22/bin/node".
    runtime_paths: str = ""
    # Initialised, unused environments each Node.js function version keeps, so that a cold start does not wait for
    # a node process to start and load the handler (Node.js cannot fork one the way a Python zygote is forked).
    node_spare_environments: int = 1
    # The network of a function without VpcConfig: "outbound" (NAT to the host's outside network, never the host
    # itself, Lamina's API or VPC subnets) or "none" (loopback only). Needs the linux sandbox.
    function_network: str = "outbound"
    # Pre-wired network namespaces each function version's zygote keeps ready (so a cold start only joins one).
    network_pool_size: int = 2
    # Prometheus metrics at /metrics; off: nothing is counted per invocation and /metrics answers 404.
    metrics: bool = True
    # Access keys whose SigV4 signatures are accepted (auth/keys.py): lamina.toml [[credentials]] tables
    # (access_key_id, secret_access_key, account_id, principal) or
    # LAMINA_CREDENTIALS="KEY:SECRET[:ACCOUNT[:PRINCIPAL]],...".
    # None configured: any request is accepted, and the server binds only to loopback.
    credentials: list[dict] | str = field(default_factory=list)
    # Execution roles' identity policies (auth/keys.py): lamina.toml [[roles]] tables (arn = "arn:aws:iam::...:role/X",
    # policy = an IAM policy document, JSON text or a table) or LAMINA_ROLES='[{"arn": ..., "policy": {...}}]'.
    # A function whose Role is listed gets credentials held to that policy; any other, the fixed default.
    roles: list[dict] | str = field(default_factory=list)

    @classmethod
    def load(cls, config_file: Path | None = None, **overrides: object) -> Settings:
        """Build settings from defaults, then a TOML file, then LAMINA_* variables, then overrides."""
        values: dict[str, object] = {}
        path = config_file or (Path(os.environ["LAMINA_CONFIG"]) if "LAMINA_CONFIG" in os.environ else None)
        if path is None and Path("lamina.toml").is_file():
            path = Path("lamina.toml")
        if path is not None:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
            values.update(data.get("server", data))
            for table in ("credentials", "roles"):   # [[credentials]] and [[roles]] beside a [server] table
                if "server" in data and table in data:
                    values[table] = data[table]
        for f in fields(cls):
            env = os.environ.get("LAMINA_" + f.name.upper())
            if env is not None:
                values[f.name] = env
        values.update({k: v for k, v in overrides.items() if v is not None})
        known = {f.name: f for f in fields(cls)}
        unknown = set(values) - set(known)
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        settings = cls()
        for name, raw in values.items():
            current = getattr(settings, name)
            try:
                value = _convert(current, raw)
            except ValueError:
                raise ValueError(f"{name}={raw!r} is not a valid {type(current).__name__}") from None
            setattr(settings, name, value)
        return settings

    @property
    def endpoint(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"


def _convert(current: object, raw: object) -> object:
    if isinstance(current, list):
        return raw if isinstance(raw, list) else str(raw)
    if isinstance(current, Path):
        return Path(str(raw)).expanduser()
    if isinstance(current, bool):
        if isinstance(raw, bool):
            return raw
        text = str(raw).lower()
        if text not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            raise ValueError(text)
        return text in ("1", "true", "yes", "on")
    if isinstance(current, int):
        return int(raw)  # type: ignore[call-overload]
    if isinstance(current, float):
        return float(raw)  # type: ignore[arg-type]
    return str(raw)
