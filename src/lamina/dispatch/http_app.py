"""HTTP-app functions: a web server in the environment, many requests at a time (lambda-dispatch / LWA).

A function is an HTTP app when its environment has `AWS_LAMBDA_EXEC_WRAPPER=/opt/bootstrap` (how zip
users turn on the Lambda Web Adapter layer) or any `AWS_LWA_*` variable. Its environment runs the
web server command instead of a handler runtime: the zip's `bootstrap` for `provided.*`, and for a
Python runtime the script the handler names (`run.sh`, run as `$LAMBDA_TASK_ROOT/$_HANDLER`, as the
adapter layer's wrapper does). It is configured with the adapter's own variables (spec/dispatch.md
§2.6): AWS_LWA_PORT (else PORT, else 8080), AWS_LWA_READINESS_CHECK_PORT / _PATH / _PROTOCOL /
_HEALTHY_STATUS, AWS_LWA_ASYNC_INIT, AWS_LWA_REMOVE_BASE_PATH, AWS_LWA_INVOKE_MODE,
AWS_LWA_PASS_THROUGH_PATH, AWS_LWA_AUTHORIZATION_SOURCE, AWS_LWA_ERROR_STATUS_CODES,
AWS_LWA_ENABLE_COMPRESSION (gzip, function URLs in buffered mode: gateway/http_apps.py); and
`AWS_LAMBDA_MAX_CONCURRENCY` (default 10) requests at once per environment.

Lifecycle: the environment polls the readiness check every 10 ms within the init budget and is
ready (the function goes Active) once the app is healthy. Requests wait in the function's queue
until any ready environment has a free slot: `FunctionPool.submit` of a `SlotRequest` resolves to a
`Lease` on one environment, which the function-URL gateway uses to proxy the request as raw HTTP/1.1
over the environment's keep-alive connections (gateway/http_apps.py) and releases when the response
ends. Invocations through the Invoke API are converted the adapter's way (an API Gateway / function
URL event becomes an HTTP request, the response comes back in the event's response shape; any other
event is POSTed to the pass-through path).

Reaching the app: with the linux backend it listens on 127.0.0.1:PORT in the sandbox's own network
namespace, and the server makes its sockets there (Sandbox.connect_tcp, sandbox/netns.py). The
process backend has no namespace, so each environment gets a free port of its own through
AWS_LWA_PORT and PORT (an app must read one of them there).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import math
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httptools
import orjson

from lamina.dispatch.environment import (
    MAX_RESPONSE_BYTES,
    Environment,
    InitFailure,
    State,
    build_environment,
    exit_status_text,
)
from lamina.dispatch.invocation import Invocation, InvokeResult
from lamina.dispatch.pool import FunctionPool
from lamina.httpevent.adapter import event_request, response_payload
from lamina.sandbox import SandboxSpec

if TYPE_CHECKING:
    from lamina.dispatch.dispatcher import Dispatcher
    from lamina.dispatch.spec import FunctionSpec

EXEC_WRAPPER = "/opt/bootstrap"
DEFAULT_PORT = 8080
DEFAULT_MAX_CONCURRENCY = 10
READINESS_INTERVAL_S = 0.01
NOT_READY_NOTE_S = 2.0
CONNECT_TIMEOUT_S = 2.0
# A pooled connection idle longer than this is not reused: apps drop idle keep-alive connections
# (gunicorn after 2 s, uvicorn and Node after 5 s), and reusing one just as it closes fails the request.
IDLE_CONNECTION_S = 1.5
BODY_HIGH_WATER = 1 << 20         # response bytes buffered from the app before reading pauses
BODY_LOW_WATER = 256 << 10



# --------------------------------------------------------------------------------------------------
# Configuration


def is_http_app(spec: FunctionSpec) -> bool:
    return any(k == "AWS_LAMBDA_EXEC_WRAPPER" and v == EXEC_WRAPPER or k.startswith("AWS_LWA_")
               for k, v in spec.environment)


def parse_statuses(text: str) -> tuple[tuple[int, int], ...]:
    """LWA's status lists: "200-399,404" -> ((200, 399), (404, 404)); ValueError if malformed."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        low, sep, high = part.partition("-")
        lo = int(low)
        hi = int(high) if sep else lo
        if not (100 <= lo <= hi <= 599):
            raise ValueError(part)
        out.append((lo, hi))
    if not out:
        raise ValueError(text)
    return tuple(out)


