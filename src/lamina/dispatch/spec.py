"""What the dispatcher needs to know about one function version to run it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


def pool_key(name: str, version: str) -> str:
    """The dispatcher's key for one function version: each version has its own pool."""
    return f"{name}:{version}"


def tenant_key(key: str, tenant_id: str) -> str:
    """The dispatcher's key for one tenant's pool of a PER_TENANT function version ('#' is not valid in a
    tenant id, so keys cannot collide)."""
    return f"{key}#{tenant_id}"


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    arn: str                       # unqualified function ARN
    version: str                   # "$LATEST" or a published version's number
    runtime: str                   # python3.x, nodejsN.x or provided.*
    handler: str
    memory_mb: int
    timeout_s: int
    code_dir: Path
    code_sha: str
    environment: tuple[tuple[str, str], ...] = ()
    ephemeral_mb: int = 512
    region: str = "us-east-1"
    log_level: str = ""            # LoggingConfig.ApplicationLogLevel (JSON format only)
    log_format: str = "Text"       # LoggingConfig.LogFormat: Text or JSON (application and platform records)
    system_log_level: str = ""     # LoggingConfig.SystemLogLevel: which platform records are written (JSON format)
    log_group_name: str = ""       # LoggingConfig.LogGroup when not the default /aws/lambda/<name>
    per_tenant: bool = False       # TenancyConfig.TenantIsolationMode PER_TENANT: one pool per tenant
    role: str = ""                 # the execution role: what the environment's credentials act as
    opt_dir: Path | None = None    # the function's layers, unpacked in order (shown read-only at /opt)
    # The network its environments join: "none" (loopback only), "outbound" (NAT to the host's outside network) or a
    # VPC pair's key ("subnet-...|sg-...,sg-..."): lamina/net/.
    network: str = "none"

    @property
    def key(self) -> str:
        return pool_key(self.name, self.version)

    @property
    def log_group(self) -> str:
        return self.log_group_name or f"/aws/lambda/{self.name}"

    @property
    def is_python(self) -> bool:
        return self.runtime.startswith("python")

    @property
    def is_node(self) -> bool:
        return self.runtime.startswith("nodejs")

    @property
    def init_per_environment(self) -> bool:
        """A Python function that opted out of its zygote's snapshot (LAMINA_INIT=per-environment, runtime/snapshot.py):
        its init runs in each environment, AWS's on-demand semantics, instead of once in the zygote."""
        return dict(self.environment).get("LAMINA_INIT", "").strip().lower() == "per-environment"
