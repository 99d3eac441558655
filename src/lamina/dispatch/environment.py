"""One execution environment: a sandboxed runtime process that pulls invocations from its pool.

The environment owns the server's end of the runtime's channel (frames, see
lamina.runtime.wire) and the runtime's log pipe. It writes the START / END / REPORT
lines, enforces the function's timeout, and turns a crash into Runtime.ExitError for the one
invocation it was running. It never picks work itself: when it is ready it tells its pool, and the
pool hands it the next queued invocation (reverse routing).
"""

from __future__ import annotations

import asyncio
import base64
import enum
import json
import math
import signal
import socket
import struct
import time
import uuid
from typing import Protocol

import orjson

from lamina.dispatch import platform_log
from lamina.dispatch.invocation import Invocation, InvokeResult
from lamina.dispatch.logpipe import LogPipe
from lamina.dispatch.runtime_api import RuntimeApiServer
from lamina.dispatch.scaler import Ewma
from lamina.dispatch.service_access import ServiceAccess
from lamina.dispatch.spec import FunctionSpec
from lamina.httpevent.headers import header_block_ok
from lamina.runtime.python_handler import CHANNEL_FD_ENV
from lamina.runtime.startup import OPT_ROOT_ENV
from lamina.runtime.wire import (
    HTTP_PREFIX,
    KIND_ERROR,
    KIND_HTTP_RESULT,
    KIND_INIT_ERROR,
    KIND_INVOKE,
    KIND_READY,
    KIND_RESULT,
    KIND_STREAM,
    PREFIX,
    FrameDecoder,
)
from lamina.sandbox import Sandbox, SandboxBackend, SandboxError, SandboxSpec
from lamina.sandbox.base import ForkedSandbox
from lamina.sandbox.interpreters import LANGUAGE_RUNTIMES, HostRuntimes, Interpreter
from lamina.store.logs import FunctionLog

# AWS gives init 10 s on demand; we allow that plus the function's timeout before giving up.
INIT_GRACE_S = 10.0
STOP_GRACE_S = 2.0
EXIT_REPORT_GRACE_S = 0.2
TAIL_BYTES = 4096
MAX_RESPONSE_BYTES = 6291556  # AWS's synchronous response limit
STREAM_LIMIT_BYTES = 20 * 1024 * 1024  # AWS's limit for a streamed response


class State(enum.Enum):
    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"
    STOPPING = "stopping"
    DEAD = "dead"


class InitFailure(Exception):
    """The environment could not initialise; body is the AWS-shaped error."""

    def __init__(self, body: dict, init_ms: float | None) -> None:
        super().__init__(body.get("errorMessage", "init failed"))
        self.body = body
        self.init_ms = init_ms


class ForkServer(Protocol):
    """Where a Python environment comes from: its function version's zygote (zygote.py)."""

    expires_at: float | None

    async def fork(self, env: Environment, channel: socket.socket, log_fd: int) -> ForkedSandbox: ...


class EnvironmentDispatcher(Protocol):
    """What an environment asks of the dispatcher (through its pool)."""

    freeze_idle_s: float | None
    access: ServiceAccess

    @property
    def runtimes(self) -> HostRuntimes: ...

    def track(self, task: asyncio.Task) -> None: ...


class EnvironmentPool(Protocol):
    """What an environment asks of the pool that started it (pool.FunctionPool): the pool hands out the work and
    the environment only reports how it is doing (ready for more, failed to start, gone)."""

    @property
    def dispatcher(self) -> EnvironmentDispatcher: ...

    @property
    def ewma(self) -> Ewma: ...

    def completed(self, duration_ms: float, error: bool) -> None:
        """An invocation ended after duration_ms (error: with a function error)."""

    async def zygote_for(self) -> ForkServer:
        """The function version's zygote, started if need be; raises InitFailure if its init fails."""
        ...

    def zygote_breached(self) -> None:
        """A fork of the zygote did not enter its sandbox: stop the zygote."""

    def env_ready(self, env: Environment, fresh: bool) -> None:
        """env is free for an invocation (fresh: it has just started)."""

    def env_init_failed(self, env: Environment, failure: InitFailure) -> None: ...

    def env_gone(self, env: Environment) -> None: ...


def exit_status_text(code: int) -> str:
    if code < 0:
        try:
            return f"signal: {signal.Signals(-code).name[3:].lower()}"
        except ValueError:
            return f"signal: {-code}"
    return f"exit status {code}"


def language_of(spec: FunctionSpec, runtimes: HostRuntimes) -> Interpreter | None:
    """The interpreter the function's runtime runs on (None for provided.*: the package brings its own); an
    InitFailure (InvalidRuntime) saying how to install one if this host has none."""
    if spec.runtime not in LANGUAGE_RUNTIMES:
        return None
    lang = runtimes.get(spec.runtime)
    if lang is None:
        reason = runtimes.check(spec.runtime)  # looks again: one may have been installed since
        lang = runtimes.get(spec.runtime)
        if lang is None:
            raise InitFailure({"errorType": "InvalidRuntime", "requestId": "", "stackTrace": [],
                               "errorMessage": reason or f"{spec.runtime} cannot run on this host."}, None)
    return lang


