"""The Python handler runtime: runs inside an environment, pulls invocations, calls `module.function`.

This file is self-contained and stdlib-only: the sandbox runs it as a script with `python -I -S`, so
nothing of Lamina or its dependencies is importable there (and the function cannot see them). The
server imports the framing helpers (`encode_frame`, `FrameDecoder`, the kinds) from this same file so
both ends share one definition of the wire format.

Wire format on the environment's channel (a stream socket inherited from the server):
    >I length of the rest | B kind | >I header length | header (JSON object) | body (bytes)
Environment -> server: READY, RESULT, ERROR, INIT_ERROR. Server -> environment: INVOKE.
A RESULT or ERROR frame also means "give me the next one": posting a result and pulling the next
invocation is one round trip.

Before every frame it sends, the runtime flushes stdout/stderr into its log pipe; the server drains
that pipe before handling the frame, so every log line lands in the right invocation's log even
though logs and frames travel on different file descriptors. A RESULT or ERROR frame whose header
says `"q":1` ("quiet") tells the server that the pipe held no unread byte when the frame was sent
(the runtime asked the kernel, FIONREAD, after flushing: this covers C-level writes to fd 1/2 and
child processes' output too), so the server may skip that drain: everything written before the
check has already been read and logged.

Zygote mode (`_LAMINA_ZYGOTE=1`): the process imports the handler and runs its init once, then
serves FORK requests on its channel. Each fork becomes one environment with the channel and log
pipe the server passed along (SCM_RIGHTS); under the linux backend it first joins its cgroups and
enters namespaces of its own, then drops every privilege (see _become_environment).
"""

from __future__ import annotations

import json
import os
import re
import struct
import sys
import time
from fcntl import ioctl
from resource import RUSAGE_SELF, getrusage

# ru_maxrss is the process's peak RSS (its memory map's high-water mark) either way; asked per thread the kernel
# skips summing every thread's CPU time under the run queue's lock, which RUSAGE_SELF does on each invocation.
try:
    from resource import RUSAGE_THREAD as _RUSAGE_MAXRSS
except ImportError:  # not Linux
    _RUSAGE_MAXRSS = RUSAGE_SELF

try:
    from termios import FIONREAD
except ImportError:  # an interpreter built without termios: results are never quiet, the server always drains
    FIONREAD = None

KIND_READY = 1
KIND_INVOKE = 2
KIND_RESULT = 3
KIND_ERROR = 4
KIND_INIT_ERROR = 5
KIND_FORK = 6      # server -> zygote: {env, stream, init_type, tmp_mb, isolate, nfds}; fds: channel, log, cgroup.procs
KIND_FORKED = 7    # zygote -> server: {env, pid}
KIND_EXITED = 8    # zygote -> server: {env, status} (negative: killed by that signal)
KIND_HTTP_RESULT = 9  # environment -> server: a function-URL response, mapped here (see http_response)
KIND_STREAM = 10  # Runtime API -> environment, in the server: a piece of a streamed response (runtime_api.py)

CHANNEL_FD_ENV = "_LAMINA_CHANNEL_FD"
ZYGOTE_ENV = "_LAMINA_ZYGOTE"
SECCOMP_ENV = "_LAMINA_ENV_SECCOMP"

_PREFIX = struct.Struct(">IBI")
# A KIND_HTTP_RESULT body: >H status | >I header block length | header block ("name: value\r\n"...) | body
HTTP_PREFIX = struct.Struct(">HI")


def encode_frame(kind: int, header: dict, body: bytes = b"") -> bytes:
    head = json.dumps(header, separators=(",", ":")).encode()
    return _PREFIX.pack(5 + len(head) + len(body), kind, len(head)) + head + body


class FrameDecoder:
    """Incremental decoder: feed bytes, get (kind, header, body) tuples."""

    def __init__(self) -> None:
        self._buf = bytearray()

    @property
    def partial(self) -> bool:
        """Whether the start of a frame is waiting for the rest."""
        return bool(self._buf)

    def feed(self, data: bytes) -> list[tuple[int, dict, bytes]]:
        buf = self._buf
        buf += data
        frames = []
        while len(buf) >= 9:
            total, kind, hlen = _PREFIX.unpack_from(buf)
            if len(buf) < 4 + total:
                break
            header = json.loads(bytes(buf[9 : 9 + hlen])) if hlen else {}
            body = bytes(buf[9 + hlen : 4 + total])
            del buf[: 4 + total]
            frames.append((kind, header, body))
        return frames


