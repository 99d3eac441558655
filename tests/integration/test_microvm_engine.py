"""The MicroVM engine (lamina.microvm.sandbox_engine) driven directly, without HTTP: Dockerfile
builds, instance sandboxes with private disks, suspend/resume, isolation, standbys, clean-up."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import require_command
from lamina.microvm.engine import BuildError, BuildRequest, BuiltImage, Hooks

pytestmark = pytest.mark.root
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: isolated instances use the linux backend")

APP = r'''
import http.server, json, os, socket, sys, urllib.parse
COUNT = 0
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def do_GET(self):
        global COUNT
        u = urllib.parse.urlparse(self.path)
        q = dict(urllib.parse.parse_qsl(u.query))
        if u.path == "/count":
            COUNT += 1
            out = {"count": COUNT}
        elif u.path == "/write":
            with open(q["path"], "w") as fh:
                fh.write(q["data"])
            out = {"ok": True}
        elif u.path == "/read":
            try:
                with open(q["path"]) as fh:
                    out = {"data": fh.read()}
            except OSError as exc:
                out = {"error": str(exc)}
        elif u.path == "/exists":
            out = {"exists": os.path.exists(q["path"])}
        elif u.path == "/connect":
            try:
                socket.create_connection(("127.0.0.1", int(q["port"])), timeout=2).close()
                out = {"connected": True}
            except OSError as exc:
                out = {"connected": False, "error": str(exc)}
        elif u.path == "/env":
            out = {"env": dict(os.environ), "cwd": os.getcwd(), "uid": os.getuid(), "pid": os.getpid()}
        elif u.path == "/exit":
            os._exit(3)
        else:
            out = {"path": self.path}
        body = json.dumps(out).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
print("app listening on", sys.argv[1], flush=True)
http.server.ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), H).serve_forever()
'''

DOCKERFILE = """\
FROM public.ecr.aws/lambda/microvms:al2023-minimal
RUN dnf install -y python3 && dnf clean all
WORKDIR /app
COPY app.py .
ENV GREETING="hello world" \\
    PORT=8000
RUN mkdir -p /usr/local/share/demo && echo built > /usr/local/share/demo/marker \\
    && echo "setting=1" > /etc/demo.conf && echo "ran as $(id -u) in $(pwd)"