def build_environment(spec: FunctionSpec, backend: SandboxBackend, stream: str,
                      init_type: str = "on-demand", lang: Interpreter | None = None,
                      access: ServiceAccess | None = None) -> dict[str, str]:
    """The reserved Lambda variables plus the function's own, as the runtime sees them; `lang`: the interpreter
    it runs on, first on PATH as /var/lang/bin is on AWS; `access`: the SDK, credentials and endpoint by which it
    reaches Lamina's services (service_access.py)."""
    where = SandboxSpec(name="", argv=[], env={}, code_dir=spec.code_dir, opt_dir=spec.opt_dir)
    task_root = backend.task_root(where)
    opt = backend.opt_root(where)
    env = dict(spec.environment)
    path = f"/usr/local/bin:/usr/bin:/bin:{opt}/bin"
    env.update({
        "PATH": f"{backend.lang_bin_dir(lang)}:{path}" if lang is not None else path,
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "_HANDLER": spec.handler,
        "AWS_REGION": spec.region,
        "AWS_DEFAULT_REGION": spec.region,
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{spec.runtime}",
        "AWS_LAMBDA_FUNCTION_NAME": spec.name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
        "AWS_LAMBDA_FUNCTION_VERSION": spec.version,
        "AWS_LAMBDA_INITIALIZATION_TYPE": init_type,
        "AWS_LAMBDA_LOG_GROUP_NAME": spec.log_group,
        "AWS_LAMBDA_LOG_STREAM_NAME": stream,
        "LAMBDA_TASK_ROOT": task_root,
        "LAMBDA_RUNTIME_DIR": backend.runtime_dir(),
    })
    if spec.log_format == "JSON":
        env["AWS_LAMBDA_LOG_FORMAT"] = "JSON"   # the runtime writes its records as JSON (runtime/log_format.py)
    if spec.log_level:
        env["AWS_LAMBDA_LOG_LEVEL"] = spec.log_level
    # Where layers put native libraries, as AWS's runtimes look for them (Python's paths are the runtime's to add: it
    # runs isolated from PYTHONPATH).
    env["LD_LIBRARY_PATH"] = f"{task_root}:{task_root}/lib:{opt}/lib"
    if opt != "/opt":
        env[OPT_ROOT_ENV] = opt  # the process backend: the layers are not at /opt
    if access is not None:
        env.update(access.environment(spec, backend, lang))
    return env


class _ChannelProtocol(asyncio.Protocol):
    """The server's end of a Python runtime's channel (frames: lamina.runtime.wire). The JSON headers are orjson's
    to encode and decode here (the runtime, stdlib-only, uses json): the hot path does this twice per invocation."""

    def __init__(self, env: Environment) -> None:
        self.env = env
        self.decoder = FrameDecoder(orjson.loads)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Set here, not after create_unix_connection returns: a fast fork's READY can be read (and
        # an invocation delivered) before the awaiting coroutine resumes.
        self.env._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        decoder = self.decoder
        if not decoder.pending and len(data) >= 9:  # 9: wire.PREFIX_SIZE
            # The usual read: exactly one whole frame (a result), handled without the decoder's list.
            total, kind, hlen = PREFIX.unpack_from(data)
            if len(data) == 4 + total:
                self.env.on_frame(kind, orjson.loads(data[9 : 9 + hlen]) if hlen else {}, data[9 + hlen :])
                return
        for frame in decoder.feed(data):
            self.env.on_frame(*frame)

    def connection_lost(self, exc: Exception | None) -> None:
        self.env._on_channel_lost()


