"""An HTTP-app function's environment: its web server started and checked for readiness, its request slots
(a Lease each, taken by function-URL requests, or by an invocation through the Invoke API, converted the adapter's
way: lamina.httpevent.adapter)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import orjson

from lamina.dispatch import platform_log
from lamina.dispatch.environment import (
    MAX_RESPONSE_BYTES,
    Environment,
    EnvironmentPool,
    InitFailure,
    State,
    build_environment,
    exit_status_text,
    language_of,
)
from lamina.dispatch.http_app.client import AppConnection, AppError
from lamina.dispatch.http_app.config import HttpAppConfig
from lamina.dispatch.invocation import Invocation, InvokeResult
from lamina.dispatch.spec import FunctionSpec
from lamina.httpevent.adapter import event_request, response_payload
from lamina.sandbox import SandboxBackend, SandboxSpec
from lamina.store.logs import FunctionLog

READINESS_INTERVAL_S = 0.01
NOT_READY_NOTE_S = 2.0
CONNECT_TIMEOUT_S = 2.0
# A pooled connection idle longer than this is not reused: apps drop idle keep-alive connections
# (gunicorn after 2 s, uvicorn and Node after 5 s), and reusing one just as it closes fails the request.
IDLE_CONNECTION_S = 1.5


def free_port() -> int:
    """A loopback port free now (the process backend's environments share the host's loopback)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(slots=True, eq=False)
class SlotRequest(Invocation):
    """A function-URL request for an HTTP app: it waits in the function's queue like an invocation
    and resolves to a Lease on the environment that takes it (or to an InvokeResult with the error,
    if the function cannot run)."""

    def grant(self, lease: Lease) -> bool:
        if self.done or self.future is None or self.future.done():
            return False
        self.future.set_result(lease)
        return True


class Lease:
    """One of an environment's request slots, from the grant to the end of the proxied response."""

    __slots__ = ("env", "inv", "conn", "released", "granted_at")

    def __init__(self, env: HttpAppEnvironment, inv: Invocation) -> None:
        self.env = env
        self.inv = inv
        self.conn: AppConnection | None = None
        self.released = False
        self.granted_at = time.perf_counter()

    async def connect(self) -> tuple[AppConnection, bool]:
        """A connection to the app (a pooled one when there is one): (connection, reused)."""
        conn, reused = await self.env.connection()
        self.conn = conn
        return conn, reused

    def done_with(self, conn: AppConnection, reusable: bool) -> None:
        self.conn = None
        self.env.put_back(conn, reusable)

    def release(self) -> None:
        """The request is over: the slot goes to the next queued request (idempotent)."""
        if self.released:
            return
        self.released = True
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        self.inv.finish(InvokeResult(b"", None, "", self.env.spec.version))  # the dispatcher's in-flight count
        self.env.slot_done(self)

    def break_off(self) -> None:
        """The environment is going away: whatever the request is doing with the app fails now."""
        if self.conn is not None:
            self.conn.close()


class SlotPool(EnvironmentPool, Protocol):
    """What an HTTP-app environment asks of its pool (pool.HttpAppPool), beyond what every environment does."""

    @property
    def http_app(self) -> HttpAppConfig: ...

    in_flight: int  # requests in the pool's slots

    def slot_released(self, env: HttpAppEnvironment) -> None:
        """One of env's slots is free again: the pool gives it the next queued request."""


