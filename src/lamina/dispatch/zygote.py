"""A Python function version's zygote: its handler imported and its init run once, forked per environment.

This is Lamina's pre-initialized snapshot. The zygote runs lamina.runtime.python_handler in zygote mode
(lamina.runtime.zygote_server) inside the backend's sandbox; each new environment is a FORK frame carrying the
environment's channel, its log pipe and whatever the backend prepared (cgroup.procs files to join), and the fork
enters its own namespaces and drops every privilege before it says READY. The zygote reports each fork's pid and
exit status on its channel, which is how environments learn they died.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
import uuid
from typing import Protocol

from lamina.dispatch.environment import Environment, InitFailure, build_environment, exit_status_text, language_of
from lamina.dispatch.logpipe import LogPipe
from lamina.dispatch.service_access import ServiceAccess
from lamina.dispatch.spec import FunctionSpec
from lamina.runtime.netns_maker import MAKER_FD_ENV
from lamina.runtime.python_handler import CHANNEL_FD_ENV, ZYGOTE_ENV
from lamina.runtime.wire import (
    KIND_EXITED,
    KIND_FORK,
    KIND_FORKED,
    KIND_INIT_ERROR,
    KIND_READY,
    FrameDecoder,
    encode_frame,
)
from lamina.sandbox import SandboxBackend, SandboxError, SandboxSpec
from lamina.sandbox.base import ForkedSandbox, NetnsPool, Sandbox
from lamina.sandbox.interpreters import HostRuntimes
from lamina.store.logs import FunctionLog

INIT_GRACE_S = 10.0


class ZygoteDispatcher(Protocol):
    """What a zygote asks of the dispatcher (through its pool)."""

    backend: SandboxBackend
    access: ServiceAccess

    @property
    def runtimes(self) -> HostRuntimes: ...

    def env_cap(self, name: str) -> int: ...

    def track(self, task: asyncio.Task) -> None: ...


class ZygoteOwner(Protocol):
    """What a zygote asks of the pool that owns it (pool.FunctionPool)."""

    @property
    def spec(self) -> FunctionSpec: ...

    @property
    def log(self) -> FunctionLog: ...

    @property
    def dispatcher(self) -> ZygoteDispatcher: ...

    def zygote_gone(self, zygote: Zygote) -> None:
        """The zygote stopped (its owner starts a new one when it next needs one)."""


class Zygote:
    def __init__(self, pool: ZygoteOwner) -> None:
        self.pool = pool
        self.spec = pool.spec
        self.backend = pool.dispatcher.backend
        self.id = uuid.uuid4().hex
        self.stream = time.strftime("%Y/%m/%d/", time.gmtime()) + f"[{self.spec.version}]{self.id}"
        self._loop = asyncio.get_running_loop()
        self.ready: asyncio.Future = self._loop.create_future()
        self.init_ms: float | None = None
        self.sandbox: Sandbox | None = None
        self.forks: dict[str, Environment] = {}
        self.alive = True
        self._sock: socket.socket | None = None
        self._decoder = FrameDecoder()
        self._logs: LogPipe | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._started = 0.0
        self.expires_at: float | None = None  # when it must be replaced (service_access.py), if ever
        # Pre-wired network namespaces its forks join (lamina/net/), made by the zygote's namespace maker.
        self._netns: NetnsPool | None = None

    def _emit(self, line: str) -> None:
        self.pool.log.append(self.stream, line)

    async def start(self) -> None:
        try:
            # The interpreter of the function's runtime (python3.12 runs on Python 3.12).
            lang = language_of(self.spec, self.pool.dispatcher.runtimes)
        except InitFailure as exc:
            self._fail(exc.body, None)
            return
        assert lang is not None  # a Python runtime has one
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self._logs = LogPipe(self._emit)
        access = self.pool.dispatcher.access
        self.expires_at = access.expires_at()  # forks are replaced before the credentials they inherit expire
        init_type = "on-demand" if self.spec.init_per_environment else "snap-start"
        env = build_environment(self.spec, self.backend, self.stream, init_type, lang=lang, access=access)
        env[CHANNEL_FD_ENV] = str(child.fileno())
        env[ZYGOTE_ENV] = "1"
        env.update(self.backend.zygote_env())
        pass_fds = [child.fileno()]
        maker = None
        networks = self.backend.networks
        if networks is not None and self.spec.network != "none":
            # The zygote's namespace maker (runtime/netns_maker.py) answers on this socket.
            ours, maker = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            self._netns = networks.zygote_pool(self.spec.network, ours)
            if self._netns is None:
                ours.close()
                maker.close()
                maker = None
            else:
                env[MAKER_FD_ENV] = str(maker.fileno())
                pass_fds.append(maker.fileno())
        argv = [lang.executable, "-I", "-S", f"{self.backend.runtime_dir()}/python_handler.py"]
        spec = SandboxSpec(name=f"{self.spec.name}-z{self.id[:10]}", argv=argv, env=env, code_dir=self.spec.code_dir,
                           opt_dir=self.spec.opt_dir,
                           memory_mb=self.spec.memory_mb, ephemeral_mb=self.spec.ephemeral_mb,
                           pass_fds=tuple(pass_fds), log_fd=self._logs.write_fd, zygote=True, lang=lang,
                           sdk_dir=access.sdk_for(lang))
        self._started = time.perf_counter()
        try:
            self.sandbox = await self.backend.start(spec, self._on_exit)
        except SandboxError as exc:
            parent.close()
            self._fail({"errorMessage": str(exc), "errorType": "Runtime.InvalidEntrypoint"}, None)
            return
        finally:
            child.close()
            if maker is not None:
                maker.close()
            self._logs.close_write_end()
        if not self.alive:
            parent.close()
            self.sandbox.kill()
            return
        parent.setblocking(False)
        self._sock = parent
        self._loop.add_reader(parent.fileno(), self._on_readable)
        self._timer = self._loop.call_later(INIT_GRACE_S + self.spec.timeout_s, self._on_init_timeout)

    # ------------------------------------------------------------------ forking

    async def fork(self, env: Environment, channel: socket.socket, log_fd: int) -> ForkedSandbox:
        """Ask the zygote for one environment; its READY arrives on `channel`."""
        if not self.alive or self._sock is None:
            raise SandboxError("the function's zygote is not running")
        forked = self.backend.prepare_fork(SandboxSpec(
            name=f"{self.spec.name}-{env.id[:12]}", argv=[], env={}, code_dir=self.spec.code_dir,
            opt_dir=self.spec.opt_dir, init_boost=self.spec.init_per_environment,
            memory_mb=self.spec.memory_mb, ephemeral_mb=self.spec.ephemeral_mb))
        fds = [channel.fileno(), log_fd, *forked.fds]
        netns = None
        if self._netns is not None:
            try:
                netns = await self._netns.take()  # pre-wired: the fork only joins it
            except Exception as exc:
                forked.close_fds()
                await forked.cleanup()
                raise SandboxError(f"no network for the environment: {exc}") from exc
            fds.append(netns)
        header = {"env": env.id, "stream": env.stream, "init_type": env.init_type, "tmp_mb": self.spec.ephemeral_mb,
                  "nfds": len(fds), "batch": int(self.backend.scheduling == "batch"), "netns": int(netns is not None)}
        self.forks[env.id] = env
        try:
            data = encode_frame(KIND_FORK, header)
            while True:
                if self._sock is None:  # stopped while we waited for room in its socket
                    raise SandboxError("the function's zygote stopped")
                try:
                    socket.send_fds(self._sock, [data], fds)
                    break
                except BlockingIOError:
                    await asyncio.sleep(0.001)
        except (OSError, SandboxError) as exc:
            self.forks.pop(env.id, None)
            forked.close_fds()
            await forked.cleanup()
            if isinstance(exc, SandboxError):
                raise
            raise SandboxError(f"the function's zygote is gone: {exc}") from exc
        finally:
            forked.close_fds()
            if netns is not None:
                os.close(netns)
        return forked

    # ------------------------------------------------------------------ the channel

    def _on_readable(self) -> None:
        sock = self._sock
        if sock is None:  # stopped (stop() removes the reader)
            return
        try:
            data = sock.recv(1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._loop.remove_reader(sock.fileno())
            if self.sandbox is not None:
                self.sandbox.kill()
            return
        for kind, header, body in self._decoder.feed(data):
            self._on_frame(kind, header, body)

    def _on_frame(self, kind: int, header: dict, body: bytes) -> None:
        if kind == KIND_READY and not self.ready.done():
            self._cancel_timer()
            self.init_ms = (time.perf_counter() - self._started) * 1000
            if self._logs is not None:
                self._logs.drain()
            if not self.spec.init_per_environment:  # else each environment reports its own init
                self._emit(f"INIT_REPORT Init Duration: {self.init_ms:.2f} ms\tPhase: init\tStatus: success")
            if self.sandbox is not None:
                self.sandbox.settle(self.spec.memory_mb, self.pool.dispatcher.env_cap(self.spec.name))
            self.ready.set_result(None)
        elif kind == KIND_INIT_ERROR:
            try:
                err = json.loads(body)
            except ValueError:
                err = {"errorMessage": body.decode("utf-8", "replace"), "errorType": "Runtime.Unknown"}
            self._fail(err, (time.perf_counter() - self._started) * 1000)
        elif kind == KIND_FORKED:
            env = self.forks.get(header.get("env", ""))
            if env is not None and isinstance(env.sandbox, ForkedSandbox):  # what fork() gave it
                env.sandbox.bind(int(header["pid"]))
        elif kind == KIND_EXITED:
            env = self.forks.pop(header.get("env", ""), None)
            if env is not None:
                env.on_exit(int(header.get("status", -9)))

    # ------------------------------------------------------------------ failures and stop

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_init_timeout(self) -> None:
        self._timer = None
        if not self.ready.done():
            limit = INIT_GRACE_S + self.spec.timeout_s
            self._fail({"errorMessage": f"INIT timed out after {limit:.2f} seconds", "errorType": "Sandbox.Timedout"},
                       limit * 1000)

    def _fail(self, body: dict, init_ms: float | None) -> None:
        body = {"errorMessage": body.get("errorMessage", ""), "errorType": body.get("errorType", "Runtime.Unknown"),
                "requestId": "", "stackTrace": body.get("stackTrace", [])}
        if not self.ready.done():
            status = "timeout" if body["errorType"] == "Sandbox.Timedout" else "error"
            if init_ms is not None:
                self._emit(f"INIT_REPORT Init Duration: {init_ms:.2f} ms\tPhase: init\tStatus: {status}")
            self.ready.set_exception(InitFailure(body, init_ms))
            self.ready.exception()
        self.stop()

    def _on_exit(self, code: int) -> None:
        if not self.ready.done():
            self._fail({"errorMessage": f"Runtime exited with error: {exit_status_text(code)}",
                        "errorType": "Runtime.ExitError"}, (time.perf_counter() - self._started) * 1000)
        self.alive = False
        self.stop()
        # Its forks die with it (their pid namespace or parent-death signal); say so now.
        for env in list(self.forks.values()):
            env.on_exit(-9)
        self.forks.clear()

    def stop(self) -> None:
        """Stop the zygote; environments forked from it die with it."""
        was_alive = self.alive
        self.alive = False
        self._cancel_timer()
        if self._sock is not None:
            with contextlib.suppress(ValueError, RuntimeError):
                self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        if self._netns is not None:
            self._netns.close()
            self._netns = None
        if self.sandbox is not None and was_alive:
            self.sandbox.kill()
            self.pool.dispatcher.track(self._loop.create_task(self._cleanup()))
        self.pool.zygote_gone(self)

    async def _cleanup(self) -> None:
        if self.sandbox is not None:
            await self.sandbox.cleanup()
        if self._logs is not None:
            self._logs.close()
