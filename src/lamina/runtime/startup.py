"""How a runtime process starts: tied to its parent, set up as AWS's Python runtime is, the handler loaded."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any, NoReturn

from .channel import Channel
from .errors import log_error
from .loader import InitError, load_handler
from .log_format import setup_logging
from .wire import KIND_INIT_ERROR


def die_with_parent() -> None:
    # If lamina serve is killed outright, its environments must not linger.
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() == 1:
            os._exit(1)
    except Exception:
        pass


# Where the function's layers are when not at /opt (the process backend, which has no mount namespace).
OPT_ROOT_ENV = "_LAMINA_OPT_ROOT"
# The AWS SDK for Python Lamina ships (boto3 and its dependencies), when there is one.
SDK_PATH_ENV = "_LAMINA_PYTHON_SDK"


def prepare_process() -> float:
    """Common start-up: sys.path and cwd as on AWS, line-buffered output, AWS log format; returns when it started
    (time.monotonic)."""
    task_root = os.environ.get("LAMBDA_TASK_ROOT", os.getcwd())
    opt = os.environ.get(OPT_ROOT_ENV, "/opt")
    # The function's code comes first on sys.path, then its layers' Python directories, as on AWS; drop this
    # runtime's own directory (an interpreter older than 3.11 puts the script's directory there even with -I).
    here = os.path.dirname(os.path.abspath(__file__))
    layers = [f"{opt}/python/lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages",
              f"{opt}/python"]
    # Then the runtime's boto3 (AWS's runtimes have it in their site-packages): a copy in the package or a layer wins.
    sdk = os.environ.pop(SDK_PATH_ENV, "")
    sys.path[:] = [task_root, *layers, *([sdk] if sdk else [])] + [p for p in sys.path
                                                                    if p and os.path.abspath(p) != here]
    os.chdir(task_root)
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(line_buffering=True)
    setup_logging()
    return time.monotonic()


def init_handler(channel: Channel, started: float) -> Callable[[Any, Any], Any]:
    """The handler, loaded; if it cannot be, INIT_ERROR goes to the server and the process exits."""
    try:
        return load_handler(os.environ["_HANDLER"])
    except InitError as exc:
        init_failed(channel, started, exc.body)


def init_failed(channel: Channel, started: float, body: dict[str, Any]) -> NoReturn:
    """Log the error, send it as INIT_ERROR and exit."""
    log_error(body)
    channel.send(KIND_INIT_ERROR, {"init_ms": (time.monotonic() - started) * 1000}, json.dumps(body).encode())
    os._exit(1)
