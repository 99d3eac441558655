"""A fake MicroVM engine for unit tests: each instance is a stdlib HTTP server in a plain subprocess
(no isolation), frozen with SIGSTOP and thawed with SIGCONT. Every port asked of open_connection is
the app's one port, except CLOSED_PORT (nothing listens there)."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import os
import signal
import sys
import textwrap
from pathlib import Path

from helpers import free_port
from lamina.microvm.engine import HOOK_PATH, BuildError, BuildRequest, BuiltImage, Hooks, ImageConfig

CLOSED_PORT = 9999
WS_PORT = 8081  # the app's WebSocket echo server

APP = textwrap.dedent('''
    import json, os, sys, time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    COUNT = 0
    HOOKS = []
    FAIL = set(filter(None, os.environ.get("FAIL_HOOKS", "").split(",")))

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def setup(self):
            super().setup()
            import socket
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # headers + body: 2 writes
        def log_message(self, *a): pass
        def _send(self, status, body, ctype="text/plain"):
            self.send_response(status)
            self.send_header("content-type", ctype)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def do_GET(self):
            global COUNT
            if self.path == "/count":
                COUNT += 1
                self._send(200, str(COUNT).encode())
            elif self.path == "/hooks":
                self._send(200, json.dumps(HOOKS).encode(), "application/json")
            elif self.path == "/headers":
                self._send(200, json.dumps(dict(self.headers.items())).encode(), "application/json")
            elif self.path == "/stream":
                self.send_response(200)
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                for i in range(3):
                    piece = f"data: {i}\\n\\n".encode()
                    self.wfile.write(b"%x\\r\\n%s\\r\\n" % (len(piece), piece))
                    self.wfile.flush()
                    time.sleep(0.05)
                self.wfile.write(b"0\\r\\n\\r\\n")
            elif self.path == "/exit":
                self._send(200, b"bye")
                os._exit(3)
            else:
                self._send(200, ("hello " + self.path).encode())
        def do_POST(self):
            if "chunked" in (self.headers.get("transfer-encoding") or ""):
                body = b""
                while (size := int(self.rfile.readline().strip(), 16)):
                    body += self.rfile.read(size)
                    self.rfile.readline()
                self.rfile.readline()
            else:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
            if self.path.startswith("''' + HOOK_PATH + '''"):
                name = self.path.rsplit("/", 1)[-1]
                HOOKS.append([name, body.decode()])
                self._send(500 if name in FAIL else 200, b"")
            else:
                self._send(200, body, "application/octet-stream")

    def ws_echo(conn):
        for message in conn:
            conn.send(message)

    def ws_main():
        from websockets.sync.server import serve
        with serve(ws_echo, "127.0.0.1", int(sys.argv[2]), subprotocols=None) as s:
            s.serve_forever()

    import threading
    threading.Thread(target=ws_main, daemon=True).start()
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
''')


class FakeInstance:
    def __init__(self, microvm_id: str, image: BuiltImage, proc: asyncio.subprocess.Process, port: int,
                 ws_port: int) -> None:
        self.microvm_id = microvm_id
        self.image = image
        self.proc = proc
        self.port = port
        self.ws_port = ws_port
        self.exited: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.frozen = False
        self.terminated = False
        self.calls: list[str] = []
        self._watch = asyncio.get_running_loop().create_task(self._wait())

    async def _wait(self) -> None:
        code = await self.proc.wait()
        if not self.terminated and not self.exited.done():
            self.exited.set_result(f"exit status {code}")

    async def open_connection(self, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if port == CLOSED_PORT:
            raise ConnectionRefusedError(111, "Connection refused")
        return await asyncio.open_connection("127.0.0.1", self.ws_port if port == WS_PORT else self.port)

    async def hook(self, name: str, body: bytes = b"") -> int | None:
        self.calls.append(name)
        if name not in self.image.hooks.enabled:
            return None

        def post() -> int:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.image.hooks.timeout(name))
            conn.request("POST", HOOK_PATH + name, body=body)
            status = conn.getresponse().status
            conn.close()
            return status

        return await asyncio.to_thread(post)

    async def suspend(self) -> None:
        self.calls.append("freeze")
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.frozen = True

    async def resume(self) -> None:
        self.calls.append("thaw")
        os.kill(self.proc.pid, signal.SIGCONT)
        self.frozen = False

    async def terminate(self) -> None:
        self.calls.append("kill")
        self.terminated = True
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
            os.kill(self.proc.pid, signal.SIGCONT)
        await self.proc.wait()


class FakeEngine:
    def __init__(self, hooks: Hooks | None = None, fail_hooks: str = "", fail_build: bool = False) -> None:
        self.hooks = hooks or Hooks(port=8080, enabled={"run", "suspend", "resume", "terminate"})
        self.fail_hooks = fail_hooks
        self.fail_build = fail_build
        self.expose: list[int] = []          # the built image's EXPOSEd ports
        self.instances: list[FakeInstance] = []
        self.forgotten: list[str] = []

    async def build(self, request: BuildRequest) -> BuiltImage:
        request.log("fake build: step 1/1")
        if self.fail_build:
            raise BuildError("RUN false: exit status 1")
        config = ImageConfig(cmd=["app"], expose=self.expose)
        return BuiltImage(request.image_name, request.version, request.layer_dir, config,
                          request.hooks if request.hooks.enabled else self.hooks, request.memory_mib)

    async def launch(self, image: BuiltImage, microvm_id: str) -> FakeInstance:
        port, ws_port = free_port(), free_port()
        env = dict(os.environ, FAIL_HOOKS=self.fail_hooks)
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", APP, str(port), str(ws_port), env=env)
        for p in (port, ws_port):
            for _ in range(250):
                try:
                    _, w = await asyncio.open_connection("127.0.0.1", p)
                    w.close()
                    break
                except OSError:
                    await asyncio.sleep(0.02)
        inst = FakeInstance(microvm_id, image, proc, port, ws_port)
        self.instances.append(inst)
        return inst

    def forget(self, image: BuiltImage) -> None:
        self.forgotten.append(image.version)

    async def close(self) -> None:
        for inst in self.instances:
            if inst.proc.returncode is None:
                await inst.terminate()


def app_dir(tmp: Path) -> Path:
    d = tmp / "app"
    d.mkdir(exist_ok=True)
    (d / "Dockerfile").write_text("FROM scratch\nCMD [\"app\"]\n")
    return d