# ----------------------------------------------------------------------------------------------
# Everything below runs inside the environment only.


_NO_BYTES = b"\0\0\0\0"


class _Channel:
    def __init__(self, fd: int, log_fd: int = -1) -> None:
        import select
        import socket

        self._sock = socket.socket(fileno=fd)
        self._decoder = FrameDecoder()  # frames that came in pieces
        self._frames: list[tuple[int, dict, bytes]] = []
        # The runtime waits for its next frame in poll(2) for input only, then reads: a task blocked in recv(2) on
        # a unix socket is also woken whenever the peer reads what it sent (the kernel's unix_write_space wakes
        # the socket's waiters for "writable"), so every result the server read would wake the idle runtime for
        # nothing, a context switch on its CPU and a cross-CPU wakeup on the server's. poll's wait filters by event.
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN)
        # The runtime's own descriptor of its log pipe (fd 1 and 2 are the handler's to redirect): asked
        # whether the pipe is empty before a result goes out, see quiet(). -1: unknown, never quiet.
        self.log_fd = log_fd

    @staticmethod
    def flush_output() -> None:
        # What the handler printed must be in the log pipe before the frame leaves.
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                continue

    def quiet(self) -> bool:
        """Whether the log pipe holds no unread byte (after flush_output): every line written so far, from
        Python, C code or a child process, has been read by the server, which then need not drain it."""
        if self.log_fd < 0 or FIONREAD is None:
            return False
        try:
            return ioctl(self.log_fd, FIONREAD, _NO_BYTES) == _NO_BYTES
        except OSError:  # closed by the handler, say: the server drains as before
            self.log_fd = -1
            return False

    def send(self, kind: int, header: dict, body: bytes = b"") -> None:
        self.flush_output()
        self._sock.sendall(encode_frame(kind, header, body))

    def send_result(self, kind: int, request_id: str, rss_kb: int, body: bytes) -> None:
        """RESULT or ERROR (the hot path): the header written by hand, marked quiet when the pipe is empty."""
        self.flush_output()
        head = b'{"id":%b,"rss_kb":%d%b}' % (_json_str(request_id).encode(), rss_kb, b',"q":1' if self.quiet() else b"")
        self._sock.sendall(_PREFIX.pack(5 + len(head) + len(body), kind, len(head)) + head + body)

    def close(self) -> None:
        self._sock.close()

    def recv(self) -> tuple[int, dict, bytes] | None:
        """The next frame; None at EOF. The server sends one INVOKE at a time and waits for its result, so a
        frame usually arrives whole in one recv(2) and is parsed straight from it; anything else goes through
        the decoder."""
        frames, decoder = self._frames, self._decoder
        while not frames:
            self._poll.poll()
            data = self._sock.recv(1 << 16)
            if not data:
                return None
            if not decoder.partial and len(data) >= 9:
                total, kind, hlen = _PREFIX.unpack_from(data)
                if len(data) == 4 + total:
                    return kind, (_loads(data[9 : 9 + hlen]) if hlen else {}), data[9 + hlen :]
            frames.extend(decoder.feed(data))
        return frames.pop(0)


_json_str = json.encoder.encode_basestring_ascii  # a str as a JSON string (json.dumps without its overhead)
_scan = json.JSONDecoder().scan_once


def _loads(data: bytes):
    """json.loads for the hot path: a UTF-8 document without surrounding whitespace (what the server sends, and
    nearly every payload) is scanned directly; anything else, errors included, goes through json.loads."""
    try:
        text = data.decode()
        value, end = _scan(text, 0)
    except (UnicodeDecodeError, StopIteration, ValueError):
        return json.loads(data)
    if end != len(text):
        return json.loads(data)
    return value


