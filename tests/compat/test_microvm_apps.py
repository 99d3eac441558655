"""Real apps in MicroVMs through the endpoint proxy: the launch article's Flask + gunicorn hello world
(pip-installed at build), state kept across suspend/resume, token refusals, the idle policy over
time (a server with LAMINA_MICROVM_MIN_IDLE_SECONDS=1), WebSocket and streaming both ways."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import threading
import time
import uuid
from collections.abc import Iterator

import jwt
import pytest
from microvm_support import build_or_fail, client, low_idle_server, needs_root, proxy, token, wait_state, write_app
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from helpers import LaminaServer, unique_name

pytestmark = needs_root

APP = '''
import hashlib, threading
from flask import Flask, Response, request

app = Flask(__name__)
count = 0
release = threading.Event()

@app.route("/")
def hello():
    return "Hello, World!"

@app.route("/count")
def counter():
    global count
    count += 1
    return str(count)

@app.route("/sse")
def sse():
    release.clear()
    def events():
        yield "data: first\\n\\n"
        release.wait(30)  # the rest only after /release: proves the first event was not buffered
        for i in range(3):
            yield f"data: {i}\\n\\n"
    return Response(events(), mimetype="text/event-stream")

@app.route("/release")
def do_release():
    release.set()
    return "ok"

@app.route("/upload", methods=["POST"])
def upload():
    h, n = hashlib.sha256(), 0
    while chunk := request.stream.read(65536):
        h.update(chunk)
        n += len(chunk)
    return f"{n} {h.hexdigest()}"
'''

WS = '''
import asyncio, websockets

async def echo(ws):
    async for message in ws:
        await ws.send(message)

async def main():
    async with websockets.serve(echo, "0.0.0.0", 8765, max_size=None):
        await asyncio.Future()

asyncio.run(main())
'''

DOCKERFILE = """FROM public.ecr.aws/lambda/microvms:al2023-minimal
RUN dnf install -y python3 python3-pip
WORKDIR /app
COPY requirements.txt .
RUN pip3 install -r requirements.txt
COPY app.py ws.py wait_ws.py ./
EXPOSE 5000
CMD ["sh", "-c", "python3 ws.py & python3 wait_ws.py && exec gunicorn -b 0.0.0.0:5000 --workers 1 --threads 4 app:app"]
"""

# Port 5000 answering is the instance's readiness: gunicorn starts only once the WebSocket server listens,
# so a launched instance never has 5000 up and 8765 not yet.
WAIT_WS = '''
import socket, time
for _ in range(600):
    try:
        socket.create_connection(("127.0.0.1", 8765), timeout=1).close()
        break
    except OSError:
        time.sleep(0.05)
'''

IDLE = {"maxIdleDurationSeconds": 1, "suspendedDurationSeconds": 2, "autoResumeEnabled": True}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaminaServer]:
    """A server of our own: the idle policy test needs the lowered minimum idle time."""
    with low_idle_server(tmp_path_factory.mktemp("mvm-apps")) as srv:
        yield srv


@pytest.fixture(scope="module")
def mvm(server: LaminaServer):
    # botocore enforces the model's 60 s minimum idle time itself; this server allows 1 s.
    return client(server.endpoint, validate=False)


@pytest.fixture(scope="module")
def flask_image(mvm, tmp_path_factory: pytest.TempPathFactory, server: LaminaServer) -> Iterator[str]:
    name = unique_name("flask")
    folder = write_app(tmp_path_factory.mktemp("flask"), {
        "app.py": APP, "ws.py": WS, "wait_ws.py": WAIT_WS, "requirements.txt": "flask\ngunicorn\nwebsockets\n",
        "Dockerfile": DOCKERFILE})
    yield build_or_fail(mvm, server, name, folder, "Flask")
    for item in mvm.list_microvms(imageIdentifier=name)["items"]:
        mvm.terminate_microvm(microvmIdentifier=item["microvmId"])


@pytest.fixture
def running(mvm, flask_image: str) -> Iterator[str]:
    mid = mvm.run_microvm(imageIdentifier=flask_image)["microvmId"]
    wait_state(mvm, mid, "RUNNING")
    yield mid
    mvm.terminate_microvm(microvmIdentifier=mid)


def test_flask_hello_world(mvm, server: LaminaServer, running: str) -> None:
    auth = token(mvm, running, [{"port": 5000}])
    status, headers, body = proxy(server.endpoint, running, "/", auth=auth, port=5000)
    assert status == 200 and body == b"Hello, World!", body
    endpoint = mvm.get_microvm(microvmIdentifier=running)["endpoint"]
    status, _, body = proxy(server.endpoint, running, "/", auth=auth, port=5000, by_host=endpoint)
    assert status == 200 and body == b"Hello, World!"


def test_counter_survives_suspend_and_new_instance_starts_fresh(mvm, server: LaminaServer, flask_image: str,
                                                               running: str) -> None:
    auth = token(mvm, running, [{"port": 5000}])
    for expected in (b"1", b"2", b"3"):
        assert proxy(server.endpoint, running, "/count", auth=auth, port=5000)[2] == expected
    mvm.suspend_microvm(microvmIdentifier=running)
    wait_state(mvm, running, "SUSPENDED")
    mvm.resume_microvm(microvmIdentifier=running)
    wait_state(mvm, running, "RUNNING")
    assert proxy(server.endpoint, running, "/count", auth=auth, port=5000)[2] == b"4"
    fresh = mvm.run_microvm(imageIdentifier=flask_image)["microvmId"]
    try:
        wait_state(mvm, fresh, "RUNNING")
        other = token(mvm, fresh, [{"port": 5000}])
        assert proxy(server.endpoint, fresh, "/count", auth=other, port=5000)[2] == b"1"
    finally:
        mvm.terminate_microvm(microvmIdentifier=fresh)


def test_tokens_refused(mvm, server: LaminaServer, flask_image: str, running: str) -> None:
    other = mvm.run_microvm(imageIdentifier=flask_image)["microvmId"]
    try:
        wait_state(mvm, other, "RUNNING")
        good = token(mvm, running, [{"port": 5000}])
        secret = (server.data_dir / "microvm-token.key").read_bytes()
        expired = jwt.encode({"mvm": running, "ports": "all", "iat": int(time.time()) - 7200,
                              "exp": int(time.time()) - 3600, "jti": uuid.uuid4().hex}, secret, algorithm="HS256")
        head, claims, sig = good.split(".")
        tampered = f"{head}.{claims[:-2]}{'A' if claims[-2] != 'A' else 'B'}{claims[-1]}.{sig}"
        cases = {"other instance": token(mvm, other, [{"port": 5000}]), "disallowed port": token(mvm, running),
                 "expired": expired, "tampered": tampered}
        for what, auth in cases.items():
            status, headers, body = proxy(server.endpoint, running, "/", auth=auth, port=5000)
            assert status == 403, (what, body)
            assert headers["x-amzn-errortype"] == "AccessDeniedException"
        assert b"expired" in proxy(server.endpoint, running, "/", auth=expired, port=5000)[2]
        assert proxy(server.endpoint, running, "/", auth=good, port=5000)[0] == 200
    finally:
        mvm.terminate_microvm(microvmIdentifier=other)


def test_idle_policy_over_time(mvm, server: LaminaServer, flask_image: str) -> None:
    mid = mvm.run_microvm(imageIdentifier=flask_image, idlePolicy=IDLE)["microvmId"]
    wait_state(mvm, mid, "RUNNING")
    auth = token(mvm, mid, [{"port": 5000}])
    assert proxy(server.endpoint, mid, "/count", auth=auth, port=5000)[2] == b"1"
    doc = wait_state(mvm, mid, "SUSPENDED", timeout=30)
    assert "No inbound traffic" in doc["stateReason"]
    assert doc["idlePolicy"] == IDLE
    # Auto-resume: the request is held while the instance resumes, then answered with its state intact.
    status, _, body = proxy(server.endpoint, mid, "/count", auth=auth, port=5000)
    assert status == 200 and body == b"2"
    assert mvm.get_microvm(microvmIdentifier=mid)["state"] in ("RUNNING", "SUSPENDING", "SUSPENDED")
    wait_state(mvm, mid, "SUSPENDED", timeout=30)
    doc = wait_state(mvm, mid, "TERMINATED", timeout=30)
    assert "Suspended for 2 s" in doc["stateReason"]


def test_streaming_both_ways(mvm, server: LaminaServer, running: str) -> None:
    auth = token(mvm, running, [{"port": 5000}])
    host, port = server.endpoint.split("://", 1)[1].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.request("GET", f"/lamina/v1/microvm/{running}/sse", headers={"X-aws-proxy-auth": auth,
                                                                       "X-aws-proxy-port": "5000"})
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("content-type").startswith("text/event-stream")
    assert resp.getheader("transfer-encoding") == "chunked"
    # The first event arrives while the app still holds the rest back: nothing buffers the stream.
    assert resp.readline() == b"data: first\n"
    assert proxy(server.endpoint, running, "/release", auth=auth, port=5000)[2] == b"ok"
    rest = resp.read()
    conn.close()
    assert rest == b"\ndata: 0\n\ndata: 1\n\ndata: 2\n\n"
    # A large request body, streamed in chunks of unknown total length.
    piece = bytes(range(256)) * 4096  # 1 MiB
    pieces = 12

    def body() -> Iterator[bytes]:
        for _ in range(pieces):
            yield piece

    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    conn.request("POST", f"/lamina/v1/microvm/{running}/upload", body=body(), encode_chunked=True,
                 headers={"X-aws-proxy-auth": auth, "X-aws-proxy-port": "5000"})
    resp = conn.getresponse()
    answer = resp.read().decode()
    conn.close()
    assert resp.status == 200, answer
    assert answer == f"{len(piece) * pieces} {hashlib.sha256(piece * pieces).hexdigest()}"


def test_websocket(mvm, server: LaminaServer, running: str) -> None:
    auth = token(mvm, running, [{"port": 8765}])
    host = server.endpoint.split("://", 1)[1]
    url = f"ws://{host}/lamina/v1/microvm/{running}/echo"

    async def session() -> None:
        async with ws_connect(url, additional_headers={"X-aws-proxy-auth": auth, "X-aws-proxy-port": "8765"},
                              max_size=None) as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
            blob = bytes(range(256)) * 8192
            await ws.send(blob)
            assert await ws.recv() == blob
        protocols = ["lambda-microvms", f"lambda-microvms.authentication.{auth}", "lambda-microvms.port.8765"]
        async with ws_connect(url, subprotocols=protocols) as ws:
            assert ws.subprotocol == "lambda-microvms"
            await ws.send("browser form")
            assert await ws.recv() == "browser form"
        with pytest.raises(InvalidStatus) as err:
            async with ws_connect(url, subprotocols=["lambda-microvms", "lambda-microvms.port.8765"]):
                pass
        assert err.value.response.status_code == 403

    asyncio.run(session())


def test_websocket_keeps_instance_awake(mvm, server: LaminaServer, flask_image: str) -> None:
    """An open WebSocket counts as traffic: the idle policy does not suspend under it, while it suspends an
    instance beside it that gets no traffic."""
    mid = mvm.run_microvm(imageIdentifier=flask_image, idlePolicy=IDLE)["microvmId"]
    idle = mvm.run_microvm(imageIdentifier=flask_image, idlePolicy=IDLE)["microvmId"]
    wait_state(mvm, mid, "RUNNING")
    auth = token(mvm, mid, [{"port": 8765}])
    url = f"ws://{server.endpoint.split('://', 1)[1]}/lamina/v1/microvm/{mid}/echo"
    states: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            states.append(mvm.get_microvm(microvmIdentifier=mid)["state"])
            time.sleep(0.2)

    async def session() -> None:
        async with ws_connect(url, additional_headers={"X-aws-proxy-auth": auth, "X-aws-proxy-port": "8765"}) as ws:
            watcher = threading.Thread(target=watch)
            watcher.start()
            # The idle policy has had its chance: the instance without traffic was suspended meanwhile.
            await asyncio.to_thread(wait_state, mvm, idle, "SUSPENDED", 30)
            await ws.send("still here")
            assert await ws.recv() == "still here"
            stop.set()
            watcher.join()

    try:
        asyncio.run(session())
    finally:
        mvm.terminate_microvm(microvmIdentifier=idle)
    assert states and set(states) == {"RUNNING"}, states
    mvm.terminate_microvm(microvmIdentifier=mid)
