"""Shared helpers for the compat and integration suites: a real `lamina serve` process, zips, raw requests.

Everything here talks to 127.0.0.1 only.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import importlib.metadata
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

REGION = "us-east-1"
ACCOUNT = "000000000000"
ROLE = "arn:aws:iam::000000000000:role/lamina"
RUNTIME = "python3.11"
ACCESS_KEY = "test"
SECRET_KEY = "test"

# Waiters: the v2 waiters default to 1 s x 300; poll faster and give up after ~30 s.
WAIT = {"Delay": 0.2, "MaxAttempts": 150}

REPO_ROOT = Path(__file__).resolve().parent.parent


def fn_arn(name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"


def unique_name(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def make_zip(files: dict[str, str | bytes]) -> bytes:
    """An in-memory zip with the given {path: content}: regular 0644 files, except `bootstrap` and `*.sh`
    (0755, as a user's build would make them)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, content in files.items():
            info = zipfile.ZipInfo(path, date_time=(2024, 1, 1, 0, 0, 0))
            executable = path.rsplit("/", 1)[-1] == "bootstrap" or path.endswith(".sh")
            info.external_attr = (0o100755 if executable else 0o100644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            data = content.encode() if isinstance(content, str) else content
            zf.writestr(info, data)
    return buf.getvalue()


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def installed_files(*dists: str) -> dict[str, bytes]:
    """The installed files of these distributions, to ship inside a function zip (as pip --target would):
    no metadata, bytecode or scripts."""
    files: dict[str, bytes] = {}
    for name in dists:
        dist = importlib.metadata.distribution(name)
        for rel in dist.files or []:
            path = str(rel)
            if path.startswith(("..", "bin/")) or ".dist-info/" in path or "__pycache__" in path:
                continue
            files[path] = Path(dist.locate_file(rel)).read_bytes()
    return files


def skip_unless_linux_sandbox(endpoint: str) -> None:
    """Skip (the calling test, or module from a module fixture) unless the server runs the linux sandbox
    backend, which needs root."""
    if health(endpoint).get("sandbox") != "linux":
        if os.geteuid() == 0 and os.environ.get("LAMINA_TEST_SANDBOX") != "process":
            # As root the server must have built the linux sandbox (it refuses to start otherwise): a test that
            # needs it fails rather than skips, so that CI cannot stay green with isolation gone.
            pytest.fail(f"running as root, but the server's sandbox is {health(endpoint).get('sandbox')!r}")
        pytest.skip("needs root: the linux sandbox backend")


AWS_CLI = REPO_ROOT / ".venv-awscli" / "bin" / "aws"


def require_command(name: str, install: str) -> str:
    """The path of a command a test needs. Missing, the test fails rather than skips: `make test` installs every
    one (SYSTEM_PACKAGES, .venv-awscli), so a missing command means a machine set up some other way, and a quiet
    skip would pass what was never run. `install` says how to get it."""
    path = shutil.which(name) if "/" not in name else (name if os.access(name, os.X_OK) else None)
    if path is None:
        pytest.fail(f"{name} is missing: {install} (make test does)", pytrace=False)
    return path


def require_aws_cli() -> Path:
    """The AWS CLI (v1, in its own venv: it pins its own botocore)."""
    return Path(require_command(str(AWS_CLI), "make awscli"))


def aws_cli_env(home: Path) -> dict[str, str]:
    """The environment for the AWS CLI in a test: dummy credentials, REGION, no user config or credentials files
    (paths under home that do not exist), no instance metadata, no retries, no pager."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION=REGION,
               AWS_CONFIG_FILE=str(home / "no-config"), AWS_SHARED_CREDENTIALS_FILE=str(home / "no-credentials"),
               AWS_EC2_METADATA_DISABLED="true", AWS_MAX_ATTEMPTS="1", AWS_PAGER="")
    return env


class AwsCli:
    """aws(service, *args) -> the parsed JSON output of an AWS CLI command against endpoint (it must succeed);
    aws.fail(...) -> the stderr of one that must fail."""

    def __init__(self, endpoint: str, cwd: Path) -> None:
        self.bin = require_aws_cli()
        self.endpoint = endpoint
        self.cwd = cwd
        self.env = aws_cli_env(cwd)

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.bin), *args, "--endpoint-url", self.endpoint, "--output", "json"],
                              capture_output=True, text=True, env=self.env, cwd=self.cwd, timeout=90)

    def __call__(self, *args: str):
        proc = self._run(*args)
        assert proc.returncode == 0, (args, proc.stderr)
        return json.loads(proc.stdout) if proc.stdout.strip() else None

    def fail(self, *args: str) -> str:
        proc = self._run(*args)
        assert proc.returncode != 0, (args, proc.stdout)
        return proc.stderr


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_lamina(endpoint: str, *args: str, cwd: Path | None = None, columns: str | None = "250",
               timeout: float = 90) -> subprocess.CompletedProcess:
    """`python -m lamina ARGS` against endpoint, as a user's terminal would run it but without colour;
    columns=None leaves COLUMNS unset (rich's default width for piped output)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAMINA_") and k != "COLUMNS"}
    env.update(LAMINA_ENDPOINT=endpoint, NO_COLOR="1", TERM="dumb")
    if columns is not None:
        env["COLUMNS"] = columns
    return subprocess.run([sys.executable, "-m", "lamina", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=timeout)


def aws_client(endpoint: str, service: str):
    """A boto3 client of `service` against endpoint, with the test credentials and no retries."""
    return boto3.client(service, endpoint_url=endpoint, region_name=REGION, aws_access_key_id=ACCESS_KEY,
                        aws_secret_access_key=SECRET_KEY, config=Config(retries={"total_max_attempts": 1}))


def make_queue(sqs, prefix: str = "q") -> tuple[str, str]:
    """A new SQS queue: (its URL, its ARN)."""
    url = sqs.create_queue(QueueName=unique_name(prefix))["QueueUrl"]
    return url, sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def lambda_client(endpoint: str, read_timeout: int = 65):
    return boto3.client(
        "lambda",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        # total_max_attempts=1: no retries at all (legacy "max_attempts" counts retries, not attempts).
        config=Config(retries={"total_max_attempts": 1}, read_timeout=read_timeout, connect_timeout=5),
    )


# --------------------------------------------------------------------------------------------------
# Raw HTTP (for requests boto3 would refuse to send), SigV4-signed like boto3 so a verifying server
# still reaches the validation under test.


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self):
        return json.loads(self.body)

    @property
    def error_type(self) -> str | None:
        """The error code the way botocore derives it from x-amzn-ErrorType."""
        raw = self.headers.get("x-amzn-errortype")
        if raw is None:
            return None
        return raw.split(":", 1)[0].rsplit("#", 1)[-1]

    def describe(self) -> str:
        return f"HTTP {self.status} headers={self.headers} body={self.body[:600]!r}"


def raw_request(endpoint: str, method: str, path: str, body: bytes = b"",
                headers: dict[str, str] | None = None, sign: bool = True, timeout: float = 65) -> RawResponse:
    headers = dict(headers or {})
    url = endpoint.rstrip("/") + path
    if sign:
        req = AWSRequest(method=method, url=url, data=body, headers=headers)
        SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "lambda", REGION).add_auth(req)
        headers = dict(req.headers.items())
    host_port = endpoint.split("://", 1)[1].rstrip("/")
    host, port = host_port.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        return RawResponse(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    finally:
        conn.close()


def client_error(exc: pytest.ExceptionInfo[ClientError] | ClientError) -> tuple[int, str, str]:
    """(HTTP status, error code, message) of an error boto3 raised."""
    err = (exc.value if isinstance(exc, pytest.ExceptionInfo) else exc).response
    return err["ResponseMetadata"]["HTTPStatusCode"], err["Error"]["Code"], err["Error"].get("Message", "")


def failure(call, *args, **kwargs) -> tuple[int, str, str]:
    """Call a boto3 method that must fail; returns client_error() of what it raised."""
    with pytest.raises(ClientError) as exc:
        call(*args, **kwargs)
    return client_error(exc)


def assert_aws_error(resp: RawResponse, status: int | tuple[int, ...], types: str | tuple[str, ...],
                     message_contains: str | None = None) -> str:
    """Assert an AWS-shaped error (status, x-amzn-ErrorType, JSON message/Message); return the message."""
    statuses = (status,) if isinstance(status, int) else status
    allowed = (types,) if isinstance(types, str) else types
    assert resp.status in statuses, resp.describe()
    assert resp.error_type in allowed, (
        f"x-amzn-ErrorType {resp.error_type!r} not in {allowed}: {resp.describe()}")
    try:
        body = resp.json()
    except ValueError as exc:  # pragma: no cover - a failure path
        raise AssertionError(f"error body is not JSON: {resp.describe()}") from exc
    assert isinstance(body, dict), resp.describe()
    message = body.get("message", body.get("Message"))
    assert isinstance(message, str) and message, f"no message/Message in error body: {resp.describe()}"
    if message_contains is not None:
        assert message_contains.lower() in message.lower(), resp.describe()
    return message


# --------------------------------------------------------------------------------------------------
# Function URLs

FUNCTION_URL = re.compile(rf"^http://([a-z0-9]{{32}})\.lambda-url\.{REGION}\.localhost:(\d+)/$")


def url_id_of(function_url: str) -> str:
    """The url id in a FunctionUrl as the API returns it (http://<id>.lambda-url.us-east-1.localhost:<port>/)."""
    m = FUNCTION_URL.match(function_url)
    assert m, function_url
    return m.group(1)


class FunctionUrl:
    """A function URL reached over 127.0.0.1 the way curl would: by its host name (form="host": Host:
    <id>.lambda-url.us-east-1.localhost:PORT) or by the server's path form (form="path": /lamina/v1/url/<id>/...).
    `url` is a FunctionUrl as the API returns it, or a bare url id."""

    def __init__(self, endpoint: str, url: str) -> None:
        self.url_id = url_id_of(url) if url.startswith("http") else url
        self.port = int(endpoint.rsplit(":", 1)[1])
        self.host = f"{self.url_id}.lambda-url.{REGION}.localhost:{self.port}"

    def send(self, method: str, target: str, body: bytes | None = None, headers: list[tuple[str, str]] | None = None,
             form: str = "host", timeout: float = 60) -> http.client.HTTPConnection:
        """Send the request; the caller reads conn.getresponse() (e.g. piece by piece) and closes conn."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        path = target if form == "host" else f"/lamina/v1/url/{self.url_id}{target}"
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", self.host if form == "host" else f"127.0.0.1:{self.port}")
        for name, value in headers or []:
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        return conn

    def request(self, method: str, target: str, body: bytes | None = None,
                headers: list[tuple[str, str]] | None = None, form: str = "host",
                timeout: float = 60) -> tuple[int, list[tuple[str, str]], bytes]:
        """(status, [(lower-cased name, value)], body)."""
        conn = self.send(method, target, body, headers, form, timeout)
        try:
            resp = conn.getresponse()
            return resp.status, [(k.lower(), v) for k, v in resp.getheaders()], resp.read()
        finally:
            conn.close()

    def get(self, target: str, **kwargs) -> tuple[int, list[tuple[str, str]], bytes]:
        return self.request("GET", target, **kwargs)

    def json(self, method: str, target: str, **kwargs):
        """The decoded JSON body of a request that must answer 200."""
        status, headers, body = self.request(method, target, **kwargs)
        assert status == 200, (status, headers, body)
        return json.loads(body)


# --------------------------------------------------------------------------------------------------
# The server's own state (Lamina's /lamina/v1 API)


def health(endpoint: str) -> dict:
    """The server's /lamina/v1/health document (sandbox backend, environment count, ...)."""
    with urllib.request.urlopen(f"{endpoint}/lamina/v1/health", timeout=10) as resp:
        return json.load(resp)


def environments(endpoint: str) -> int:
    """How many environments the server runs now."""
    return health(endpoint)["environments"]


def wait_environments(endpoint: str, count: int, timeout: float = 20.0) -> None:
    """Poll until the server runs exactly `count` environments; fail if it does not within timeout."""
    deadline = time.monotonic() + timeout
    while environments(endpoint) != count and time.monotonic() < deadline:
        time.sleep(0.1)
    assert environments(endpoint) == count


def recycle(endpoint: str, name: str) -> int:
    """Stop the function's idle environments (DELETE /lamina/v1/functions/NAME/environments); returns how many."""
    resp = raw_request(endpoint, "DELETE", f"/lamina/v1/functions/{name}/environments", timeout=30)
    assert resp.status == 200, resp.describe()
    return resp.json()["stopped"]


# --------------------------------------------------------------------------------------------------
# Processes


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        return b""


def cmdline(pid: int) -> bytes:
    """The NUL-separated argv of a live pid (b"" once it is gone)."""
    return _read(f"/proc/{pid}/cmdline")


def environ(pid: int) -> bytes:
    """The NUL-separated environment a live pid started with (b"" once it is gone or unreadable)."""
    return _read(f"/proc/{pid}/environ")


def proc_stat(pid: int) -> tuple[int, str, int] | None:
    """(ppid, state, starttime) of a live pid, or None."""
    raw = _read(f"/proc/{pid}/stat").decode(errors="replace")
    if not raw:
        return None
    rest = raw[raw.rfind(")") + 2:].split()
    # fields after the comm: state(3) ppid(4) ... starttime(22)
    return int(rest[1]), rest[0], int(rest[19])


def all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def descendants(root: int) -> dict[int, int]:
    """{pid: starttime} of every live descendant of root."""
    children: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for pid in all_pids():
        st = proc_stat(pid)
        if st is None:
            continue
        children.setdefault(st[0], []).append(pid)
        starts[pid] = st[2]
    found: dict[int, int] = {}
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found[child] = starts[child]
                todo.append(child)
    return found


def still_running(procs: dict[int, int]) -> list[int]:
    """The pids of procs ({pid: starttime}) that are still the same live, non-zombie process."""
    alive = []
    for pid, start in procs.items():
        st = proc_stat(pid)
        if st is not None and st[2] == start and st[1] != "Z":
            alive.append(pid)
    return alive


def processes_referencing(path: Path) -> list[int]:
    """Live non-zombie processes (other than us) whose cmdline, environ or cwd mention path."""
    needle = str(path).encode()
    found = []
    for pid in all_pids():
        if pid == os.getpid():
            continue
        st = proc_stat(pid)
        if st is None or st[1] == "Z":
            continue
        hit = needle in _read(f"/proc/{pid}/cmdline") or needle in _read(f"/proc/{pid}/environ")
        if not hit:
            with contextlib.suppress(OSError):
                hit = os.readlink(f"/proc/{pid}/cwd").startswith(str(path))
        if hit:
            found.append(pid)
    return found


def describe_pids(pids: list[int]) -> str:
    def cmdline(pid: int) -> str:
        return _read(f"/proc/{pid}/cmdline").replace(b"\0", b" ").decode(errors="replace")

    return "; ".join(f"{pid}: {cmdline(pid)}" for pid in pids)


# --------------------------------------------------------------------------------------------------
# The server


class ServerStartError(RuntimeError):
    pass


@dataclass
class LaminaServer:
    """One real `python -m lamina serve` process on 127.0.0.1 with its own data dir and log file."""

    data_dir: Path
    log_path: Path
    port: int = 0
    extra_args: list[str] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    returncode: int | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def client(self, read_timeout: int = 65):
        return lambda_client(self.endpoint, read_timeout)

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def start(self, timeout: float = 20.0) -> LaminaServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("LAMINA_")}
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.extra_env)
        cmd = [sys.executable, "-m", "lamina", "serve", "--host", "127.0.0.1", "--port", str(self.port),
               "--data-dir", str(self.data_dir), *self.extra_args]
        if os.environ.get("LAMINA_TEST_SANDBOX"):  # run the suite against another backend (e.g. process)
            cmd += ["--sandbox", os.environ["LAMINA_TEST_SANDBOX"]]
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
        try:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         cwd=self.data_dir.parent, env=env)
        finally:
            log.close()
        self.returncode = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                self.returncode = rc
                raise ServerStartError(f"lamina serve exited with {rc} before it was ready: {' '.join(cmd)}\n"
                                       f"--- server output ---\n{self.output()}")
            if self.healthy():
                return self
            time.sleep(0.1)
        self.stop()
        raise ServerStartError(f"lamina serve not healthy after {timeout}s: {' '.join(cmd)}\n"
                               f"--- server output ---\n{self.output()}")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint}/lamina/v1/health", timeout=2) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError, http.client.HTTPException):
            return False

    def terminate(self) -> None:
        """Send SIGTERM without waiting."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            self.returncode = None  # did not stop on SIGTERM
            raise
        return self.returncode

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, wait up to timeout, then SIGKILL. Returns the exit code (None if it had to be killed)."""
        if self.proc is None:
            return self.returncode
        if self.proc.poll() is not None:
            self.returncode = self.proc.returncode
            return self.returncode
        self.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            return self.wait(timeout)
        return None

    def kill_leftovers(self) -> list[int]:
        """After stop(): SIGKILL processes that still reference our data dir. Returns what was found."""
        left = processes_referencing(self.data_dir)
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return left