class _Dumps:
    """json.dumps(value) with the default settings, reusing one C encoder (json.dumps builds one per call)."""

    def __init__(self) -> None:
        self._encoder = json.JSONEncoder()
        self._new()

    def _new(self) -> None:
        enc = self._encoder
        self._c = json.encoder.c_make_encoder({}, enc.default, json.encoder.encode_basestring_ascii, None,
                                              enc.key_separator, enc.item_separator, False, False, True)

    def __call__(self, value) -> str:
        if value.__class__ is str:
            return _json_str(value)
        try:
            return "".join(self._c(value, 0))
        except BaseException:
            self._new()  # an error can leave the encoder's cycle markers behind
            raise


class _Obj:
    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.__dict__!r})"


class Client(_Obj):
    pass


class ClientContext(_Obj):
    def __init__(self, data: dict) -> None:
        client = data.get("client")
        self.client = None
        if isinstance(client, dict):
            self.client = Client()
            self.client.installation_id = client.get("installation_id")
            self.client.app_title = client.get("app_title")
            self.client.app_version_name = client.get("app_version_name")
            self.client.app_version_code = client.get("app_version_code")
            self.client.app_package_name = client.get("app_package_name")
        self.custom = data.get("custom")
        self.env = data.get("env")


class CognitoIdentity(_Obj):
    def __init__(self, data: dict | None = None) -> None:
        data = data or {}
        self.cognito_identity_id = data.get("cognitoIdentityId")
        self.cognito_identity_pool_id = data.get("cognitoIdentityPoolId")


class LambdaContext(_Obj):
    """The `context` argument, with the same attributes as AWS's Python runtime."""

    # The environment's own values (variables Lamina sets before serving), read from os.environ once per
    # environment (serve() fills this) rather than with five lookups per invocation.
    _static: dict | None = None

    def __init__(self, request_id: str, deadline_ms: int, arn: str, client_context: dict | None,
                 tenant_id: str | None = None) -> None:
        static = LambdaContext._static
        if static is None:
            static = _context_static()
        self.__dict__.update(static)
        self.aws_request_id = request_id
        self.invoked_function_arn = arn
        self.tenant_id = tenant_id
        self.client_context = ClientContext(client_context) if client_context else None
        self.identity = CognitoIdentity()
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int(self._deadline_ms - time.time() * 1000))

    def log(self, msg: str) -> None:
        sys.stdout.write(str(msg))


def _context_static() -> dict:
    env = os.environ
    return {"log_group_name": env.get("AWS_LAMBDA_LOG_GROUP_NAME"),
            "log_stream_name": env.get("AWS_LAMBDA_LOG_STREAM_NAME"),
            "function_name": env.get("AWS_LAMBDA_FUNCTION_NAME"),
            "memory_limit_in_mb": env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"),
            "function_version": env.get("AWS_LAMBDA_FUNCTION_VERSION")}


class _RequestIdFilter:
    request_id = ""

    def filter(self, record) -> bool:
        record.aws_request_id = _RequestIdFilter.request_id
        return True


def _setup_logging() -> None:
    import logging

    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter(
        "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s", "%Y-%m-%dT%H:%M:%S"))
    handler.formatter.converter = time.gmtime
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    level = os.environ.get("AWS_LAMBDA_LOG_LEVEL", "").upper()
    if level in ("TRACE", "DEBUG", "INFO", "WARN", "WARNING", "ERROR", "FATAL", "CRITICAL"):
        root.setLevel({"TRACE": "DEBUG", "WARN": "WARNING", "FATAL": "CRITICAL"}.get(level, level))


def _error_body(exc: BaseException, request_id: str = "", error_type: str | None = None,
                message: str | None = None) -> dict:
    import traceback

    # Drop this runtime's own frames and importlib's, as AWS's runtime does.
    tb = [f for f in traceback.extract_tb(exc.__traceback__)
          if f.filename != __file__ and not f.filename.startswith("<frozen")]
    return {
        "errorMessage": str(exc) if message is None else message,
        "errorType": error_type or type(exc).__name__,
        "requestId": request_id,
        "stackTrace": traceback.format_list(tb),
    }


def _log_error(body: dict) -> None:
    trace = "".join(body.get("stackTrace") or [])
    line = f"[ERROR] {body['errorType']}: {body['errorMessage']}"
    if trace:
        line += "\nTraceback (most recent call last):\n" + trace.rstrip("\n")
    print(line, flush=True)