EXPOSE 8000
CMD ["python3", "app.py", "8000"]
"""


class Log(list):
    def __call__(self, line: str) -> None:
        self.append(line)

    def text(self) -> str:
        return "\n".join(self)


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def backend():
    if os.geteuid() != 0:
        pytest.skip("needs root: isolated MicroVM instances use the linux sandbox backend")
    from lamina.sandbox.linux import LinuxBackend

    backend = LinuxBackend()
    yield backend
    backend.close()


def _engine(loop, backend, data_dir: Path, standby: int = 1):
    from lamina.config import Settings
    from lamina.microvm.sandbox_engine import SandboxEngine

    async def make():
        return SandboxEngine(backend, data_dir, Settings(microvm_standby=standby))
    return loop.run_until_complete(make())


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mvm-data")


@pytest.fixture(scope="module")
def engine(loop, backend, data_dir):
    engine = _engine(loop, backend, data_dir)
    yield engine
    loop.run_until_complete(engine.close())


def _context(tmp: Path, files: dict[str, str]) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (tmp / name).write_text(textwrap.dedent(text) if name != "Dockerfile" else text)
    return tmp


def _build(loop, engine, data_dir: Path, context: Path, name: str, hooks: Hooks | None = None,
           log: Log | None = None, env: dict[str, str] | None = None) -> BuiltImage:
    layer = data_dir / "layers" / name
    layer.mkdir(parents=True, exist_ok=True)
    request = BuildRequest(image_name=name, version="1", context_dir=context, layer_dir=layer,
                           hooks=hooks or Hooks(), env=env or {}, memory_mib=256, log=log if log is not None else Log())
    return loop.run_until_complete(asyncio.wait_for(engine.build(request), 600))


@pytest.fixture(scope="module")
def image(loop, engine, data_dir, tmp_path_factory) -> tuple[BuiltImage, Log]:
    ctx = _context(tmp_path_factory.mktemp("ctx"), {"Dockerfile": DOCKERFILE, "app.py": APP})
    log = Log()
    built = _build(loop, engine, data_dir, ctx, "demo", log=log, env={"FROM_API": "yes"})
    return built, log


async def _get(inst, path: str, port: int = 8000, timeout: float = 10.0) -> dict:
    reader, writer = await inst.open_connection(port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] == b"200", data[:200]
    return json.loads(body)


def _run(loop, coro, timeout: float = 60):
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


def _alive(pids: list[int]) -> list[str]:
    """The pids still running (zombies waiting for the host's init to reap them do not count)."""
    out = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        if stat[stat.rfind(")") + 2] != "Z":
            out.append(stat[:120])
    return out


def _pids(inst) -> list[int]:
    return inst.sandbox.cgroup.pids()


def test_build_logs_steps_and_writes_the_layer(image):
    built, log = image
    text = log.text()
    assert "Step 1/8 : FROM public.ecr.aws/lambda/microvms:al2023-minimal" in text
    assert "Step 2/8 : RUN dnf install -y python3 && dnf clean all" in text
    assert "base already provides python3" in text
    assert "Step 8/8 : CMD" in text
    assert "ran as 0 in /app" in text, text  # RUN output reaches the build log, as the image's root in WORKDIR
    layer = built.layer_dir
    # What RUN wrote to /usr/local and /etc landed in the layer, owned by the in-sandbox root.
    assert (layer / "usr/local/share/demo/marker").read_text() == "built\n"
    assert (layer / "etc/demo.conf").read_text() == "setting=1\n"
    assert (layer / "app/app.py").stat().st_uid == 200_000_000
    assert built.config.cmd == ["python3", "app.py", "8000"]
    assert built.config.workdir == "/app" and built.config.expose == [8000]
    assert built.config.env == {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                                "GREETING": "hello world", "PORT": "8000", "FROM_API": "yes"}
    # The build's own DNS / pip configuration never lands in the image.
    assert not (layer / "etc/resolv.conf").exists() and not (layer / "etc/pip.conf").exists()


def test_two_instances_count_separately_and_see_the_image(loop, engine, image):
    built, _ = image
    a = _run(loop, engine.launch(built, "mvm-a"))
    b = _run(loop, engine.launch(built, "mvm-b"))
    try:
        assert a.microvm_id == "mvm-a" and b.microvm_id == "mvm-b"
        assert [_run(loop, _get(a, "/count"))["count"] for _ in range(3)] == [1, 2, 3]
        assert _run(loop, _get(b, "/count"))["count"] == 1
        env = _run(loop, _get(a, "/env"))
        assert env["cwd"] == "/app" and env["uid"] == 0 and env["pid"] == 1
        assert env["env"]["GREETING"] == "hello world" and env["env"]["FROM_API"] == "yes"
        assert _run(loop, _get(b, "/read?path=/usr/local/share/demo/marker"))["data"] == "built\n"
        assert _run(loop, _get(b, "/read?path=/etc/demo.conf"))["data"] == "setting=1\n"
        assert a.log_path.read_text().startswith("app listening on 8000")
    finally:
        _run(loop, a.terminate())
        _run(loop, b.terminate())


def test_suspend_keeps_memory_disk_and_processes(loop, engine, image):
    built, _ = image
    inst = _run(loop, engine.launch(built, "mvm-s"))
    try:
        assert _run(loop, _get(inst, "/count"))["count"] == 1
        _run(loop, _get(inst, "/write?path=/app/state.txt&data=kept"))
        _run(loop, _get(inst, "/write?path=/usr/local/share/mine&data=local"))
        pids = _pids(inst)
        _run(loop, inst.suspend())
        assert inst.is_frozen()
        # A frozen instance does not answer: the request waits in the kernel ...

        async def pending():
            reader, writer = await inst.open_connection(8000)
            writer.write(b"GET /count HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            await writer.drain()
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(reader.read(1), 0.5)
            return reader, writer
        reader, writer = _run(loop, pending())
        _run(loop, inst.resume())
        assert not inst.is_frozen()
        # ... and is answered after resume, by the same process with the same memory.
        answer = _run(loop, reader.read())
        writer.close()
        assert json.loads(answer.partition(b"\r\n\r\n")[2])["count"] == 2
        assert _pids(inst) == pids
        assert _run(loop, _get(inst, "/read?path=/app/state.txt"))["data"] == "kept"
        assert _run(loop, _get(inst, "/read?path=/usr/local/share/mine"))["data"] == "local"
        # Suspend / resume twice in a row is harmless.
        _run(loop, inst.suspend())
        _run(loop, inst.suspend())
        _run(loop, inst.resume())
        _run(loop, inst.resume())
        assert _run(loop, _get(inst, "/count"))["count"] == 3
    finally:
        _run(loop, inst.terminate())


def test_instances_are_isolated(loop, engine, image, data_dir):
    built, _ = image
    a = _run(loop, engine.launch(built, "mvm-i1"))
    b = _run(loop, engine.launch(built, "mvm-i2"))
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        _run(loop, _get(a, "/write?path=/tmp/secret-a&data=a"))
        _run(loop, _get(a, "/write?path=/app/only-a&data=a"))
        assert not _run(loop, _get(b, "/exists?path=/tmp/secret-a"))["exists"]
        assert not _run(loop, _get(b, "/exists?path=/app/only-a"))["exists"]
        # The image's layer itself is untouched by an instance's writes.
        assert not (built.layer_dir / "app/only-a").exists()
        for host_path in ("/root", str(data_dir), "/work", str(Path(__file__).resolve())):
            if host_path == "/root":
                # /root exists in every image, but not the host's contents
                hidden = sorted(os.listdir("/root"))[:3]
                for name in hidden:
                    assert not _run(loop, _get(a, f"/exists?path=/root/{name}"))["exists"], name
                continue
            assert not _run(loop, _get(a, f"/exists?path={host_path}"))["exists"], host_path
        # Host loopback ports are out of reach (the instance's network has only its own loopback).
        port = listener.getsockname()[1]
        result = _run(loop, _get(a, f"/connect?port={port}"))
        assert result["connected"] is False, result
        # Other instance's port 8000 is a different server: its own loopback
        assert _run(loop, _get(a, "/connect?port=8000"))["connected"] is True
        # Namespaces: own pid namespace (the app is pid 1) and a different network namespace.
        app_pid = max(_pids(a))  # the launcher outside stays in the host's namespaces; the app is the newest
        assert os.readlink(f"/proc/{app_pid}/ns/net") != os.readlink("/proc/self/ns/net")
        assert os.readlink(f"/proc/{app_pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
        assert os.readlink(f"/proc/{app_pid}/ns/net") != os.readlink(f"/proc/{max(_pids(b))}/ns/net")
        assert os.readlink(f"/proc/{app_pid}/ns/user") != os.readlink("/proc/self/ns/user")
        with open(f"/proc/{app_pid}/status") as fh:
            status = dict(line.split(":", 1) for line in fh)
        assert status["NoNewPrivs"].strip() == "1" and status["Seccomp"].strip() == "2"
        assert int(status["CapBnd"].strip(), 16) & (1 << 21) == 0  # no CAP_SYS_ADMIN, even in its namespace
    finally:
        listener.close()
        _run(loop, a.terminate())
        _run(loop, b.terminate())


def test_terminate_leaves_nothing_behind(loop, engine, image):
    built, _ = image
    inst = _run(loop, engine.launch(built, "mvm-t"))
    _run(loop, _get(inst, "/write?path=/app/x&data=1"))
    pids = _pids(inst)
    groups = list(inst.sandbox.cgroup.dirs)
    disk = inst.disk_dir
    assert disk.is_dir() and pids and all(os.path.isdir(g) for g in groups)
    _run(loop, inst.terminate())
    _run(loop, inst.terminate())  # idempotent
    assert not disk.exists() and not inst.log_path.exists()
    assert not any(os.path.exists(g) for g in groups)
    assert not _alive(pids)
    with open("/proc/self/mountinfo") as fh:
        assert str(disk) not in fh.read()
    assert inst.exited.done()
    with pytest.raises(ConnectionRefusedError):
        _run(loop, inst.open_connection(8000))


def test_launch_takes_a_ready_standby(loop, engine, image):
    built, _ = image

    async def settle():
        for _ in range(200):
            if engine.standbys(built) >= 1:
                return
            await asyncio.sleep(0.05)
    _run(loop, settle())
    assert engine.standbys(built) == 1
    launched_at = time.clock_gettime(time.CLOCK_BOOTTIME)
    inst = _run(loop, engine.launch(built, "mvm-fast"))
    try:
        # Started before the launch (the kernel's start time of its sandbox, in ticks since boot), the app
        # answers at once, and its count starts fresh.
        started_at = int(Path(f"/proc/{inst.sandbox.pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        assert started_at / os.sysconf("SC_CLK_TCK") < launched_at, "the launch started a new instance"
        assert _run(loop, _get(inst, "/count"))["count"] == 1
        _run(loop, settle())
        assert engine.standbys(built) == 1, "a replacement standby should be started in the background"
    finally:
        _run(loop, inst.terminate())


def test_exited_resolves_when_the_app_dies(loop, engine, image):
    built, _ = image
    inst = _run(loop, engine.launch(built, "mvm-x"))
    try:
        async def crash():
            reader, writer = await inst.open_connection(8000)
            writer.write(b"GET /exit HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            await reader.read()
            writer.close()
            return await asyncio.wait_for(inst.exited, 10)
        reason = _run(loop, crash())
        assert "exited with status 3" in reason and str(inst.log_path) in reason
        assert _run(loop, inst.hook("run")) is None  # hooks the image did not enable
    finally:
        _run(loop, inst.terminate())
    assert inst.log_path.exists()  # kept: the reason points at it


def test_an_app_killed_by_sigkill_is_reported_as_such(loop, engine, image):
    # kill -9 (or the OOM killer) on the app: the launcher mirrors the signal (it used to crash resetting
    # SIGKILL's handler and exit 1, with a traceback in the app's log).
    built, _ = image
    inst = _run(loop, engine.launch(built, "mvm-k"))
    try:
        launcher = inst.sandbox.pid
        app = next(pid for pid in _pids(inst)
                   if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1] == str(launcher))
        os.kill(app, signal.SIGKILL)
        reason = _run(loop, asyncio.wait_for(inst.exited, 10))
        assert "killed by signal 9" in reason, reason
        assert "Traceback" not in inst.log_path.read_text()
    finally:
        _run(loop, inst.terminate())


def test_unsupported_instruction_fails_the_build_naming_its_line(loop, engine, data_dir, tmp_path):
    ctx = _context(tmp_path / "bad", {"Dockerfile": "FROM lamina/base\nWORKDIR /app\nSTOPSIGNAL SIGINT\n",
                                      "app.py": APP})
    with pytest.raises(BuildError, match="line 3: STOPSIGNAL is not supported"):
        _build(loop, engine, data_dir, ctx, "bad")
    ctx = _context(tmp_path / "bad2", {"Dockerfile": "FROM lamina/base\nRUN dnf install -y nginx-not-here\n"})
    with pytest.raises(BuildError, match=r"line 2: RUN: the base does not provide nginx-not-here"):
        _build(loop, engine, data_dir, ctx, "bad2")
    ctx = _context(tmp_path / "bad3", {"Dockerfile": "FROM lamina/base\nCOPY ../../etc/passwd /x\nCMD true\n"})
    with pytest.raises(BuildError, match="outside the build context"):
        _build(loop, engine, data_dir, ctx, "bad3")
    ctx = _context(tmp_path / "bad4", {"Dockerfile": "FROM lamina/base\nRUN echo out && exit 7\nCMD true\n"})
    log = Log()
    # The line and the command as written, quoted once (not a repr of a shell-quoted string).
    with pytest.raises(BuildError, match=r"^Dockerfile line 2: RUN: `echo out && exit 7` returned a non-zero code: 7 "
                                         r"\(Step 2/3\)$"):
        _build(loop, engine, data_dir, ctx, "bad4", log=log)
    assert "out" in log
    ctx = _context(tmp_path / "bad5", {"Dockerfile": "FROM lamina/base\nCMD [\"python3\", \"-c\", \"import sys; "
                                                     "print('boom'); sys.exit(2)\"]\n"})
    log = Log()
    with pytest.raises(BuildError, match="did not become ready"):
        _build(loop, engine, data_dir, ctx, "bad5", log=log)
    assert "app: boom" in log


NS_LISTENER = """
import socket, sys
srv = socket.create_server((sys.argv[1], 0))
print(srv.getsockname()[1], flush=True)
while True:
    srv.accept()[0].close()
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@contextlib.contextmanager
def _network_beside_the_host() -> Iterator[tuple[str, str, int]]:
    """A network namespace of the test's own, joined to the host's by a veth pair, with a TCP listener on
    its side: a stand-in for the internet (an address that is not the host's, on the other end of a link)
    that keeps all traffic on this machine. Yields (the host's end of the link, the listener's address and
    port); removes the namespace, the link and the listener."""
    tag = uuid.uuid4().hex[:6]
    ns, host_if, ns_if = f"lamina-t-{tag}", f"lt{tag}h", f"lt{tag}n"
    net = f"198.18.{int(tag[:2], 16)}"  # RFC 2544's benchmarking range: never a real network's
    _ip("netns", "add", ns)
    listener = None
    try:
        _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        _ip("link", "set", ns_if, "netns", ns)
        _ip("addr", "add", f"{net}.1/30", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("-n", ns, "addr", "add", f"{net}.2/30", "dev", ns_if)
        _ip("-n", ns, "link", "set", ns_if, "up")
        listener = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", NS_LISTENER, f"{net}.2"],
                                    stdout=subprocess.PIPE, text=True)
        assert listener.stdout is not None
        yield f"{net}.1", f"{net}.2", int(listener.stdout.readline())
    finally:
        if listener is not None:
            listener.kill()
            listener.wait(10)
        _ip("netns", "del", ns)  # takes the veth pair with it


def test_build_steps_reach_other_networks_but_not_the_host(loop, engine, data_dir, tmp_path):
    require_command("ip", "apt-get install iproute2")
    host_listener = socket.create_server(("127.0.0.1", 0))
    port = host_listener.getsockname()[1]
    with _network_beside_the_host() as (host_end, outside, outside_port):
        targets = [("127.0.0.1", port), ("0.0.0.0", port), (host_end, port), (outside, outside_port)]
        probe = ("import socket\n"
                 f"for host, port in {targets!r}:\n"
                 f"    try:\n"
                 f"        socket.create_connection((host, port), timeout=3).close()\n"
                 f"        print('reached', host)\n"
                 f"    except OSError as exc:\n"
                 f"        print('refused', host, exc.errno)\n")
        ctx = _context(tmp_path / "net", {"Dockerfile": "FROM lamina/base\nCOPY probe.py /\nRUN python3 /probe.py\n"
                                                        "CMD [\"python3\", \"-m\", \"http.server\", \"8080\"]\n",
                                          "probe.py": probe})
        log = Log()
        try:
            _build(loop, engine, data_dir, ctx, "net", log=log)
        finally:
            host_listener.close()
    # EPERM (1) from the host guard for the host's loopback and its own addresses; the address past the
    # link, which stands for the internet, answers.
    for host in ("127.0.0.1", "0.0.0.0", host_end):
        assert f"refused {host} 1" in log, log.text()
    assert f"reached {outside}" in log, log.text()


HOOKED_APP = r'''
import http.server, json, sys, threading
CALLS = {"ready": 0, "validate": 0}
class Hooks(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        name = self.path.rsplit("/", 1)[-1]
        CALLS[name] = CALLS.get(name, 0) + 1
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        ready = name != "ready" or CALLS["ready"] >= 3  # not ready the first two times it is asked
        self.send_response(200 if ready else 503)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass
class App(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps(CALLS).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
threading.Thread(target=http.server.HTTPServer(("0.0.0.0", 9000), Hooks).serve_forever, daemon=True).start()
http.server.HTTPServer(("0.0.0.0", 8080), App).serve_forever()
'''


def test_ready_hook_is_waited_for_and_validate_called(loop, engine, data_dir, tmp_path):
    ctx = _context(tmp_path / "hooked", {"Dockerfile": "FROM lamina/base\nWORKDIR /srv\nCOPY app.py .\n"
                                                       "CMD python3 app.py\n", "app.py": HOOKED_APP})
    log = Log()
    hooks = Hooks(port=9000, enabled={"ready", "validate", "run"}, timeouts={"ready": 20})
    built = _build(loop, engine, data_dir, ctx, "hooked", hooks=hooks, log=log)
    assert "Waiting until the /ready hook answered 200 ..." in log.text()
    assert "The /validate hook answered 200" in log.text()
    inst = _run(loop, engine.launch(built, "mvm-h"))
    try:
        calls = _run(loop, _get(inst, "/", port=8080))
        assert calls["ready"] == 3, calls  # 503 twice, retried until 200, then no more
        assert calls["validate"] == 1
        assert _run(loop, inst.hook("run", b'{"microvmId": "mvm-h"}')) == 200
    finally:
        _run(loop, inst.terminate())


def test_user_and_chown(loop, engine, data_dir, tmp_path):
    import io
    import tarfile

    ctx = _context(tmp_path / "user", {"Dockerfile": "FROM lamina/base\nWORKDIR /srv/app\n"
                                                     "COPY --chown=www-data:www-data app.py .\n"
                                                     "ADD site.tgz /srv/site/\nCOPY static/ /srv/static/\n"
                                                     "COPY *.txt /srv/texts/\nUSER www-data\n"
                                                     "ENV PATH=/srv/app/bin:$PATH\n"
                                                     "RUN id -u > /tmp/built-as\nEXPOSE 8000\n"
                                                     "CMD [\"python3\", \"app.py\", \"8000\"]\n", "app.py": APP,
                                       "a.txt": "a", "b.txt": "b"})
    (ctx / "static" / "css").mkdir(parents=True)
    (ctx / "static" / "css" / "site.css").write_text("body{}")
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:gz") as tar:
        page = b"<h1>hi</h1>"
        info = tarfile.TarInfo("index.html")
        info.size = len(page)
        tar.addfile(info, io.BytesIO(page))
    (ctx / "site.tgz").write_bytes(data.getvalue())
    built = _build(loop, engine, data_dir, ctx, "user")
    assert (built.layer_dir / "srv/site/index.html").read_bytes() == b"<h1>hi</h1>"  # ADD unpacks local tars
    assert (built.layer_dir / "srv/static/css/site.css").read_text() == "body{}"  # a directory's contents
    assert sorted(p.name for p in (built.layer_dir / "srv/texts").iterdir()) == ["a.txt", "b.txt"]
    assert (built.layer_dir / "srv/site/index.html").stat().st_uid == 200_000_000
    assert built.config.user == "www-data"
    assert (built.layer_dir / "srv/app/app.py").stat().st_uid == 200_000_033
    assert (built.layer_dir / "tmp/built-as").read_text() == "33\n"
    inst = _run(loop, engine.launch(built, "mvm-u"))
    try:
        env = _run(loop, _get(inst, "/env"))
        assert env["uid"] == 33 and env["env"]["HOME"] == "/var/www"
        assert env["env"]["PATH"] == "/srv/app/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        _run(loop, _get(inst, "/write?path=/tmp/mine&data=ok"))
        assert "Permission denied" in _run(loop, _get(inst, "/read?path=/etc/shadow"))["error"]
    finally:
        _run(loop, inst.terminate())


def test_close_stops_every_instance_and_standby(loop, backend, tmp_path):
    engine = _engine(loop, backend, tmp_path / "data", standby=1)
    ctx = _context(tmp_path / "ctx", {"Dockerfile": DOCKERFILE, "app.py": APP})
    built = _build(loop, engine, tmp_path / "data", ctx, "closing")
    inst = _run(loop, engine.launch(built, "mvm-c"))
    # Let the replacement standby start, so close() meets it half-way.
    _run(loop, asyncio.sleep(0.3))
    live = list(engine._live.values())
    assert len(live) >= 1
    pids = [p for i in live for p in _pids(i)]
    disks = [i.disk_dir for i in live]
    _run(loop, engine.close())
    assert inst._terminated
    assert not _alive(pids)
    assert not any(d.exists() for d in disks)
    assert not [p for p in engine.instances_dir.iterdir() if p.is_dir()], "a private disk was left behind"
    with pytest.raises(RuntimeError):
        _run(loop, engine.launch(built, "after-close"))
    # "Server restart": a new engine on the same data dir relaunches the stored image from its layer.
    again = _engine(loop, backend, tmp_path / "data", standby=1)
    try:
        stored = BuiltImage.from_dict(json.loads(json.dumps(built.to_dict())))
        inst = _run(loop, again.launch(stored, "mvm-restarted"))
        assert _run(loop, _get(inst, "/count"))["count"] == 1
        _run(loop, inst.terminate())
    finally:
        _run(loop, again.close())


def test_pip_install_requirements_builds_the_flask_app(loop, engine, data_dir, tmp_path):
    """The MicroVMs launch article's Flask + gunicorn app (needs PyPI; slow-ish)."""
    files = {
        "Dockerfile": "FROM public.ecr.aws/lambda/microvms:al2023-minimal\n"
                      "RUN dnf install -y python3 python3-pip\n"
                      "WORKDIR /app\n"
                      "COPY requirements.txt .\n"
                      "RUN pip3 install -r requirements.txt\n"
                      "COPY app.py .\n"
                      "EXPOSE 5000\n"
                      'CMD ["gunicorn", "--bind", "0.0.0.0:5000", "app:app"]\n',
        "requirements.txt": "flask\ngunicorn\n",
        "app.py": """
            from flask import Flask
            app = Flask(__name__)
            count = 0

            @app.route("/")
            def index():
                global count
                count += 1
                return {"count": count, "message": "Hello from Flask"}
            """,
    }
    ctx = _context(tmp_path / "flask", files)
    log = Log()
    built = _build(loop, engine, data_dir, ctx, "flask", log=log)
    assert "Successfully installed" in log.text()
    assert list((built.layer_dir / "usr/local/lib").glob("python3*/dist-packages/flask/__init__.py"))
    assert (built.layer_dir / "usr/local/bin/gunicorn").exists()
    inst = _run(loop, engine.launch(built, "mvm-flask"))
    try:
        assert _run(loop, _get(inst, "/", port=5000)) == {"count": 1, "message": "Hello from Flask"}
        assert _run(loop, _get(inst, "/", port=5000))["count"] == 2
    finally:
        _run(loop, inst.terminate())


def test_process_backend_best_effort(loop, tmp_path):
    """Without root: plain processes in a private copy of the layer, SIGSTOP for suspend (NOT isolated)."""
    from lamina.microvm.sandbox_engine import SandboxEngine
    from lamina.sandbox.process import ProcessBackend

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    engine = loop.run_until_complete(_make(lambda: SandboxEngine(ProcessBackend(), tmp_path / "data")))
    ctx = _context(tmp_path / "ctx", {
        "Dockerfile": f"FROM lamina/base\nWORKDIR /app\nCOPY app.py .\nRUN echo built > built.txt\n"
                      f"EXPOSE {port}\nCMD [\"python3\", \"app.py\", \"{port}\"]\n",
        "app.py": APP})
    log = Log()
    try:
        built = _build(loop, engine, tmp_path / "data", ctx, "proc", log=log)
        assert "NOT isolated" in log.text()
        assert (built.layer_dir / "app/built.txt").read_text() == "built\n"
        assert engine.standbys(built) == 0  # every instance would want the same host port
        inst = _run(loop, engine.launch(built, "p1"))
        try:
            assert [_run(loop, _get(inst, "/count", port=port))["count"] for _ in range(2)] == [1, 2]
            assert _run(loop, _get(inst, "/read?path=built.txt", port=port))["data"] == "built\n"
            _run(loop, inst.suspend())
            assert inst.is_frozen()
            _run(loop, inst.resume())
            assert _run(loop, _get(inst, "/count", port=port))["count"] == 3
            # A second instance could not bind the same host port, and its readiness check (and requests)
            # would reach the first one: refused, naming the holder.
            with pytest.raises(RuntimeError, match=f"port {port} on this host is already in use by MicroVM p1"):
                _run(loop, engine.launch(built, "p2"))
            assert _run(loop, _get(inst, "/count", port=port))["count"] == 4
        finally:
            _run(loop, inst.terminate())
        assert not inst.disk_dir.exists()
        with socket.socket() as other:  # a program outside Lamina holding the port counts too
            other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the app's connections may be in TIME_WAIT
            other.bind(("127.0.0.1", port))
            other.listen()
            with pytest.raises(RuntimeError, match=f"port {port} on this host is already in use by another program"):
                _run(loop, engine.launch(built, "p3"))
        inst = _run(loop, engine.launch(built, "p4"))  # free again: the first instance is gone
        _run(loop, inst.terminate())
    finally:
        _run(loop, engine.close())


async def _make(factory):
    return factory()