# --------------------------------------------------------------------------------------------------
# Function helpers


def create_function(client, name: str, files: dict[str, str | bytes] | bytes, handler: str = "app.handler",
                    wait: bool = True, **kwargs) -> dict:
    code = files if isinstance(files, bytes) else make_zip(files)
    params = {"Runtime": RUNTIME, "Role": ROLE, "Handler": handler, "Code": {"ZipFile": code}}
    params.update(kwargs)
    resp = client.create_function(FunctionName=name, **params)
    if wait:
        client.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    return resp


def wait_settled(client, name: str, timeout: float = 15.0) -> dict:
    """Poll until the function leaves Pending (Active or Failed); returns its configuration."""
    deadline = time.monotonic() + timeout
    while True:
        cfg = client.get_function_configuration(FunctionName=name)
        if cfg["State"] != "Pending" or time.monotonic() > deadline:
            return cfg
        time.sleep(0.05)


def invoke(client, name: str, payload=None, **kwargs) -> tuple[dict, object]:
    """Invoke and return (response, decoded JSON payload or None for an empty body)."""
    if payload is not None and not isinstance(payload, (bytes, str)):
        payload = json.dumps(payload)
    if payload is not None:
        kwargs["Payload"] = payload
    resp = client.invoke(FunctionName=name, **kwargs)
    body = resp["Payload"].read()
    return resp, (json.loads(body) if body else None)