class InitError(Exception):
    def __init__(self, body: dict) -> None:
        super().__init__(body["errorMessage"])
        self.body = body


def load_handler(spec: str):
    """Import `module.function` the way AWS's runtime does, with its error types."""
    import importlib

    try:
        modname, funcname = spec.rsplit(".", 1)
    except ValueError as exc:
        raise InitError({"errorMessage": f"Bad handler '{spec}': {exc}",
                         "errorType": "Runtime.MalformedHandlerName", "requestId": "", "stackTrace": []}) from None
    modname = modname.replace("/", ".")
    try:
        if modname.split(".")[0] in sys.builtin_module_names:
            raise ImportError(f"Cannot use built-in module {modname} as a handler module")
        module = importlib.import_module(modname)
    except ImportError as exc:
        raise InitError({"errorMessage": f"Unable to import module '{modname}': {exc}",
                         "errorType": "Runtime.ImportModuleError", "requestId": "", "stackTrace": []}) from None
    except SyntaxError as exc:
        raise InitError({"errorMessage": f"Syntax error in module '{modname}': {exc}",
                         "errorType": "Runtime.UserCodeSyntaxError", "requestId": "", "stackTrace": []}) from None
    except Exception as exc:
        raise InitError(_error_body(exc)) from None
    func = getattr(module, funcname, None)
    if func is None or not callable(func):
        raise InitError({"errorMessage": f"Handler '{funcname}' missing on module '{modname}'",
                         "errorType": "Runtime.HandlerNotFound", "requestId": "", "stackTrace": []})
    return func


def _max_rss_kb() -> int:
    return getrusage(_RUSAGE_MAXRSS).ru_maxrss


def _die_with_parent() -> None:
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


# ---------------------------------------------------------------------------------------------- function URLs
# An INVOKE whose header says "http" comes from a BUFFERED function URL: the server wants the handler's result as
# the HTTP response payload format 2.0 makes of it (lamina.gateway.http.payload.map_response), so it need not decode
# and map it itself. http_response() maps the results that are plainly valid — a dict of statusCode, headers,
# multiValueHeaders, cookies, body and isBase64Encoded with simple values — to exactly what map_response would
# give for their JSON; for anything else it returns None and the result goes back as JSON (RESULT), mapped by
# the server as before, errors and all. The server checks the header block it gets either way.

_HTTP_KEYS = frozenset(("statusCode", "headers", "multiValueHeaders", "cookies", "body", "isBase64Encoded"))
# Set by Lamina, never passed through from the function (lamina.gateway.http.payload uses this set too).
HTTP_DROPPED = frozenset(("content-length", "transfer-encoding", "connection", "keep-alive", "upgrade"))
_HTTP_LIMIT = 6 * 1024 * 1024
_http_names: dict[str, str] = {}
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-z]+")
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f]")


class _NotMapped(Exception):
    pass


def _http_name(name: object) -> str:
    if name.__class__ is not str:
        raise _NotMapped
    raw = _http_names.get(name)
    if raw is None:
        raw = name.lower()
        if not raw.isascii() or not _TOKEN.fullmatch(raw):
            raise _NotMapped
        if len(_http_names) >= 4096:
            _http_names.clear()
        _http_names[name] = raw
    return raw


def _http_value(value: object) -> str:
    cls = value.__class__
    if cls is str:
        text = value
    elif cls is bool:
        text = "true" if value else "false"
    elif cls is int and -(1 << 63) <= value < (1 << 64):
        text = str(value)
    else:
        raise _NotMapped  # floats (NaN, exponents) and everything else: the server's mapping decides
    if _CONTROL.search(text):  # a control character but tab: what uvicorn refuses
        raise _NotMapped
    return text