class Environment:
    def __init__(self, pool: EnvironmentPool, spec: FunctionSpec, backend: SandboxBackend, log: FunctionLog) -> None:
        self.pool = pool
        self.spec = spec
        self.backend = backend
        self.log = log
        self.id = uuid.uuid4().hex
        self.stream = time.strftime("%Y/%m/%d/", time.gmtime()) + f"[{spec.version}]{self.id}"
        self.state = State.STARTING
        self.current: Invocation | None = None
        self.ready: asyncio.Future = asyncio.get_running_loop().create_future()
        self.idle_since = time.monotonic()
        self.invocations = 0
        self.init_ms: float | None = None
        self.sandbox: Sandbox | None = None
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._tail: list[str] = []
        self._tail_len = 0
        self._timer: asyncio.TimerHandle | None = None     # the init deadline
        self._deadline = 0.0                                # the invocation's (monotonic), see _check_deadline
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._started_ns = 0
        self._exit_code: int | None = None
        self._channel_lost = False
        self._exit_timer: asyncio.TimerHandle | None = None
        self._finished = False
        self._last_rss_kb: int | None = None
        self.restore_ms: float | None = None
        self.frozen = False
        self._freeze_timer: asyncio.TimerHandle | None = None
        self._start: int | None = None  # when the invocation started (ms), until its START line is written
        self._records: bytes | None = None  # see _records_template
        self._streamed = 0  # bytes of the current invocation's response streamed so far (KIND_STREAM)
        self._stream_parts: list[bytes] = []  # those bytes, when the invocation has no stream to take them
        self._logs: LogPipe | None = None
        self._api: RuntimeApiServer | None = None  # custom runtimes
        # Provisioned concurrency: kept started by its pool, never reaped (pool.provision).
        # When to replace it (time.monotonic): before the credentials it was started with expire (service_access.py).
        self.expires_at: float | None = None
        self.provisioned = False

    @property
    def init_type(self) -> str:
        """AWS_LAMBDA_INITIALIZATION_TYPE as this environment's runtime sees it."""
        if self.provisioned:
            return "provisioned-concurrency"
        # A fork of the zygote is restored from its snapshot, as SnapStart's environments are (runtime/snapshot.py).
        return "snap-start" if self.spec.is_python and not self.spec.init_per_environment else "on-demand"

    # ------------------------------------------------------------------ start and stop

    async def start(self) -> None:
        """Start the sandbox; the outcome arrives later as READY, INIT_ERROR or an exit."""
        self._logs = LogPipe(self._emit)
        try:
            await self._launch()
        except InitFailure as exc:
            self._init_failed(exc.body, exc.init_ms)
            return
        except SandboxError as exc:
            self._init_failed({"errorMessage": str(exc), "errorType": "Runtime.InvalidEntrypoint",
                               "requestId": "", "stackTrace": []}, None)
            return
        finally:
            self._logs.close_write_end()
        if self.state is State.DEAD:  # stopped while starting
            self._teardown()
            return
        self._timer = self._loop.call_later(INIT_GRACE_S + self.spec.timeout_s, self._on_init_timeout)
        self._launched()

    async def _launch(self) -> None:
        """Start the sandbox (subclasses start other kinds of environment)."""
        if self.spec.is_python:
            await self._start_forked()
        elif self.spec.is_node:
            await self._start_node()
        else:
            await self._start_runtime_api()

    def _launched(self) -> None:
        """The sandbox is up and the init clock runs (a hook for subclasses)."""

    def _log_write_fd(self) -> int:
        """The log pipe's write end (start() made the pipe): the runtime's stdout and stderr."""
        assert self._logs is not None
        return self._logs.write_fd

    async def _start_forked(self) -> None:
        """Python handlers: a fork of the function's zygote (its pre-initialized snapshot)."""
        zygote = await self.pool.zygote_for()
        if self.state is State.DEAD:
            return
        self.expires_at = zygote.expires_at  # what init made, its credentials among it, is the zygote's
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self._started_ns = time.perf_counter_ns()
        try:
            self.sandbox = await zygote.fork(self, child, self._log_write_fd())
        except SandboxError:
            parent.close()
            raise
        finally:
            child.close()
        await self._loop.create_unix_connection(lambda: _ChannelProtocol(self), sock=parent)

    async def _start_node(self) -> None:
        """Node.js handlers: node running the runtime's node_handler.mjs, on the channel as a Python environment
        (Node.js cannot fork an initialised process: each environment is a process of its own, and a pool keeps
        initialised spares, pool.py)."""
        lang = language_of(self.spec, self.pool.dispatcher.runtimes)
        assert lang is not None  # a nodejs runtime has one
        where = SandboxSpec(name="", argv=[], env={}, code_dir=self.spec.code_dir, opt_dir=self.spec.opt_dir)
        task_root, opt = self.backend.task_root(where), self.backend.opt_root(where)
        runtime_dir = self.backend.runtime_dir()
        access = self.pool.dispatcher.access
        self.expires_at = access.expires_at()
        env = build_environment(self.spec, self.backend, self.stream, self.init_type, lang=lang, access=access)
        # AWS's NODE_PATH: layers' node_modules (/opt/nodejs/nodeN/node_modules, /opt/nodejs/node_modules), the
        # runtime's (on AWS the SDK's: here Lamina's JavaScript SDK, service_access.py), the task root. The function's
        # own node_modules comes first, as node resolves it. (ES modules do not read NODE_PATH: the runtime adds
        # resolution hooks for a handler module that imports what only NODE_PATH has, node_esm_paths.mjs.)
        sdk = access.node_modules(self.backend, lang)
        env["NODE_PATH"] = (f"{opt}/nodejs/node{lang.major}/node_modules:{opt}/nodejs/node_modules:"
                            f"{runtime_dir}/node_modules:{sdk + ':' if sdk else ''}{runtime_dir}:{task_root}")
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env[CHANNEL_FD_ENV] = str(child.fileno())
        # AWS's bootstrap: a tenth of the memory for the young generation, the rest for the old one, so V8
        # collects before the memory limit is reached.
        new_space = self.spec.memory_mb // 10
        argv = [lang.executable, "--expose-gc", "--max-http-header-size", "81920",
                f"--max-semi-space-size={new_space // 2}", f"--max-old-space-size={self.spec.memory_mb - new_space}",
                f"{runtime_dir}/node_handler.mjs"]
        spec = SandboxSpec(name=f"{self.spec.name}-{self.id[:12]}", argv=argv, env=env, code_dir=self.spec.code_dir,
                           opt_dir=self.spec.opt_dir, memory_mb=self.spec.memory_mb,
                           ephemeral_mb=self.spec.ephemeral_mb, pass_fds=(child.fileno(),),
                           log_fd=self._log_write_fd(), lang=lang, init_boost=True, network=self.spec.network,
                           sdk_dir=access.sdk_for(lang))
        self._started_ns = time.perf_counter_ns()
        try:
            self.sandbox = await self.backend.start(spec, self.on_exit)
        except SandboxError:
            parent.close()
            raise
        finally:
            child.close()
        await self._loop.create_unix_connection(lambda: _ChannelProtocol(self), sock=parent)

    async def _start_runtime_api(self) -> None:
        """Custom runtimes: the zip's bootstrap, talking to the Runtime API served for this sandbox."""
        where = SandboxSpec(name="", argv=[], env={}, code_dir=self.spec.code_dir, opt_dir=self.spec.opt_dir)
        # The package's bootstrap, else a layer's (a custom runtime shipped as a layer), as on AWS.
        bootstrap = f"{self.backend.task_root(where)}/bootstrap"
        if self.spec.opt_dir is not None and not (self.spec.code_dir / "bootstrap").exists():
            bootstrap = f"{self.backend.opt_root(where)}/bootstrap"
        access = self.pool.dispatcher.access
        self.expires_at = access.expires_at()
        env = build_environment(self.spec, self.backend, self.stream, self.init_type, access=access)
        spec = SandboxSpec(name=f"{self.spec.name}-{self.id[:12]}", argv=[bootstrap], env=env,
                           code_dir=self.spec.code_dir, opt_dir=self.spec.opt_dir, memory_mb=self.spec.memory_mb,
                           ephemeral_mb=self.spec.ephemeral_mb, log_fd=self._log_write_fd(), runtime_api=True,
                           network=self.spec.network)
        self._started_ns = time.perf_counter_ns()
        self.sandbox = await self.backend.start(spec, self.on_exit)
        if self.sandbox.runtime_api_socket is None:
            raise SandboxError("the sandbox did not hand over its Runtime API socket")
        self._api = RuntimeApiServer(self, self.sandbox.runtime_api_socket, function_name=self.spec.name,
                                     function_version=self.spec.version, handler=self.spec.handler)
        await self._api.start()

    def stop(self) -> None:
        """Stop an idle or starting environment; a busy one finishes its invocation first (see pool)."""
        if self.state in (State.STOPPING, State.DEAD):
            return
        if self.state is State.BUSY:
            raise RuntimeError("stop() on a busy environment")
        self.state = State.STOPPING
        self._cancel_deadline()
        self._unfreeze()
        if self._transport is not None:
            self._transport.close()  # the runtime sees EOF and exits
        if self._api is not None:
            self._api.shutdown()
        if self.sandbox is not None:
            self.sandbox.terminate()
            self._loop.call_later(STOP_GRACE_S, self._kill)
        else:
            self._finish()

    def _kill(self) -> None:
        if self.sandbox is not None and self._exit_code is None:
            self.sandbox.kill()

    # ------------------------------------------------------------------ invocations

    def park(self) -> None:
        """Idle: freeze the sandbox once it has stayed idle a moment (a one-at-a-time function's
        environment does nothing between invocations; back-to-back traffic never pays a thaw).

        The freeze timer is not cancelled when the environment gets work: it fires at most once per
        freeze_idle_s and re-arms itself from idle_since, so back-to-back invocations cost no timer."""
        if self.pool.dispatcher.freeze_idle_s is not None and self.sandbox is not None and self._freeze_timer is None:
            self._freeze_timer = self._loop.call_later(self.pool.dispatcher.freeze_idle_s, self._freeze)

    def _freeze(self) -> None:
        self._freeze_timer = None
        if self.state is not State.IDLE or self.sandbox is None or self.frozen:
            return  # busy or gone: the next park() arms it again
        idle_s = self.pool.dispatcher.freeze_idle_s
        left = idle_s - (time.monotonic() - self.idle_since) if idle_s is not None else 0.0
        if left > 0.001:
            self._freeze_timer = self._loop.call_later(left, self._freeze)
            return
        self.frozen = self.sandbox.freeze()

    def _unfreeze(self, keep_timer: bool = False) -> None:
        if self._freeze_timer is not None and not keep_timer:
            self._freeze_timer.cancel()
            self._freeze_timer = None
        if self.frozen:
            self.frozen = False
            if self.sandbox is not None:  # frozen: it had one
                self.sandbox.thaw()

    def deliver(self, inv: Invocation) -> None:
        """Run one invocation (the pool calls this only when the environment is IDLE)."""
        if self.frozen:
            self._unfreeze(keep_timer=True)
        self.state = State.BUSY
        self.current = inv
        self.invocations += 1
        if self._streamed:
            self._streamed = 0
            self._stream_parts = []
        if self._tail:
            self._tail.clear()
            self._tail_len = 0
        # START is written with END and REPORT in one go (_complete), or before the first line the
        # invocation logs (_emit): one log write per invocation on the hot path. Someone following the log
        # live gets it at once.
        now = time.time()
        self._start = int(now * 1000)
        if self.log.followers:
            self._emit_start()
        timeout = self.spec.timeout_s
        header = {"id": inv.id, "deadline_ms": int((now + timeout) * 1000), "arn": inv.invoked_arn}
        if inv.client_context is not None:
            header["client_context"] = inv.client_context
        if inv.trace_id:
            header["trace_id"] = inv.trace_id
        if inv.tenant_id is not None:
            header["tenant_id"] = inv.tenant_id  # context.tenant_id; Lambda-Runtime-Aws-Tenant-Id
        if inv.http:
            header["http"] = 1  # a BUFFERED function URL: the runtime may answer with the mapped response
        self._started_ns = time.perf_counter_ns()
        self._deadline = time.monotonic() + timeout
        if self._deadline_timer is None:
            self._deadline_timer = self._loop.call_later(timeout, self._check_deadline)
        if self._api is not None:
            self._api.deliver(header, inv.payload)
        else:
            transport = self._transport
            assert transport is not None  # connected before the runtime could say READY
            head, payload = orjson.dumps(header), inv.payload   # wire.encode_frame, inline
            transport.write(PREFIX.pack(5 + len(head) + len(payload), KIND_INVOKE, len(head)) + head + payload)

    def _stream_piece(self, piece: bytes) -> None:
        """A piece of the response a Runtime API runtime streams: to the invocation's stream as it comes, else
        kept for the result (a plain Invoke gets the whole response, within the synchronous limit)."""
        before = self._streamed
        self._streamed = before + len(piece)
        if self._streamed > STREAM_LIMIT_BYTES:
            return  # the result says so (_streamed_result)
        stream = self.current.stream  # type: ignore[union-attr]
        if stream is not None:
            stream(piece)
        elif self._streamed <= MAX_RESPONSE_BYTES:
            self._stream_parts.append(piece)
        elif before <= MAX_RESPONSE_BYTES:
            self._stream_parts = []  # over the synchronous limit: only the size still matters

    def _streamed_result(self, body: bytes, error_type: str | None) -> tuple[bytes, str | None, bool]:
        """(body, error type, whether the response went to the invocation's stream) at the end of a streamed
        response; the body of the final frame is what came after the pieces (nothing, from the Runtime API)."""
        size, parts = self._streamed, self._stream_parts
        self._streamed, self._stream_parts = 0, []
        to_stream = self.current is not None and self.current.stream is not None
        if size > STREAM_LIMIT_BYTES:
            return _too_large_body(STREAM_LIMIT_BYTES), "Function.ResponseSizeTooLarge", to_stream
        if error_type is not None or to_stream:
            return body, error_type, to_stream
        if size > MAX_RESPONSE_BYTES:
            return _too_large_body(MAX_RESPONSE_BYTES, size), "Function.ResponseSizeTooLarge", False
        return b"".join(parts) + body, None, False

    def _complete(self, body: bytes, error_type: str | None, rss_kb: int | None,
                  extra_lines: tuple[str, ...] = (), http: tuple[int, bytes] | None = None,
                  streamed: bool = False) -> None:
        inv = self.current
        assert inv is not None
        duration_ms = (time.perf_counter_ns() - self._started_ns) / 1e6
        self.pool.completed(duration_ms, error_type is not None)
        for line in extra_lines:
            self._emit(line)
        start = self._start
        log = self.log
        if (start is not None and not (inv.sync and inv.keep_log) and self.invocations > 1 and not log.followers
                and self._records is not None):
            # The steady state (START not written yet, no tail, no Init Duration, Text records: _records_template
            # made at the first invocation): the three records from one template, no message text to build and
            # encode (what append_lines would write, byte for byte; the request id is a UUID Lamina made, which
            # needs no JSON escaping).
            self._start = None
            now = int(time.time() * 1000)
            rid = inv.id.encode()
            if rss_kb:
                self._last_rss_kb = rss_kb
                used_mb = (rss_kb + 1023) // 1024
            else:
                used_mb = self._used_mb(rss_kb)
            billed = math.ceil(duration_ms)
            log.write_encoded(self._records % (
                start, rid, now, rid, now, rid, duration_ms, billed if billed > 1 else 1, used_mb))
            log_text = ""
        else:
            if self._records is None and not platform_log.is_json(self.spec):
                self._records_template()   # for the steady state above, from the next invocation on
            end = platform_log.end(self.spec, inv.id)
            report = self._report_line(inv.id, duration_ms, rss_kb, error_type)
            if inv.sync and inv.keep_log:
                for record in (end, report):
                    if record is not None:
                        self._emit(record)
                log_text = "\n".join(self._tail) + "\n" if self._tail else ""
            else:  # no tail to keep: straight to the function's log, START (if not written yet) included
                now = int(time.time() * 1000)
                self._start = None
                records = ((now, end), (now, report)) if start is None else (
                    (start, self._start_line(inv, start)), (now, end), (now, report))
                lines = tuple((ms, line) for ms, line in records if line is not None)
                if lines:
                    log.append_lines(self.stream, lines)
                log_text = ""
        log.flush_soon()
        self.current = None
        inv.finish(InvokeResult(body, error_type, log_text, self.spec.version, http, streamed))

    def _used_mb(self, rss_kb: int | None) -> int:
        """Max Memory Used: the runtime's peak RSS (the last one it reported), else the sandbox's peak."""
        if rss_kb:
            self._last_rss_kb = rss_kb
        else:
            rss_kb = self._last_rss_kb
        return (rss_kb + 1023) // 1024 if rss_kb else self._sandbox_memory_mb()

    def _records_template(self) -> bytes:
        """START, END and REPORT records of one invocation as NDJSON, for bytes %: (start ms, id, end ms, id, end
        ms, id, duration ms, billed ms, used MB). The same lines FunctionLog.append_lines writes."""
        template = self._records
        if template is None:
            stream = orjson.dumps(self.stream).replace(b"%", b"%%")
            version = orjson.dumps(self.spec.version)[1:-1].replace(b"%", b"%%")
            tail = b'","logStreamName":' + stream + b"}\n"
            template = self._records = (
                b'{"timestamp":%d,"message":"START RequestId: %b Version: ' + version + tail
                + b'{"timestamp":%d,"message":"END RequestId: %b' + tail
                + b'{"timestamp":%d,"message":"REPORT RequestId: %b\\tDuration: %.2f ms\\tBilled Duration: %d ms'
                + b"\\tMemory Size: " + str(self.spec.memory_mb).encode() + b" MB\\tMax Memory Used: %d MB" + tail)
        return template

    def _report_line(self, request_id: str, duration_ms: float, rss_kb: int | None,
                     error_type: str | None = None) -> str | None:
        """REPORT (platform.report in the JSON log format; None where SystemLogLevel leaves it out)."""
        first = self.invocations == 1
        return platform_log.report(self.spec, request_id, duration_ms, self._used_mb(rss_kb), error_type,
                                   self.init_ms if first else None, self.restore_ms if first else None)

    def _sandbox_memory_mb(self) -> int:
        peak = self.sandbox.max_memory_bytes() if self.sandbox else None
        return math.ceil(peak / (1024 * 1024)) if peak else 0

    # ------------------------------------------------------------------ the channel

    def on_frame(self, kind: int, header: dict, body: bytes) -> None:
        # The runtime flushed its output before sending this: read it all, so every line the
        # handler printed is logged before the invocation's END. A result marked quiet ("q") was sent
        # when the pipe held no unread byte (the runtime asked the kernel): all of it is logged already,
        # and the drain would be a read(2) that returns nothing.
        logs = self._logs
        if logs is not None:
            if "q" not in header:
                logs.drain()
            if logs.partial:
                logs.end_line()
        # What follows handles the frame (in this method: a call less per invocation).
        if self.state is State.DEAD:
            return
        if kind == KIND_READY and self.state is State.STARTING:
            if self.sandbox is not None and not self.sandbox.confined():
                # Only a tampered zygote gets here (its init code altered how it forks): kill it,
                # which ends everything it forked.
                self.pool.zygote_breached()
                self._init_failed({"errorMessage": "The environment did not enter its sandbox; its zygote was "
                                   "stopped. Check what the function's init code does.",
                                   "errorType": "Runtime.InvalidEntrypoint", "requestId": "", "stackTrace": []},
                                  None)
                return
            # From the start request to ready, as a user pays it: a fork of the zygote (Restore
            # Duration), or process start + runtime start + user init (Init Duration).
            elapsed = (time.perf_counter_ns() - self._started_ns) / 1e6
            if self.sandbox is not None:
                self.sandbox.end_init()  # a Node.js environment's init had the host's CPUs
            if self.spec.is_python and not self.spec.init_per_environment:
                self.restore_ms = elapsed
            else:
                self.init_ms = elapsed
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self.state = State.IDLE
            self.idle_since = time.monotonic()
            if not self.ready.done():
                self.ready.set_result(None)
            self.pool.env_ready(self, fresh=True)
        elif kind in (KIND_RESULT, KIND_ERROR, KIND_HTTP_RESULT) and self.state is State.BUSY \
                and self.current is not None:
            if header.get("id") != self.current.id:
                return
            http = None
            if kind == KIND_HTTP_RESULT:
                http, body = _http_result(body)
                if http is None:
                    kind = KIND_ERROR
            error_type = None
            if kind == KIND_ERROR:
                # The Runtime API reports the type apart from the body (a header, or its default).
                error_type = header.get("error_type") or _error_type(body)
            streamed = False
            if self._streamed:
                body, error_type, streamed = self._streamed_result(body, error_type)
            if len(body) > MAX_RESPONSE_BYTES:
                body, error_type = _too_large_body(MAX_RESPONSE_BYTES, len(body)), "Function.ResponseSizeTooLarge"
            self._complete(body, error_type, header.get("rss_kb"), http=http, streamed=streamed)
            if "exit" in header:
                # The runtime ends itself after this answer (Node.js, after an uncaught exception, as AWS's does):
                # nothing more goes to it.
                self._die()
                return
            self.state = State.IDLE
            self.idle_since = time.monotonic()
            self.pool.env_ready(self, fresh=False)
        elif kind == KIND_STREAM and self.state is State.BUSY and self.current is not None:
            if header.get("id") == self.current.id:
                self._stream_piece(body)
        elif kind == KIND_INIT_ERROR:
            try:
                err = json.loads(body)
            except ValueError:
                err = {"errorMessage": body.decode("utf-8", "replace"), "errorType": "Runtime.Unknown"}
            self._init_failed(err, header.get("init_ms"))

    def _on_channel_lost(self) -> None:
        self._channel_lost = True
        if self.state in (State.STARTING, State.IDLE, State.BUSY) and self.sandbox is not None \
                and self._exit_code is None:
            # The runtime closed its channel: it cannot be asked for anything more. Usually it is
            # exiting; give its exit status a moment to arrive so the error can name it.
            self._loop.call_later(EXIT_REPORT_GRACE_S, self._kill)
        self._maybe_handle_exit()

    # ------------------------------------------------------------------ logs

    def _emit(self, text: str) -> None:
        if self._start is not None:
            self._emit_start()
        self._emit_line(text)

    def _emit_start(self) -> None:
        start, self._start = self._start, None
        line = self._start_line(self.current, start)  # type: ignore[arg-type]
        if line is not None:
            self._emit_line(line, start)

    def _start_line(self, inv: Invocation, ms: int | None = None) -> str | None:
        return platform_log.start(self.spec, inv.id, ms)

    def _emit_line(self, text: str, timestamp_ms: int | None = None) -> None:
        self.log.append(self.stream, text, timestamp_ms)
        if self.current is not None and self.current.sync and self.current.keep_log:
            self._tail.append(text)
            self._tail_len += len(text) + 1
            while self._tail_len > 2 * TAIL_BYTES and len(self._tail) > 1:
                self._tail_len -= len(self._tail.pop(0)) + 1

    # ------------------------------------------------------------------ failures

    def _check_deadline(self) -> None:
        """The function's timeout. One timer per environment, not one per invocation: it is not cancelled
        when an invocation ends; when it fires it re-arms itself for the current invocation's deadline, or
        stops while the environment is idle (the next deliver() arms it again)."""
        self._deadline_timer = None
        if self.state is not State.BUSY or self.current is None:
            return
        left = self._deadline - time.monotonic()
        if left > 0:
            self._deadline_timer = self._loop.call_later(left, self._check_deadline)
            return
        self._on_timeout()

    def _cancel_deadline(self) -> None:
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None

    def _on_timeout(self) -> None:
        if self.state is not State.BUSY or self.current is None:
            return
        inv = self.current
        msg = f"Task timed out after {self.spec.timeout_s:.2f} seconds"
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z"
        body = json.dumps({"errorMessage": f"RequestId: {inv.id} Error: {msg}", "errorType": "Sandbox.Timedout"})
        self._complete(body.encode(), "Sandbox.Timedout", None, (f"{stamp} {inv.id} {msg}",))
        self._die()

    def _on_init_timeout(self) -> None:
        self._timer = None
        if self.state is State.STARTING:
            limit = INIT_GRACE_S + self.spec.timeout_s
            self._init_failed({"errorMessage": f"INIT timed out after {limit:.2f} seconds",
                               "errorType": "Sandbox.Timedout", "requestId": "", "stackTrace": []}, limit * 1000)

    def _init_failed(self, body: dict, init_ms: float | None) -> None:
        if self.state is State.DEAD:
            return
        was = self.state
        self.state = State.DEAD
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        failure = InitFailure(body, init_ms)
        if not self.ready.done():
            self.ready.set_exception(failure)
            self.ready.exception()  # mark retrieved: a prewarm may not be waiting
        if was is State.STARTING:
            self.pool.env_init_failed(self, failure)
        self._teardown()

    def fail_with_init_error(self, inv: Invocation, failure: InitFailure) -> None:
        """Answer one queued invocation with this environment's init error, with its log lines."""
        self.current = inv
        self.invocations = 1
        self.init_ms = failure.init_ms
        self._started_ns = time.perf_counter_ns()
        if (start := self._start_line(inv)) is not None:
            self._emit(start)
        err = dict(failure.body, requestId=inv.id)
        self._complete(json.dumps(err).encode(), err.get("errorType") or "Runtime.Unknown", None)

    def abort(self, reason: str) -> None:
        """Stop now; an invocation in flight fails with reason (used when the server stops)."""
        if self.state is State.BUSY and self.current is not None:
            body = json.dumps({"errorType": "Runtime.ExitError",
                               "errorMessage": f"RequestId: {self.current.id} Error: {reason}"}).encode()
            self._complete(body, "Runtime.ExitError", None, (reason,))
        self._die()

    def on_exit(self, code: int) -> None:
        self._exit_code = code
        if not self._channel_lost:
            # Frames sent just before exiting may still be in the socket: give them a moment.
            self._exit_timer = self._loop.call_later(0.1, self._handle_exit)
        else:
            self._handle_exit()

    def _maybe_handle_exit(self) -> None:
        if self._exit_code is not None:
            self._handle_exit()

    def _exit_code_now(self) -> int:
        """The exit status, once its last output is logged (shared by the subclasses' exit handling)."""
        if self._exit_timer is not None:
            self._exit_timer.cancel()
            self._exit_timer = None
        if self._logs is not None:
            self._logs.drain()
        return self._exit_code if self._exit_code is not None else -9

    def _handle_exit(self) -> None:
        code = self._exit_code_now()
        if self.state is State.BUSY and self.current is not None:
            inv = self.current
            status = exit_status_text(code)
            error_type = "Runtime.OutOfMemory" if self.sandbox is not None and self.sandbox.oom_killed() \
                else "Runtime.ExitError"
            msg = f"RequestId: {inv.id} Error: Runtime exited with error: {status}"
            body = json.dumps({"errorType": error_type, "errorMessage": msg}).encode()
            self._complete(body, error_type, None, (msg, error_type))
        elif self.state is State.STARTING:
            self._init_failed({"errorMessage": f"Runtime exited with error: {exit_status_text(code)}",
                               "errorType": "Runtime.ExitError", "requestId": "", "stackTrace": []}, None)
            return
        self._die()

    def _die(self) -> None:
        if self.state is State.DEAD and self._finished:
            return
        self.state = State.DEAD
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._cancel_deadline()
        self._teardown()

    def _teardown(self) -> None:
        self._cancel_deadline()
        self._unfreeze()
        if self._transport is not None:
            self._transport.close()
        if self._api is not None:
            self._api.close()
        if self.sandbox is not None and self._exit_code is None:
            self.sandbox.kill()
        self._finish()

    def _finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        self.state = State.DEAD
        if not self.ready.done():
            self.ready.set_exception(InitFailure({"errorMessage": "The environment was stopped while starting.",
                                                  "errorType": "Runtime.ExitError"}, None))
            self.ready.exception()
        self.pool.env_gone(self)
        self.pool.dispatcher.track(self._loop.create_task(self._cleanup()))

    async def _cleanup(self) -> None:
        if self.sandbox is not None:
            await self.sandbox.cleanup()
        if self._logs is not None:
            self._logs.close()  # after the processes are gone: their last words are logged
        self.log.flush()


