"""Fixtures for the suites that run a real `lamina serve` (tests/compat, tests/integration).

- `lamina_server` / `lambda_client`: one server per session on 127.0.0.1 with a temp data dir.
- `lamina_factory`: start extra servers (restart, SIGTERM tests); each is stopped at teardown.
- `functions`: create functions (unique names, waits for Active) and delete them at teardown.
- `assert_serving`: proves the session server still answers a real invoke.
- `cli`: runs `python -m lamina ARGS` against the session server (asserting exit 0 unless ok=False).
- `linux_sandbox`: skips the module unless the session server runs the linux sandbox (root); use it with
  `pytestmark = pytest.mark.usefixtures("linux_sandbox")`.
When a test fails, the server output written during that test is attached to its report.
"""

from __future__ import annotations

import contextlib
import subprocess
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from helpers import (
    LaminaServer,
    create_function,
    describe_pids,
    invoke,
    probe_code,
    run_lamina,
    skip_unless_linux_sandbox,
    unique_name,
)

_SERVERS: list[LaminaServer] = []
_LOG_OFFSETS = pytest.StashKey[dict[int, int]]()


def _log_size(server: LaminaServer) -> int:
    try:
        return server.log_path.stat().st_size
    except OSError:
        return 0


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    item.stash[_LOG_OFFSETS] = {id(s): _log_size(s) for s in _SERVERS}
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    offsets = item.stash.get(_LOG_OFFSETS, {})
    for server in list(_SERVERS):
        try:
            with open(server.log_path, "rb") as fh:
                fh.seek(offsets.get(id(server), 0))
                text = fh.read()[-20000:].decode(errors="replace")
        except OSError:
            continue
        if text.strip():
            report.sections.append((f"lamina serve output ({server.endpoint}, {report.when})", text))


def _start(tmp: Path, name: str = "server") -> LaminaServer:
    server = LaminaServer(data_dir=tmp / "data", log_path=tmp / f"{name}.log")
    _SERVERS.append(server)
    try:
        server.start()
    except Exception:
        _SERVERS.remove(server)
        raise
    return server


def _shutdown(server: LaminaServer) -> None:
    try:
        rc = server.stop()
        left = server.kill_leftovers()
        if rc != 0:
            tail = "\n".join(server.output().splitlines()[-60:])
            warnings.warn(f"lamina serve {server.endpoint} exited with {rc} on SIGTERM (None: did not stop "
                          f"within 30 s, killed); last output:\n{tail}", stacklevel=1)
        if left:
            warnings.warn(f"processes left behind by lamina serve {server.endpoint}, killed: "
                          f"{describe_pids(left)}", stacklevel=1)
    finally:
        with contextlib.suppress(ValueError):
            _SERVERS.remove(server)


@pytest.fixture(scope="session")
def lamina_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaminaServer]:
    server = _start(tmp_path_factory.mktemp("lamina-session"))
    yield server
    _shutdown(server)


@pytest.fixture(scope="session")
def endpoint(lamina_server: LaminaServer) -> str:
    return lamina_server.endpoint


@pytest.fixture
def cli(endpoint: str, tmp_path: Path) -> Callable[..., subprocess.CompletedProcess]:
    """cli(*args, ok=True): `python -m lamina ARGS` against the session server, run in a temp dir; with ok,
    the command must exit 0."""

    def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
        proc = run_lamina(endpoint, *args, cwd=tmp_path)
        if ok:
            assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    return run


@pytest.fixture(scope="module")
def linux_sandbox(endpoint: str) -> None:
    skip_unless_linux_sandbox(endpoint)


@pytest.fixture(scope="session")
def lambda_client(lamina_server: LaminaServer):
    return lamina_server.client()


@pytest.fixture
def lamina_factory(tmp_path: Path) -> Iterator[Callable[..., LaminaServer]]:
    """start(data_dir=None, env=None) -> a new running server; same data_dir = a restart on the same state;
    env: LAMINA_* settings for that server."""
    started: list[LaminaServer] = []

    def start(data_dir: Path | None = None, env: dict[str, str] | None = None) -> LaminaServer:
        n = len(started)
        server = LaminaServer(data_dir=data_dir or tmp_path / "data", log_path=tmp_path / f"server{n}.log",
                              extra_env=dict(env or {}))
        _SERVERS.append(server)
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()
        server.kill_leftovers()
        with contextlib.suppress(ValueError):
            _SERVERS.remove(server)


@pytest.fixture
def functions(lambda_client) -> Iterator[Callable[..., str]]:
    """create(files, prefix='t', handler='app.handler', wait=True, **create_kwargs) -> function name."""
    created: list[str] = []

    def create(files, prefix: str = "t", handler: str = "app.handler", wait: bool = True, **kwargs) -> str:
        name = unique_name(prefix)
        created.append(name)
        create_function(lambda_client, name, files, handler=handler, wait=wait, **kwargs)
        return name

    yield create
    for name in created:
        with contextlib.suppress(Exception):
            lambda_client.delete_function(FunctionName=name)


@pytest.fixture(scope="session")
def canary(lambda_client) -> Iterator[str]:
    name = unique_name("canary")
    create_function(lambda_client, name, probe_code("canary"))
    yield name
    with contextlib.suppress(Exception):
        lambda_client.delete_function(FunctionName=name)


@pytest.fixture
def assert_serving(lambda_client, canary: str) -> Callable[[], None]:
    """Call to prove the server still serves: a real invoke of a known-good function succeeds."""

    def check() -> None:
        resp, body = invoke(lambda_client, canary, {"ping": 1})
        assert resp["StatusCode"] == 200, resp
        assert "FunctionError" not in resp, body
        assert body["echo"] == {"ping": 1} and body["version"] == "canary", body

    return check