def http_response(result: object) -> tuple[int, bytes, bytes] | None:
    """(status, header block, body) for a plainly valid {statusCode, ...} result, else None (see above)."""
    if result.__class__ is not dict or "statusCode" not in result or not result.keys() <= _HTTP_KEYS:
        return None
    try:
        status = result["statusCode"]
        if status.__class__ is str and status.isdigit():
            status = int(status)
        if status.__class__ is not int or not 100 <= status <= 599:
            return None
        lines = []
        typed = False
        headers = result.get("headers")
        if headers is None:
            headers = {}
        elif headers.__class__ is not dict:
            return None
        for name, value in headers.items():
            if value is None:
                if name.__class__ is not str:
                    return None
                continue
            raw = _http_name(name)
            if raw not in HTTP_DROPPED:
                lines.append(f"{raw}: {_http_value(value)}\r\n")
                if raw == "content-type":
                    typed = True
        multi = result.get("multiValueHeaders")
        if multi is not None:
            if multi.__class__ is not dict:
                return None
            for name, values in multi.items():
                raw = _http_name(name)
                if values.__class__ is not list:
                    return None
                checked = [_http_value(v) for v in values if v is not None]
                if raw in HTTP_DROPPED or name in headers:
                    continue
                lines.extend(f"{raw}: {v}\r\n" for v in checked)
                if raw == "content-type" and checked:
                    typed = True
        cookies = result.get("cookies")
        if cookies is not None:
            if cookies.__class__ is not list:
                return None
            lines.extend(f"set-cookie: {_http_value(c)}\r\n" for c in cookies)
        if not typed:
            lines.append("content-type: application/json\r\n")
        base64_flag = result.get("isBase64Encoded")
        if base64_flag is not None and base64_flag.__class__ not in (bool, str, int):
            return None
        body = result.get("body")
        if body is None:
            raw_body = b""
        elif body.__class__ is str:
            if base64_flag is True:
                import base64
                import binascii

                try:
                    raw_body = base64.b64decode(body, validate=True)
                except (binascii.Error, ValueError):
                    return None
            else:
                raw_body = body.encode()
        else:
            return None
        if len(raw_body) > _HTTP_LIMIT:
            return None
        return status, "".join(lines).encode(), raw_body
    except (_NotMapped, UnicodeEncodeError, ValueError):  # ValueError: int() of a digit string it cannot read
        return None


class _TraceVariable:
    """Sets _X_AMZN_TRACE_ID for each invocation, in os.environ and in the C environment (child processes, C code),
    as AWS's runtime does, but without os.environ's setenv(3): glibc keeps a copy of every value setenv was ever
    given (its known_values), about 110 bytes per invocation for the environment's whole life, enough to take a
    128 MB function to its memory limit after a million warm invocations. Instead the C environment points at a
    buffer of ours (putenv(3) keeps the pointer it is given) whose contents change in place."""

    NAME = "_X_AMZN_TRACE_ID"

    def __init__(self) -> None:
        self._buffers: list = []  # every buffer the C environment was given stays alive (a longer value: a new one)
        try:
            import ctypes

            self._ctypes = ctypes
            self._putenv = ctypes.CDLL(None).putenv
            self._key = os.environ.encodekey(self.NAME)  # os.environ's own store, which putenv bypasses
            if not isinstance(os.environ._data, dict):
                raise TypeError("os.environ has no _data dict")
        except (ImportError, AttributeError, OSError, TypeError):
            self.set = self._set_environ

    def _set_environ(self, value: str) -> None:
        os.environ[self.NAME] = value

    def set(self, value: str) -> None:
        raw = f"{self.NAME}={value}".encode()
        buffers = self._buffers
        if not buffers or len(buffers[-1]) <= len(raw):
            buffers.append(self._ctypes.create_string_buffer(max(256, 2 * len(raw))))
        buf = buffers[-1]
        buf.value = raw
        # Every time, not once: the handler may have set or deleted the variable itself since (setenv/unsetenv
        # replace or drop the pointer); for a variable already in the environment, glibc's putenv only swaps it.
        self._putenv(buf)
        os.environ._data[self._key] = raw[len(self.NAME) + 1 :]


