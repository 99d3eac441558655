"""The Python handler runtime's entry point: runs inside an environment, pulls invocations, calls `module.function`.

The server starts it as a script, in the sandbox's interpreter, isolated and without site packages:

    python -I -S <runtime dir>/python_handler.py

with the environment's channel as an inherited descriptor named by _LAMINA_CHANNEL_FD (frames: wire.py), and
`_LAMINA_ZYGOTE=1` for a zygote (zygote_server.py: every Python environment the server starts is a fork of one;
without it the runtime serves the channel itself). Under the linux backend the runtime directory is /var/runtime in
the sandbox's read-only root, and a zygote gets its forks' seccomp filter in _LAMINA_ENV_SECCOMP (hex); under the
process backend it is Lamina's own lamina/runtime/.

Nothing of Lamina or its dependencies is importable there, and the function must not see the runtime's modules
under names its own modules could have ("context", "loader"...). So this script makes its directory a package named
_lamina_runtime (without putting the directory on sys.path) and the runtime's modules import each other relatively:
the server imports the same files as lamina.runtime.*. They are stdlib-only and import nothing of Lamina.
"""

from __future__ import annotations

import os
import sys

CHANNEL_FD_ENV = "_LAMINA_CHANNEL_FD"
ZYGOTE_ENV = "_LAMINA_ZYGOTE"
SECCOMP_ENV = "_LAMINA_ENV_SECCOMP"
PACKAGE = "_lamina_runtime"  # the runtime's package name inside the sandbox


def _as_package() -> None:
    """Make this file's directory importable as the package PACKAGE, without its __init__ (empty) or sys.path."""
    package = type(sys)(PACKAGE)
    package.__path__ = [os.path.dirname(os.path.abspath(__file__))]
    sys.modules[PACKAGE] = package


def main() -> None:
    _as_package()
    from _lamina_runtime.startup import die_with_parent

    die_with_parent()
    channel_fd = int(os.environ.pop(CHANNEL_FD_ENV))
    if os.environ.pop(ZYGOTE_ENV, None):
        from _lamina_runtime.zygote_server import serve_forks

        seccomp_hex = os.environ.pop(SECCOMP_ENV, "")
        serve_forks(channel_fd, bytes.fromhex(seccomp_hex) if seccomp_hex else None)
        return
    # Without a zygote (the server always starts one; this serves a channel directly, as unit tests do).
    import time

    from _lamina_runtime.channel import Channel
    from _lamina_runtime.invoke_loop import serve
    from _lamina_runtime.startup import init_handler, prepare_process
    from _lamina_runtime.wire import KIND_READY

    channel = Channel(channel_fd)
    started = prepare_process()
    handler = init_handler(channel, started)
    channel.send(KIND_READY, {"init_ms": (time.monotonic() - started) * 1000})
    serve(channel, handler)


if __name__ == "__main__":
    main()