def invoke_ok(client, name: str, payload=None, **kwargs):
    """Invoke, assert it succeeded (200, no FunctionError) and return the decoded payload."""
    resp, body = invoke(client, name, payload, **kwargs)
    assert resp["StatusCode"] == 200 and "FunctionError" not in resp, body
    return body


def wait_provisioned(client, name: str, qualifier: str, status: str = "READY", timeout: float = 30.0) -> dict:
    """Poll GetProvisionedConcurrencyConfig until it reports status (passing only through IN_PROGRESS);
    returns the configuration."""
    deadline = time.monotonic() + timeout
    while True:
        cfg = client.get_provisioned_concurrency_config(FunctionName=name, Qualifier=qualifier)
        if cfg["Status"] == status or time.monotonic() > deadline:
            assert cfg["Status"] == status, cfg
            return cfg
        assert cfg["Status"] == "IN_PROGRESS", cfg
        time.sleep(0.05)


def decode_log(resp: dict) -> str:
    assert "LogResult" in resp, f"no LogResult in {sorted(resp)}"
    return base64.b64decode(resp["LogResult"]).decode("utf-8", errors="replace")


def request_id(resp: dict) -> str:
    return resp["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]


# A handler that reports on its environment; used by many tests.
PROBE_HANDLER = '''
import os, sys, time, uuid

INIT_COUNT = 0
INIT_COUNT += 1
INIT_PID = os.getpid()
_ENV = {}


def _env_id():
    # Per-process token made on first use, so it also differs between environments forked from one
    # pre-initialized parent (and between pid namespaces where the pid could repeat).
    if _ENV.get("pid") != os.getpid():
        _ENV.clear()
        _ENV.update(pid=os.getpid(), id=uuid.uuid4().hex, calls=0)
    _ENV["calls"] += 1
    return _ENV["id"], _ENV["calls"]


def handler(event, context):
    event = event if isinstance(event, dict) else {"value": event}
    if event.get("sleep"):
        time.sleep(float(event["sleep"]))
    if event.get("exit") is not None:
        sys.stdout.flush()
        os._exit(int(event["exit"]))
    if event.get("raise"):
        raise ValueError(event["raise"])
    env_id, calls = _env_id()
    return {"echo": event, "version": VERSION, "pid": os.getpid(), "init_pid": INIT_PID,
            "init_count": INIT_COUNT, "env_id": env_id, "calls": calls,
            "request_id": context.aws_request_id}
'''


def probe_code(version: str = "v1") -> dict[str, str]:
    return {"app.py": f"VERSION = {version!r}\n" + PROBE_HANDLER}


# A bootstrap in "any language": here a stdlib Python script speaking the Runtime API by hand.
HANDWRITTEN_BOOTSTRAP = '''#!/usr/bin/python3
import http.client, json, os
host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
conn = http.client.HTTPConnection(host, int(port))
print("bootstrap starting", flush=True)
while True:
    conn.request("GET", "/2018-06-01/runtime/invocation/next")
    resp = conn.getresponse()
    event = json.loads(resp.read())
    rid = resp.getheader("Lambda-Runtime-Aws-Request-Id")
    if event.get("fail"):
        body = json.dumps({"errorMessage": "asked to fail", "errorType": "Custom.Failure"})
        conn.request("POST", f"/2018-06-01/runtime/invocation/{rid}/error", body,
                     {"Lambda-Runtime-Function-Error-Type": "Custom.Failure"})
    else:
        print("handling", rid, flush=True)
        body = json.dumps({"echo": event, "rid": rid, "arn": resp.getheader("Lambda-Runtime-Invoked-Function-Arn"),
                           "deadline": int(resp.getheader("Lambda-Runtime-Deadline-Ms")),
                           "uid": os.getuid(), "cwd": os.getcwd(),
                           "sched": os.sched_getscheduler(0)})
        conn.request("POST", f"/2018-06-01/runtime/invocation/{rid}/response", body)
    conn.getresponse().read()
'''