def serve(channel: _Channel, handler) -> None:
    """Invocation loop: one at a time, result and next-pull in one frame."""
    LambdaContext._static = _context_static()
    loads, dumps, recv, send = _loads, json.dumps, channel.recv, channel.send_result
    set_trace = _TraceVariable().set
    pack_http = HTTP_PREFIX.pack
    dump_result = _Dumps() if json.encoder.c_make_encoder is not None else json.dumps
    while True:
        frame = recv()
        if frame is None:
            return
        _kind, header, body = frame
        request_id = header["id"]
        _RequestIdFilter.request_id = request_id
        trace_id = header.get("trace_id")
        if trace_id:
            set_trace(trace_id)
        context = LambdaContext(request_id, header["deadline_ms"], header["arn"], header.get("client_context"),
                                header.get("tenant_id"))
        try:
            event = loads(body) if body else {}
        except ValueError as exc:
            err = {"errorMessage": f"Unable to unmarshal input: {exc}", "errorType": "Runtime.UnmarshalError",
                   "requestId": request_id, "stackTrace": []}
            _log_error(err)
            send(KIND_ERROR, request_id, _max_rss_kb(), dumps(err).encode())
            continue
        try:
            result = handler(event, context)
        except Exception as exc:
            err = _error_body(exc, request_id)
            _log_error(err)
            send(KIND_ERROR, request_id, _max_rss_kb(), dumps(err).encode())
            continue
        if "http" in header:
            mapped = http_response(result)
            if mapped is not None:
                status, block, raw_body = mapped
                send(KIND_HTTP_RESULT, request_id, _max_rss_kb(), pack_http(status, len(block)) + block + raw_body)
                continue
        try:
            out = dump_result(result).encode()
        except (TypeError, ValueError) as exc:
            err = {"errorMessage": f"Unable to marshal response: {exc}", "errorType": "Runtime.MarshalError",
                   "requestId": request_id, "stackTrace": []}
            _log_error(err)
            send(KIND_ERROR, request_id, _max_rss_kb(), dumps(err).encode())
            continue
        send(KIND_RESULT, request_id, _max_rss_kb(), out)


def _prepare_process() -> tuple[str, float]:
    """Common start-up: sys.path and cwd as on AWS, line-buffered output, AWS log format."""
    task_root = os.environ.get("LAMBDA_TASK_ROOT", os.getcwd())
    # The function's code comes first on sys.path, as on AWS; drop this runtime's own directory.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [task_root] + [p for p in sys.path if p and os.path.abspath(p) != here]
    os.chdir(task_root)
    try:
        sys.stdout.reconfigure(line_buffering=True)
        sys.stderr.reconfigure(line_buffering=True)
    except AttributeError:
        pass
    _setup_logging()
    return task_root, time.monotonic()


def _init(channel: _Channel, started: float):
    try:
        return load_handler(os.environ["_HANDLER"])
    except InitError as exc:
        _log_error(exc.body)
        channel.send(KIND_INIT_ERROR, {"init_ms": (time.monotonic() - started) * 1000},
                     json.dumps(exc.body).encode())
        os._exit(1)


def main() -> None:
    _die_with_parent()
    channel_fd = int(os.environ.pop(CHANNEL_FD_ENV))
    if os.environ.pop(ZYGOTE_ENV, None):
        _zygote_main(channel_fd)
        return
    channel = _Channel(channel_fd)
    _task_root, started = _prepare_process()
    handler = _init(channel, started)
    channel.send(KIND_READY, {"init_ms": (time.monotonic() - started) * 1000})
    serve(channel, handler)


# ----------------------------------------------------------------------------------------------
# Zygote mode


def _zygote_main(channel_fd: int) -> None:
    import gc
    import selectors
    import signal
    import socket

    seccomp_hex = os.environ.pop(SECCOMP_ENV, "")
    setup = None
    if seccomp_hex:
        # Isolated (linux backend): the namespace helpers live beside this file.
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import sandbox_setup as setup
    sock = socket.socket(fileno=channel_fd)
    channel = _Channel(os.dup(channel_fd))
    _task_root, started = _prepare_process()
    handler = _init(channel, started)
    init_ms = (time.monotonic() - started) * 1000
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
                header["_ids"] = (os.getuid(), os.getgid())
                if setup is not None:
                    # Straight into new namespaces, without privileges: the new user namespace
                    # (ours alone) is what allows the others. The child is pid 1 of its own.
                    pid = setup.fork_into_namespaces(
                        setup.CLONE_NEWUSER | setup.CLONE_NEWNS | setup.CLONE_NEWPID | setup.CLONE_NEWNET
                        | setup.CLONE_NEWIPC | setup.CLONE_NEWUTS)
                else:
                    pid = os.fork()
                if pid == 0:
                    sel.close()
                    signal.set_wakeup_fd(-1)
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    for fd in (wake_r, wake_w):
                        os.close(fd)
                    sock.close()
                    channel.close()
                    _become_environment(header, mine, handler, setup, seccomp_hex)
                    os._exit(0)
                for fd in mine:
                    os.close(fd)
                children[pid] = header["env"]
                channel.send(KIND_FORKED, {"env": header["env"], "pid": pid})