def _in(status: int, ranges: tuple[tuple[int, int], ...]) -> bool:
    return any(lo <= status <= hi for lo, hi in ranges)


@dataclass(frozen=True)
class HttpAppConfig:
    command: str                               # relative to the task root
    port: int = DEFAULT_PORT
    readiness_port: int | None = None          # None: the app's port
    readiness_path: str = "/"
    readiness_protocol: str = "http"
    healthy: tuple[tuple[int, int], ...] = ((100, 499),)
    async_init: bool = False
    base_path: str = ""
    invoke_mode: str = "buffered"
    pass_through_path: str = "/events"
    authorization_source: str = ""
    error_statuses: tuple[tuple[int, int], ...] = ()
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    compression: bool = False                  # AWS_LWA_ENABLE_COMPRESSION (gzip; buffered mode only, as LWA)
    error: str | None = None                   # a configuration problem, reported as the init error

    def is_healthy(self, status: int) -> bool:
        return _in(status, self.healthy)

    def is_error(self, status: int) -> bool:
        return _in(status, self.error_statuses)

    @classmethod
    def from_spec(cls, spec: FunctionSpec) -> HttpAppConfig:
        env = dict(spec.environment)
        command = spec.handler if spec.is_python else "bootstrap"

        def get(name: str) -> str | None:
            # LWA still reads the old unprefixed names (until its 2.0).
            value = env.get(f"AWS_LWA_{name}")
            return value if value is not None else env.get(name)

        try:
            port_text = env.get("AWS_LWA_PORT") or env.get("PORT") or str(DEFAULT_PORT)
            port = _port(port_text, "AWS_LWA_PORT")
            rport_text = get("READINESS_CHECK_PORT")
            rport = _port(rport_text, "AWS_LWA_READINESS_CHECK_PORT") if rport_text else None
            path = get("READINESS_CHECK_PATH") or "/"
            if not path.startswith("/"):
                raise ValueError(f"AWS_LWA_READINESS_CHECK_PATH must start with '/', not {path!r}")
            protocol = (get("READINESS_CHECK_PROTOCOL") or "http").lower()
            if protocol not in ("http", "tcp"):
                raise ValueError(f"AWS_LWA_READINESS_CHECK_PROTOCOL must be http or tcp, not {protocol!r}")
            healthy_text = get("READINESS_CHECK_HEALTHY_STATUS") or "100-499"
            try:
                healthy = parse_statuses(healthy_text)
            except ValueError:
                raise ValueError("AWS_LWA_READINESS_CHECK_HEALTHY_STATUS must be statuses and ranges such as "
                                 f"'200-399,404', not {healthy_text!r}") from None
            errors_text = env.get("AWS_LWA_ERROR_STATUS_CODES") or ""
            try:
                error_statuses = parse_statuses(errors_text) if errors_text.strip() else ()
            except ValueError:
                raise ValueError("AWS_LWA_ERROR_STATUS_CODES must be statuses and ranges such as '500,502-504', "
                                 f"not {errors_text!r}") from None
            mode = (env.get("AWS_LWA_INVOKE_MODE") or "buffered").lower()
            if mode not in ("buffered", "response_stream"):
                raise ValueError(f"AWS_LWA_INVOKE_MODE must be buffered or response_stream, not {mode!r}")
            conc_text = env.get("AWS_LAMBDA_MAX_CONCURRENCY") or str(DEFAULT_MAX_CONCURRENCY)
            if not conc_text.isdigit() or not 1 <= int(conc_text) <= 1000:
                raise ValueError(f"AWS_LAMBDA_MAX_CONCURRENCY must be a whole number from 1 to 1000, not {conc_text!r}")
            base = get("REMOVE_BASE_PATH") or ""
            return cls(command=command, port=port, readiness_port=rport, readiness_path=path,
                       readiness_protocol=protocol, healthy=healthy,
                       async_init=(get("ASYNC_INIT") or "").lower() == "true", base_path=base.rstrip("/"),
                       invoke_mode=mode, pass_through_path=env.get("AWS_LWA_PASS_THROUGH_PATH") or "/events",
                       authorization_source=(env.get("AWS_LWA_AUTHORIZATION_SOURCE") or "").lower(),
                       error_statuses=error_statuses, max_concurrency=int(conc_text),
                       # LWA turns compression off in response_stream mode (with a warning).
                       compression=(get("ENABLE_COMPRESSION") or "").lower() == "true" and mode == "buffered")
        except ValueError as exc:
            return cls(command=command, error=str(exc))