class HttpAppEnvironment(Environment):
    pool: SlotPool

    def __init__(self, pool: SlotPool, spec: FunctionSpec, backend: SandboxBackend, log: FunctionLog) -> None:
        super().__init__(pool, spec, backend, log)
        self.app = pool.http_app
        self.active = 0
        self.port = self.app.port
        self.readiness_port = self.app.readiness_port or self.app.port
        self.broken: str | None = None       # why new requests cannot be served any more
        self.leases: set[Lease] = set()
        self.tasks: set[asyncio.Task] = set()
        self._idle_conns: list[AppConnection] = []
        self._probe: asyncio.Task | None = None
        self._channel_lost = True             # no channel: an exit is final at once
        self._context_base: dict | None = None

    # ------------------------------------------------------------------ start

    async def _launch(self) -> None:
        if self.app.error is not None:
            raise InitFailure({"errorType": "Runtime.InvalidConfiguration", "requestId": "", "stackTrace": [],
                               "errorMessage": f"HTTP app configuration: {self.app.error}"}, None)
        self.sandbox = await self.backend.start(self._sandbox_spec(), self.on_exit)

    def _launched(self) -> None:
        # Within the init budget every runtime has (10 s plus the function's timeout; Lambda re-runs a
        # slow init in the first invoke, and with AWS_LWA_ASYNC_INIT the adapter waits there instead).
        self._probe = self._loop.create_task(self._await_ready())

    def _sandbox_spec(self) -> SandboxSpec:
        host_command = Path(self.spec.code_dir) / self.app.command
        task_root = self.backend.task_root(SandboxSpec(name="", argv=[], env={}, code_dir=self.spec.code_dir))
        if not (host_command.is_file() and os.access(host_command, os.X_OK)):
            if self.spec.is_python:
                msg = (f"The handler {self.app.command!r} is not an executable file in the package: an HTTP app "
                       f"with a Python runtime runs $LAMBDA_TASK_ROOT/$_HANDLER (for example run.sh) to start its "
                       f"web server.")
            else:
                msg = "Couldn't find valid bootstrap(s): [/var/task/bootstrap /opt/bootstrap]"
            raise InitFailure({"errorType": "Runtime.InvalidEntrypoint", "errorMessage": msg, "requestId": "",
                               "stackTrace": []}, None)
        # As in AWS's runtimes, the runtime's interpreter first on PATH (run.sh scripts use python3 or node).
        lang = language_of(self.spec, self.pool.dispatcher.runtimes)
        access = self.pool.dispatcher.access
        self.expires_at = access.expires_at()
        env = build_environment(self.spec, self.backend, self.stream, self.init_type, lang=lang, access=access)
        if not self.backend.private_network:
            # One loopback for every environment: each app gets a port of its own (it must read
            # AWS_LWA_PORT or PORT, as LWA apps do).
            self.port = free_port()
            if self.app.readiness_port in (None, self.app.port):
                self.readiness_port = self.port
            env["AWS_LWA_PORT"] = env["PORT"] = str(self.port)
            if "AWS_LWA_READINESS_CHECK_PORT" in env:
                env["AWS_LWA_READINESS_CHECK_PORT"] = str(self.readiness_port)
        self._started_ns = time.perf_counter_ns()
        return SandboxSpec(name=f"{self.spec.name}-{self.id[:12]}", argv=[f"{task_root}/{self.app.command}"],
                           env=env, code_dir=self.spec.code_dir, opt_dir=self.spec.opt_dir,
                           memory_mb=self.spec.memory_mb, ephemeral_mb=self.spec.ephemeral_mb,
                           log_fd=self._log_write_fd(), network_handle=True, lang=lang, network=self.spec.network)

    async def _await_ready(self) -> None:
        """Poll the readiness check every 10 ms until the app is healthy (the init timer bounds it)."""
        started = time.monotonic()
        note_at = started + NOT_READY_NOTE_S
        app = self.app
        target = (f"GET http://127.0.0.1:{self.readiness_port}{app.readiness_path}" if app.readiness_protocol == "http"
                  else f"tcp 127.0.0.1:{self.readiness_port}")
        while self.state is State.STARTING:
            try:
                if await self._check():
                    self._became_ready()
                    return
            except (OSError, TimeoutError, ValueError, IndexError):
                pass
            now = time.monotonic()
            if now >= note_at:
                note_at = now + NOT_READY_NOTE_S
                self._emit(f"lamina: the app is not ready after {int((now - started) * 1000)} ms ({target})")
            await asyncio.sleep(READINESS_INTERVAL_S)

    async def _check(self) -> bool:
        assert self.sandbox is not None  # started before the probe
        sock = await self.sandbox.connect_tcp(self.readiness_port, timeout=CONNECT_TIMEOUT_S)
        try:
            if self.app.readiness_protocol == "tcp":
                return True
            request = (f"GET {self.app.readiness_path} HTTP/1.1\r\nHost: 127.0.0.1:{self.readiness_port}\r\n"
                       f"User-Agent: lamina-readiness-check\r\nConnection: close\r\n\r\n").encode()
            await self._loop.sock_sendall(sock, request)
            buf = b""
            while b"\r\n" not in buf:
                chunk = await self._loop.sock_recv(sock, 4096)
                if not chunk or len(buf) > 8192:
                    return False
                buf += chunk
            status = int(buf.split(b"\r\n", 1)[0].split(b" ", 2)[1])
            return self.app.is_healthy(status)
        finally:
            sock.close()

    def _became_ready(self) -> None:
        if self.state is not State.STARTING:
            return
        self.init_ms = (time.perf_counter_ns() - self._started_ns) / 1e6
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._emit(f"INIT_REPORT Init Duration: {self.init_ms:.2f} ms\tPhase: init\tStatus: success")
        self.state = State.IDLE
        self.idle_since = time.monotonic()
        if not self.ready.done():
            self.ready.set_result(None)
        self.pool.env_ready(self, fresh=True)

    def note(self, text: str) -> None:
        """A line from Lamina in the environment's log stream."""
        self._emit(f"lamina: {text}")

    # ------------------------------------------------------------------ slots

    def take(self, inv: Invocation) -> None:
        """Serve inv in one of this environment's free slots (the pool checked there is one)."""
        if isinstance(inv, SlotRequest):
            lease = Lease(self, inv)
            if not inv.grant(lease):
                inv.finish(InvokeResult(b""))  # its caller is gone
                return
            self.leases.add(lease)
        else:
            task = self._loop.create_task(self._invoke(inv))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        self.active += 1
        self.pool.in_flight += 1
        self.invocations += 1

    def slot_done(self, lease: Lease | None) -> None:
        if lease is not None:
            self.leases.discard(lease)
            # A proxied request: its HTTP status is the app's answer, not a function error.
            self.pool.completed((time.perf_counter() - lease.granted_at) * 1000, False)
        self.active -= 1
        self.pool.in_flight -= 1
        self.pool.slot_released(self)

    async def connection(self) -> tuple[AppConnection, bool]:
        sandbox = self.sandbox
        if self.broken is not None or self.state not in (State.IDLE, State.BUSY) or sandbox is None:
            raise AppError(self.broken or "the environment is stopping")
        now = time.monotonic()
        while self._idle_conns:
            conn = self._idle_conns.pop()
            if not conn.closed and now - conn.idle_since < IDLE_CONNECTION_S:
                return conn, True
            conn.close()
        try:
            sock = await sandbox.connect_tcp(self.port, timeout=CONNECT_TIMEOUT_S)
        except OSError as exc:  # TimeoutError too
            reason = (f"the app did not accept a connection on port {self.port}" if isinstance(exc, TimeoutError)
                      else f"the app is unreachable on port {self.port} ({exc.strerror or exc})")
            # lambda-dispatch's rule: only an unreachable app ends an environment (it cannot serve).
            self._emit(f"lamina: {reason}; the environment is replaced")
            self.fail(reason)
            raise AppError(reason) from None
        _, conn = await self._loop.create_connection(AppConnection, sock=sock)
        return conn, False

    def put_back(self, conn: AppConnection, reusable: bool) -> None:
        conn.response = None
        if (reusable and not conn.closed and self.state in (State.IDLE, State.BUSY)
                and len(self._idle_conns) < self.app.max_concurrency):
            conn.idle_since = time.monotonic()
            self._idle_conns.append(conn)
        else:
            conn.close()

    def _close_connections(self) -> None:
        for conn in self._idle_conns:
            conn.close()
        self._idle_conns.clear()

    # ------------------------------------------------------------------ Invoke API: LWA's conversion

    def lambda_context(self, request_id: str, arn: str, trace_id: str | None, deadline_ms: int) -> bytes:
        """x-amzn-lambda-context, as LWA sends it (lambda_runtime's Context)."""
        if self._context_base is None:
            self._context_base = {"function_name": self.spec.name, "memory": self.spec.memory_mb,
                                  "version": self.spec.version, "log_stream": self.stream,
                                  "log_group": self.spec.log_group}
        return orjson.dumps({"request_id": request_id, "deadline": deadline_ms, "invoked_function_arn": arn,
                             "xray_trace_id": trace_id, "client_context": None, "identity": None,
                             "env_config": self._context_base})

    async def _invoke(self, inv: Invocation) -> None:
        started = time.perf_counter()
        lines: list[str] = []
        if (start := platform_log.start(self.spec, inv.id)) is not None:
            self._emit(start)
            lines.append(start)
        try:
            async with asyncio.timeout(self.spec.timeout_s):
                body, error_type = await self._invoke_app(inv)
        except TimeoutError:
            msg = f"Task timed out after {self.spec.timeout_s:.2f} seconds"
            body = json.dumps({"errorMessage": f"RequestId: {inv.id} Error: {msg}",
                               "errorType": "Sandbox.Timedout"}).encode()
            error_type = "Sandbox.Timedout"
            self._emit(msg)
            lines.append(msg)
        except (AppError, asyncio.CancelledError) as exc:
            reason = str(exc) or self.broken or "the environment stopped"
            body = json.dumps({"errorMessage": f"RequestId: {inv.id} Error: {reason}",
                               "errorType": "Runtime.ExitError"}).encode()
            error_type = "Runtime.ExitError"
        except Exception as exc:
            body = json.dumps({"errorMessage": f"RequestId: {inv.id} Error: {exc}",
                               "errorType": "Runtime.Unknown"}).encode()
            error_type = "Runtime.Unknown"
        duration_ms = (time.perf_counter() - started) * 1000
        report = platform_log.report(self.spec, inv.id, duration_ms, self._sandbox_memory_mb(), error_type,
                                     self.init_ms if self.invocations == 1 and self.init_ms else None)
        for record in (platform_log.end(self.spec, inv.id), report):
            if record is not None:
                self._emit(record)
                lines.append(record)
        self.log.flush()
        inv.finish(InvokeResult(body, error_type, "\n".join(lines) + "\n" if inv.sync else "", self.spec.version))
        self.pool.completed(duration_ms, error_type is not None)
        self.slot_done(None)

    async def _invoke_app(self, inv: Invocation) -> tuple[bytes, str | None]:
        req = event_request(inv.payload, self.app)
        deadline_ms = int(time.time() * 1000 + self.spec.timeout_s * 1000)
        headers = [(k, v) for k, v in req.headers if k not in (b"x-amzn-request-context", b"x-amzn-lambda-context")]
        if req.context is not None:
            headers.append((b"x-amzn-request-context", json.dumps(req.context, separators=(",", ":")).encode()))
        headers.append((b"x-amzn-lambda-context",
                        self.lambda_context(inv.id, inv.invoked_arn, inv.trace_id, deadline_ms)))
        if not any(k == b"host" for k, _ in headers):
            headers.append((b"host", f"127.0.0.1:{self.port}".encode()))
        headers.append((b"content-length", str(len(req.body)).encode()))
        head = b"%s %s HTTP/1.1\r\n%s\r\n" % (req.method.encode(), req.target.encode("latin-1"),
                                              b"".join(k + b": " + v + b"\r\n" for k, v in headers))
        conn, _ = await self.connection()
        try:
            resp = conn.begin(head, head_only=req.method == "HEAD")
            if req.body:
                await conn.write(req.body)
            await resp.head()
            try:
                raw = await resp.read_all(MAX_RESPONSE_BYTES)
            except OverflowError as exc:
                conn.close()
                return _too_large(exc.args[0])
            self.put_back(conn, resp.keep_alive)
        except BaseException:
            conn.close()
            raise
        if self.app.is_error(resp.status):
            return (json.dumps({"errorMessage": f"Request failed with configured error status code: {resp.status}",
                                "errorType": "HttpError"}).encode(), "HttpError")
        payload = response_payload(req.shape, resp.status, resp.headers, raw, self.app.invoke_mode)
        if len(payload) > MAX_RESPONSE_BYTES:
            return _too_large(len(payload))
        return payload, None

    # ------------------------------------------------------------------ stop and failures

    def stop(self) -> None:
        if self.active:
            raise RuntimeError("stop() on an environment with requests in flight")
        if self._probe is not None:
            self._probe.cancel()
        self._close_connections()
        super().stop()

    def fail(self, reason: str) -> None:
        """The app cannot serve any more: fail what is in flight and replace the environment."""
        if self.state in (State.STOPPING, State.DEAD):
            return
        self.broken = reason
        self._fail_slots()
        self._die()

    def _fail_slots(self) -> None:
        for lease in list(self.leases):
            lease.break_off()
        for task in list(self.tasks):
            task.cancel()

    def abort(self, reason: str) -> None:
        self.broken = reason
        self._fail_slots()
        self._die()

    def _handle_exit(self) -> None:
        code = self._exit_code_now()
        if self.state is State.STARTING:
            self._init_failed({"errorMessage": f"Runtime exited with error: {exit_status_text(code)}",
                               "errorType": "Runtime.ExitError", "requestId": "", "stackTrace": []}, None)
            return
        if self.state in (State.IDLE, State.BUSY):
            oom = self.sandbox is not None and self.sandbox.oom_killed()
            self.broken = f"the app exited ({exit_status_text(code)}{', out of memory' if oom else ''})"
            self._emit(f"lamina: {self.broken}; the environment is replaced")
            self._fail_slots()
        self._die()

    def _teardown(self) -> None:
        if self._probe is not None and self._probe is not asyncio.current_task():
            self._probe.cancel()
        self._close_connections()
        super()._teardown()


def _too_large(size: int) -> tuple[bytes, str]:
    return (json.dumps({"errorMessage": f"Response payload size ({size} bytes) exceeded maximum allowed payload "
                        f"size ({MAX_RESPONSE_BYTES} bytes).", "errorType": "Function.ResponseSizeTooLarge"}).encode(),
            "Function.ResponseSizeTooLarge")
