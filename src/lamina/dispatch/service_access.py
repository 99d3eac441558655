"""What a function's environment is given to call AWS services — Lamina's own — with no endpoint or keys in its
code, as a Lambda environment is: the AWS SDK (boto3 for Python, the AWS SDK for JavaScript v3 clients for Node.js,
shipped outside the function's code),
credentials for the function's execution role (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) and
AWS_ENDPOINT_URL pointing at Lamina, so `boto3.client("lambda")` reaches Lamina's Lambda API.

The credentials are issued per environment (a Python zygote's forks share their zygote's, like everything else its
init made), scoped to the function and its role and valid CREDENTIALS_SECONDS; an environment or zygote is
replaced before they expire (pool.py: expires_at), as AWS recycles its environments.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from lamina.dispatch.spec import FunctionSpec
from lamina.runtime.startup import SDK_PATH_ENV
from lamina.sandbox import SandboxBackend
from lamina.sandbox.interpreters import Interpreter

log = logging.getLogger("lamina.dispatch")

# An environment's credentials last this long (AWS's longest role session); it is replaced an hour before.
CREDENTIALS_SECONDS = 12 * 3600.0
REPLACE_BEFORE_S = 3600.0
NODE_MODULES = "nodejs/node_modules"   # the JavaScript SDK in the SDK directory (the Makefile's npm ci)


def installed_sdk_dir() -> Path | None:
    """Where `make install` puts the SDKs (the Makefile's SDK_DIR: beside Lamina's own environment), if it did."""
    path = Path(sys.prefix) / "share" / "lamina" / "sdk"
    return path if any((path / "python").glob("3.*")) or (path / NODE_MODULES).is_dir() else None


class CredentialIssuer(Protocol):
    """Issues short-lived credentials for a function's role (auth/keys.py's KeyTable, which also verifies them)."""

    def issue(self, account: str, role: str, function_arn: str, seconds: float = ...,
              now: float | None = None) -> dict[str, str | int]: ...


@dataclass
class ServiceAccess:
    endpoint: str | None = None              # AWS_ENDPOINT_URL: Lamina's own API
    # ... as environments with a network of their own (the linux sandbox) reach it: a listener in their network's
    # hub at their gateway address (net/plumbing.py), not the server's address on the host.
    network_endpoint: str | None = None
    credentials: CredentialIssuer | None = None
    sdk_dir: Path | None = None              # python/ (boto3 and its dependencies), shown read-only in sandboxes

    def environment(self, spec: FunctionSpec, backend: SandboxBackend, lang: Interpreter | None) -> dict[str, str]:
        """The variables an environment (or a zygote) of spec gets for this."""
        env: dict[str, str] = {}
        endpoint = self.network_endpoint if backend.private_network and self.network_endpoint else self.endpoint
        if endpoint:
            env["AWS_ENDPOINT_URL"] = endpoint
        if self.credentials is not None:
            account = spec.arn.split(":")[4]
            issued = self.credentials.issue(account, spec.role, spec.arn, CREDENTIALS_SECONDS)
            for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
                env[key] = str(issued[key])
        version = self._python_sdk(lang)
        if version is not None and self.sdk_dir is not None:
            env[SDK_PATH_ENV] = f"{backend.sdk_root(self.sdk_dir)}/python/{version}"
        return env

    def _python_sdk(self, lang: Interpreter | None) -> str | None:
        """The SDK copy for this Python: python/3.Y with the highest 3.Y not above its version (each copy is for the
        oldest version its pins support)."""
        if self.sdk_dir is None or lang is None or lang.language != "python":
            return None
        minor = int(lang.runtime.split(".")[1])
        copies = []
        for path in (self.sdk_dir / "python").glob("3.*"):
            tail = path.name.split(".", 1)[1]
            if tail.isdigit() and int(tail) <= minor:
                copies.append(int(tail))
        return f"3.{max(copies)}" if copies else None

    def expires_at(self) -> float | None:
        """When an environment (or zygote) started now must be replaced (time.monotonic), if its credentials expire."""
        if self.credentials is None:
            return None
        return time.monotonic() + CREDENTIALS_SECONDS - REPLACE_BEFORE_S

    def sdk_for(self, lang: Interpreter | None) -> Path | None:
        """The SDK directory to show in a sandbox of this interpreter (a language Lamina ships an SDK for)."""
        if self._python_sdk(lang) is not None or self._node_sdk(lang):
            return self.sdk_dir
        return None

    def _node_sdk(self, lang: Interpreter | None) -> bool:
        return (self.sdk_dir is not None and lang is not None and lang.language == "nodejs"
                and (self.sdk_dir / NODE_MODULES).is_dir())

    def node_modules(self, backend: SandboxBackend, lang: Interpreter | None) -> str | None:
        """Where a Node.js environment finds the JavaScript SDK (its NODE_PATH entry), if Lamina has it."""
        if not self._node_sdk(lang):
            return None
        assert self.sdk_dir is not None
        return f"{backend.sdk_root(self.sdk_dir)}/{NODE_MODULES}"

    def compile_sdk(self, interpreters: list[Interpreter]) -> None:
        """Byte-compile each Python's SDK copy with that Python, once (the sandbox shows it read-only, so a zygote
        could not keep what it compiled: importing boto3 from source costs seconds). Slow: run it off the loop."""
        for lang in interpreters:
            version = self._python_sdk(lang)
            if version is None or self.sdk_dir is None:
                continue
            copy = self.sdk_dir / "python" / version
            tag = "cpython-3" + lang.runtime.split(".")[1]
            if any((copy / "boto3" / "__pycache__").glob(f"__init__.{tag}*.pyc")):
                continue
            result = subprocess.run([lang.executable, "-I", "-m", "compileall", "-q", "-j", "0", str(copy)],
                                    capture_output=True, check=False)
            if result.returncode != 0:
                log.warning("could not byte-compile the AWS SDK for %s: %s", lang.runtime,
                            result.stderr.decode(errors="replace")[-500:])