def _port(text: str, name: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"{name} must be a port number, not {text!r}")
    return int(text)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------------
# Talking to the app: raw HTTP/1.1 over keep-alive connections


class AppError(Exception):
    """The app could not be reached, or did not answer properly (the client gets a 502)."""


class AppResponse:
    """One response read from an app connection: status and headers, then the body as it arrives."""

    def __init__(self, conn: AppConnection, head_only: bool) -> None:
        self.conn = conn
        self.head_only = head_only
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.keep_alive = False
        self.complete = False
        self.error: AppError | None = None
        self.received = False            # any byte of it arrived
        self._head: asyncio.Future = asyncio.get_running_loop().create_future()
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._paused = False
        self._wake: asyncio.Future | None = None
        self._until_close = False
        self.parser = httptools.HttpResponseParser(self)

    # httptools callbacks
    def on_message_begin(self) -> None:
        if self.complete:
            self.keep_alive = False  # a second response nobody asked for: the connection is not reusable
        elif not self._head.done():
            self.headers = []  # after an informational (1xx) response, the real one

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.complete:
            self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        if self.complete:
            return
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            return  # informational: the real response follows on the same parser
        self.status = status
        self.keep_alive = self.parser.should_keep_alive()
        names = {n for n, _ in self.headers}
        self._until_close = (b"content-length" not in names and b"transfer-encoding" not in names
                             and status not in (204, 304) and not self.head_only)
        if not self._head.done():
            self._head.set_result(None)
        if self.head_only:
            self._finish()

    def on_body(self, body: bytes) -> None:
        if self.complete:
            return
        self._chunks.append(body)
        self._size += len(body)
        if self._size > BODY_HIGH_WATER and not self._paused and self.conn.transport is not None:
            self._paused = True
            self.conn.transport.pause_reading()
        self._notify()

    def on_message_complete(self) -> None:
        if not self._head.done() and 100 <= self.parser.get_status_code() < 200:
            return
        self._finish()

    # feeding
    def feed(self, data: bytes) -> None:
        self.received = True
        if self.complete:
            if data.strip():
                self.keep_alive = False  # bytes nobody asked for: the connection is not reusable
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.fail(AppError("the app switched protocols, which the proxy does not support"))
        except httptools.HttpParserError as exc:
            self.fail(AppError(f"the app sent an invalid HTTP response: {exc}"))

    def _finish(self) -> None:
        if not self.complete:
            self.complete = True
            self._notify()

    def lost(self, exc: Exception | None) -> None:
        if self.complete:
            return
        if self._head.done() and self._until_close and self.error is None:
            self.keep_alive = False
            self._finish()  # a body delimited by the end of the connection
            return
        what = "before it answered" if not self._head.done() else "in the middle of its response"
        self.fail(AppError(f"the app closed the connection {what}"))

    def fail(self, error: AppError) -> None:
        if self.complete or self.error is not None:
            return
        self.error = error
        self.keep_alive = False
        if not self._head.done():
            self._head.set_exception(error)
            self._head.exception()
        self._notify()

    def _notify(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    # reading
    async def head(self) -> None:
        await self._head

    async def next_chunk(self) -> bytes | None:
        """The next piece of the body, or None at its end; AppError if it broke off."""
        while not self._chunks:
            if self.complete:
                return None
            if self.error is not None:
                raise self.error
            self._wake = asyncio.get_running_loop().create_future()
            await self._wake
        chunk = self._chunks.popleft()
        while self._chunks and len(chunk) < 65536:  # small pieces go out together
            chunk += self._chunks.popleft()
        self._size -= len(chunk)
        if self._paused and self._size < BODY_LOW_WATER and self.conn.transport is not None:
            self._paused = False
            self.conn.transport.resume_reading()
        return chunk

    async def read_all(self, limit: int) -> bytes:
        parts, size = [], 0
        while (chunk := await self.next_chunk()) is not None:
            size += len(chunk)
            if size > limit:
                raise OverflowError(size)
            parts.append(chunk)
        return b"".join(parts)


class AppConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection from the server to the app in one environment."""

    def __init__(self, env: HttpAppEnvironment) -> None:
        self.env = env
        self.transport: asyncio.Transport | None = None
        self.response: AppResponse | None = None
        self.closed = False
        self.idle_since = 0.0
        self._writable: asyncio.Future | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.set_write_buffer_limits(high=256 << 10)

    def data_received(self, data: bytes) -> None:
        if self.response is not None:
            self.response.feed(data)
        else:
            self.close()  # nothing was asked: a confused app

    def eof_received(self) -> bool | None:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.response is not None:
            self.response.lost(exc)
        if self._writable is not None and not self._writable.done():
            self._writable.set_exception(AppError("the app closed the connection"))
            self._writable.exception()

    def pause_writing(self) -> None:
        self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    def begin(self, head: bytes, head_only: bool = False) -> AppResponse:
        """Send a request head; its response will arrive on the returned AppResponse."""
        if self.closed or self.transport is None:
            raise AppError("the connection to the app is closed")
        self.response = AppResponse(self, head_only)
        self.transport.write(head)
        return self.response

    async def write(self, data: bytes) -> None:
        if self.closed or self.transport is None:
            raise AppError("the app closed the connection")
        self.transport.write(data)
        if self._writable is not None:
            await self._writable

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


# --------------------------------------------------------------------------------------------------
# Slots


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


# --------------------------------------------------------------------------------------------------
# The environment


class HttpAppEnvironment(Environment):
    def __init__(self, pool: HttpAppPool, spec: FunctionSpec, backend, log) -> None:
        super().__init__(pool, spec, backend, log)
        self.app: HttpAppConfig = pool.http_app
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
        env = build_environment(self.spec, self.backend, self.stream, self.init_type)
        if self.spec.is_python:
            # As in AWS's Python runtimes: `python` and `python3` first on PATH (run.sh scripts use them).
            env["PATH"] = f"{self.backend.python_bin_dir()}:{env['PATH']}"
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
                           env=env, code_dir=self.spec.code_dir, memory_mb=self.spec.memory_mb,
                           ephemeral_mb=self.spec.ephemeral_mb, log_fd=self._logs.write_fd, network_handle=True)

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
            self.pool.ewma.record((time.perf_counter() - lease.granted_at) * 1000)
        self.active -= 1
        self.pool.in_flight -= 1
        self.pool.slot_released(self)

    async def connection(self) -> tuple[AppConnection, bool]:
        if self.broken is not None or self.state not in (State.IDLE, State.BUSY):
            raise AppError(self.broken or "the environment is stopping")
        now = time.monotonic()
        while self._idle_conns:
            conn = self._idle_conns.pop()
            if not conn.closed and now - conn.idle_since < IDLE_CONNECTION_S:
                return conn, True
            conn.close()
        try:
            sock = await self.sandbox.connect_tcp(self.port, timeout=CONNECT_TIMEOUT_S)
        except OSError as exc:  # TimeoutError too
            reason = (f"the app did not accept a connection on port {self.port}" if isinstance(exc, TimeoutError)
                      else f"the app is unreachable on port {self.port} ({exc.strerror or exc})")
            # lambda-dispatch's rule: only an unreachable app ends an environment (it cannot serve).
            self._emit(f"lamina: {reason}; the environment is replaced")
            self.fail(reason)
            raise AppError(reason) from None
        _, conn = await self._loop.create_connection(lambda: AppConnection(self), sock=sock)
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
        self._emit(f"START RequestId: {inv.id} Version: {self.spec.version}")
        lines = [f"START RequestId: {inv.id} Version: {self.spec.version}"]
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
        for line in (f"END RequestId: {inv.id}",
                     f"REPORT RequestId: {inv.id}\tDuration: {duration_ms:.2f} ms\t"
                     f"Billed Duration: {max(1, math.ceil(duration_ms))} ms\tMemory Size: {self.spec.memory_mb} MB\t"
                     f"Max Memory Used: {self._sandbox_memory_mb()} MB"
                     + (f"\tInit Duration: {self.init_ms:.2f} ms" if self.invocations == 1 and self.init_ms else "")):
            self._emit(line)
            lines.append(line)
        self.log.flush()
        inv.finish(InvokeResult(body, error_type, "\n".join(lines) + "\n" if inv.sync else "", self.spec.version))
        self.pool.ewma.record(duration_ms)
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


# --------------------------------------------------------------------------------------------------
# The pool


class HttpAppPool(FunctionPool):
    """Environments with `max_concurrency` slots each; a queued request goes to any free slot."""

    env_factory = HttpAppEnvironment

    def __init__(self, dispatcher: Dispatcher, spec: FunctionSpec) -> None:
        super().__init__(dispatcher, spec)
        self.http_app = HttpAppConfig.from_spec(spec)
        self.max_concurrency = self.http_app.max_concurrency
        self.in_flight = 0
        self.open: set[HttpAppEnvironment] = set()   # ready, with some but not all slots taken

    @property
    def running(self) -> int:
        return self.in_flight

    def submit(self, inv: Invocation) -> None:
        env = self._free_env()
        if env is None:
            self._enqueue(inv)
            return
        env.take(inv)
        self._place(env)

    def _free_env(self) -> HttpAppEnvironment | None:
        best = None
        for env in self.open:  # the least busy environment that has room
            if best is None or env.active < best.active:
                best = env
        if best is not None:
            return best
        while self.idle:
            env = self.idle.pop()  # the most recently used: the others stay idle and can be reaped
            if env.state is State.IDLE:
                return env
        return None

    def _place(self, env: HttpAppEnvironment) -> None:
        """File a ready environment by how many of its slots are taken: idle, open or full."""
        if env.state not in (State.IDLE, State.BUSY):
            self.open.discard(env)
            return
        if env.active == 0:
            self.open.discard(env)
            if env.state is not State.IDLE or env not in self.idle:
                env.state = State.IDLE
                env.idle_since = time.monotonic()
                if env not in self.idle:
                    self.idle.append(env)
            return
        env.state = State.BUSY
        if env in self.idle:
            self.idle.remove(env)
        if env.active < self.max_concurrency:
            self.open.add(env)
        else:
            self.open.discard(env)

    def _fill(self, env: HttpAppEnvironment) -> None:
        while self.queue and env.active < self.max_concurrency:
            inv = self.queue.popleft()
            if not inv.done:
                env.take(inv)
        self._place(env)

    def env_ready(self, env: Environment, fresh: bool) -> None:
        self.starting.discard(env)
        if fresh:
            self.init_succeeded()
        if self.retired:
            env.stop()
            return
        self._fill(env)  # type: ignore[arg-type]

    def slot_released(self, env: HttpAppEnvironment) -> None:
        if env.state not in (State.IDLE, State.BUSY):
            return
        if self.retired:
            self._place(env)
            if env.active == 0:
                with contextlib.suppress(ValueError):
                    self.idle.remove(env)
                env.stop()
            return
        self._fill(env)

    def env_gone(self, env: Environment) -> None:
        self.open.discard(env)  # type: ignore[arg-type]
        super().env_gone(env)