_BAD_HTTP_RESULT = json.dumps({"errorMessage": "The runtime sent a function URL response Lamina cannot send.",
                               "errorType": "Runtime.InvalidResponse"}).encode()


_checked_blocks: dict[bytes, bool] = {}  # a function sends the same few header blocks again and again


def _too_large_body(limit: int, size: int | None = None) -> bytes:
    """Function.ResponseSizeTooLarge's error body (AWS names the size when it knows it)."""
    of = "" if size is None else f" ({size} bytes)"
    return json.dumps({"errorMessage": f"Response payload size{of} exceeded maximum allowed payload size ({limit} "
                       "bytes).", "errorType": "Function.ResponseSizeTooLarge"}).encode()


def _http_result(body: bytes) -> tuple[tuple[int, bytes] | None, bytes]:
    """A KIND_HTTP_RESULT body: ((status, header block), response body), or (None, an error body) if it is not
    one Lamina may send as it is (the runtime is the function's own process)."""
    try:
        status, length = HTTP_PREFIX.unpack_from(body)
    except struct.error:
        return None, _BAD_HTTP_RESULT
    start = HTTP_PREFIX.size
    block = body[start : start + length]
    if len(block) != length or not 100 <= status <= 599:
        return None, _BAD_HTTP_RESULT
    ok = _checked_blocks.get(block)
    if ok is None:
        ok = header_block_ok(block)
        if len(block) <= 1024:
            if len(_checked_blocks) >= 1024:
                _checked_blocks.clear()
            _checked_blocks[block] = ok
    if not ok:
        return None, _BAD_HTTP_RESULT
    return (status, block), body[start + length :]


def _error_type(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return "Unhandled"
    if isinstance(data, dict) and isinstance(data.get("errorType"), str):
        return data["errorType"]
    return "Unhandled"


def tail_log(text: str) -> str:
    """X-Amz-Log-Result: base64 of the last 4 KB of the invocation's log."""
    raw = text.encode()[-TAIL_BYTES:]
    return base64.b64encode(raw).decode()
