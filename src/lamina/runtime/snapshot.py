"""SnapStart's runtime hooks for Python (the snapshot-restore-py package): before-snapshot hooks run once in the
zygote after the function's init, after-restore hooks in each environment forked from it before its first
invocation — so code written for SnapStart (a fresh connection, token or id per environment) works unchanged.

Every Python environment is a fork of its version's zygote, that is a restore of one initialised snapshot; a
function may instead have its init run in each environment (LAMINA_INIT=per-environment, AWS's on-demand init).
What the runtime owns itself needs no hook: CPython reseeds `random` in a forked child (os.register_at_fork), and
uuid4, secrets and os.urandom read the kernel's generator.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from .errors import error_body

INIT_ENV = "LAMINA_INIT"            # a function's own variable: "per-environment" opts out of the snapshot
PER_ENVIRONMENT = "per-environment"
BEFORE_SNAPSHOT_ERROR = "Runtime.BeforeSnapshotError"
AFTER_RESTORE_ERROR = "Runtime.AfterRestoreError"


def init_per_environment() -> bool:
    """Whether the function asked for its init in each environment instead of once in the zygote."""
    return os.environ.get(INIT_ENV, "").strip().lower() == PER_ENVIRONMENT


def run_hooks(after_restore: bool) -> dict[str, Any] | None:
    """Run the hooks the function registered (after_restore: those, else the before-snapshot ones), in the order
    registered; None, or the AWS-shaped error of the first that raised."""
    module = sys.modules.get("snapshot_restore_py")  # only if the function's code imported it
    getter = getattr(module, "get_after_restore" if after_restore else "get_before_snapshot", None)
    if getter is None:
        return None
    for func, args, kwargs in list(getter()):
        try:
            func(*args, **kwargs)
        except Exception as exc:
            return error_body(exc, error_type=AFTER_RESTORE_ERROR if after_restore else BEFORE_SNAPSHOT_ERROR,
                              message=str(exc))
    return None