def _reap(channel: _Channel, children: dict[int, str]) -> None:
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


def _copy_tree(src_fd: int, dst: str, uid: int) -> None:
    """Copy a directory (given as an fd: its path is covered by a new mount) and hand it to uid."""
    for entry in os.scandir(src_fd):
        target = f"{dst}/{entry.name}"
        st = entry.stat(follow_symlinks=False)
        if entry.is_symlink():
            os.symlink(os.readlink(entry.name, dir_fd=src_fd), target)
        elif entry.is_dir(follow_symlinks=False):
            os.mkdir(target, st.st_mode & 0o7777)
            sub = os.open(entry.name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=src_fd)
            try:
                _copy_tree(sub, target, uid)
            finally:
                os.close(sub)
        elif entry.is_file(follow_symlinks=False):
            fin = os.open(entry.name, os.O_RDONLY, dir_fd=src_fd)
            fout = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, st.st_mode & 0o7777)
            try:
                while os.sendfile(fout, fin, None, 1 << 24):
                    pass
            finally:
                os.close(fin)
                os.close(fout)
        else:
            continue
        os.chown(target, uid, uid, follow_symlinks=False)


def _become_environment(header: dict, fds: list[int], handler, setup, seccomp_hex: str) -> None:
    """In a fresh fork of the zygote: become one environment, then serve invocations."""
    started = time.monotonic()
    if header.get("batch"):
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))  # the server's sandbox_scheduling
    channel_fd, log_fd, *procs = fds
    if setup is not None:
        try:
            for fd in procs:  # join the environment's cgroups before anything else runs
                os.write(fd, b"0")
                os.close(fd)
            # Our uid is the zygote's, mapped to itself in the user namespace we were born in (until
            # then getuid() reports the overflow uid, so the zygote's ids come from before the clone).
            uid, gid = header["_ids"]
            setup.map_own_ids(uid, gid)
            # pid 1 of the environment's own pid namespace, with its own /tmp, /proc and loopback.
            setup.die_with_parent()
            zygote_tmp = os.open("/tmp", os.O_RDONLY | os.O_DIRECTORY)
            setup.mount("tmpfs", "/tmp", "tmpfs", setup.MS_NOSUID | setup.MS_NODEV,
                        f"size={int(header.get('tmp_mb', 512))}m,mode=1777")
            # What the function's init wrote to /tmp is part of the snapshot, as with SnapStart.
            if os.listdir(zygote_tmp):
                _copy_tree(zygote_tmp, "/tmp", uid)
            os.close(zygote_tmp)
            setup.mount("tmpfs", "/dev/shm", "tmpfs", setup.MS_NOSUID | setup.MS_NODEV, "size=64m,mode=1777")
            setup.mount("proc", "/proc", "proc", setup.MS_NOSUID | setup.MS_NODEV | setup.MS_NOEXEC)
            setup.sethostname("lamina")
            setup.loopback_up()
            setup.drop_capabilities()
            setup.no_new_privs()
            setup.load_seccomp(bytes.fromhex(seccomp_hex))
        except OSError as exc:
            os.write(log_fd, f"lamina sandbox: cannot set up the environment: {exc}\n".encode())
            os._exit(126)
    else:
        os.setsid()
        _die_with_parent()
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    # Kept (close-on-exec) to ask the pipe whether it is empty (_Channel.quiet), whatever the handler does to 1/2.
    os.set_inheritable(log_fd, False)
    os.environ["AWS_LAMBDA_LOG_STREAM_NAME"] = header.get("stream", "")
    os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"] = header.get("init_type", "on-demand")
    channel = _Channel(channel_fd, log_fd)
    channel.send(KIND_READY, {"restore_ms": (time.monotonic() - started) * 1000})
    serve(channel, handler)


if __name__ == "__main__":
    main()
