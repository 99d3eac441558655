"""Zygote mode: the handler imported and its init run once, then one fork per environment, on the server's request.

The zygote serves FORK frames on its channel. Each fork becomes one environment with the channel and log pipe the
server passed along (SCM_RIGHTS); under the linux backend it first confines itself (confine.py), under the process
backend it only becomes a session of its own. The zygote reports each fork's pid (FORKED) and exit status (EXITED).
"""

from __future__ import annotations

import gc
import os
import selectors
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

from . import snapshot
from .channel import Channel
from .invoke_loop import serve
from .startup import die_with_parent, init_failed, init_handler, prepare_process
from .wire import KIND_EXITED, KIND_FORKED, KIND_READY, FrameDecoder

Handler = Callable[[Any, Any], Any]


def serve_forks(channel_fd: int, seccomp: bytes | None) -> None:
    """Run as the function's zygote on channel_fd; `seccomp`: the environment filter each fork loads after
    confining itself (the linux backend), None for plain forks (the process backend). Never returns."""
    def plain_fork(_new_network: bool, _new_userns: bool) -> int:
        return os.fork()

    fork: Callable[[bool, bool], int] = plain_fork
    joined: int | None = None   # the maker's user namespace, joined after init (pre-wired networks)
    if seccomp is not None:
        from . import confine, netns_maker  # its forks are born in namespaces of their own

        maker = os.environ.pop(netns_maker.MAKER_FD_ENV, None)
        if maker is not None:
            joined = netns_maker.start(int(maker))  # before the function's code runs
        fork = confine.fork
    sock = socket.socket(fileno=channel_fd)
    channel = Channel(os.dup(channel_fd))
    started = prepare_process()
    handler: Handler | None = None
    if not snapshot.init_per_environment():
        handler = init_handler(channel, started)
        failed = snapshot.run_hooks(after_restore=False)  # once, before the snapshot its forks are
        if failed is not None:
            init_failed(channel, started, failed)
    init_ms = (time.monotonic() - started) * 1000
    in_own_userns = False
    if joined is not None:
        from . import confine

        try:
            confine.join_user_namespace(joined)  # capabilities over the maker's namespaces, after init
            in_own_userns = True
        except OSError as exc:
            os.write(2, f"lamina sandbox: environments get no network: {exc}\n".encode())
    # Children share the zygote's pages copy-on-write; freezing keeps the GC from touching them.
    gc.collect()
    gc.freeze()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    channel.send(KIND_READY, {"init_ms": init_ms})
    decoder = FrameDecoder()
    fds: list[int] = []
    children: dict[int, str] = {}
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ)
    sel.register(wake_r, selectors.EVENT_READ)
    while True:
        for key, _ in sel.select():
            if key.fileobj is wake_r:
                try:
                    while os.read(wake_r, 512):
                        pass
                except BlockingIOError:
                    pass
                _reap(channel, children)
                continue
            data, new_fds, _flags, _addr = socket.recv_fds(sock, 1 << 16, 16)
            if not data:
                os._exit(0)  # the server is gone or done with this function version
            fds.extend(new_fds)
            for _kind, header, _body in decoder.feed(data):
                nfds = int(header.get("nfds", 0))
                mine, fds[:] = fds[:nfds], fds[nfds:]
                sys.stdout.flush()
                sys.stderr.flush()
                if header.get("netns") and not in_own_userns:
                    os.close(mine.pop())  # cannot join it: the fork makes a network of its own (loopback only)
                    header["netns"] = 0
                pid = fork(not header.get("netns"), not in_own_userns)
                if pid == 0:
                    sel.close()
                    signal.set_wakeup_fd(-1)
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    for fd in (wake_r, wake_w):
                        os.close(fd)
                    sock.close()
                    channel.close()
                    _become_environment(header, mine, handler, seccomp, not in_own_userns)
                    os._exit(0)
                for fd in mine:
                    os.close(fd)
                children[pid] = header["env"]
                channel.send(KIND_FORKED, {"env": header["env"], "pid": pid})


def _reap(channel: Channel, children: dict[int, str]) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        env = children.pop(pid, None)
        if env is not None:
            code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            channel.send(KIND_EXITED, {"env": env, "status": code})


def _become_environment(header: dict[str, Any], fds: list[int], handler: Handler | None, seccomp: bytes | None,
                        map_ids: bool = True) -> None:
    """In a fresh fork of the zygote: become one environment, then serve invocations."""
    started = time.monotonic()
    if header.get("batch"):
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))  # the server's sandbox_scheduling
    channel_fd, log_fd, *procs = fds
    netns = procs.pop() if header.get("netns") else None  # a pre-wired network namespace to join, last
    if seccomp is not None:
        from .confine import confine

        try:
            confine(procs, int(header.get("tmp_mb", 512)), seccomp, netns, map_ids)
        except OSError as exc:
            os.write(log_fd, f"lamina sandbox: cannot set up the environment: {exc}\n".encode())
            os._exit(126)
    else:
        os.setsid()
        die_with_parent()
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    # Kept (close-on-exec) to ask the pipe whether it is empty (Channel.quiet), whatever the handler does to 1/2.
    os.set_inheritable(log_fd, False)
    os.environ["AWS_LAMBDA_LOG_STREAM_NAME"] = header.get("stream", "")
    os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"] = header.get("init_type", "on-demand")
    channel = Channel(channel_fd, log_fd)
    if handler is None:
        handler = init_handler(channel, started)  # the function's init in each environment (snapshot.py)
    else:
        failed = snapshot.run_hooks(after_restore=True)
        if failed is not None:
            init_failed(channel, started, failed)
    channel.send(KIND_READY, {"restore_ms": (time.monotonic() - started) * 1000})
    serve(channel, handler)
