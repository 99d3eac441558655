"""A UDP-only MicroVM app (`EXPOSE n/udp`, no TCP port, no /ready hook) builds and launches: the engine waits
until the app has bound its UDP port in the instance's own network namespace, then datagrams reach it; an app
that never binds fails its build saying so. Linux sandbox (root)."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from lamina.microvm.engine import BuildError, BuildRequest, BuiltImage, Hooks

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]

# Binds only after a while, so a build that did not wait would launch an app that drops the first datagram.
UDP_APP = r'''
import socket, time
time.sleep(0.5)
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("0.0.0.0", 7000))
while True:
    data, peer = sock.recvfrom(2048)
    sock.sendto(b"echo:" + data, peer)
'''


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def engine(loop, tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("needs root: isolated MicroVM instances use the linux sandbox backend")
    from lamina.config import Settings
    from lamina.microvm.sandbox_engine import SandboxEngine
    from lamina.sandbox.linux import LinuxBackend

    backend = LinuxBackend()
    data = tmp_path_factory.mktemp("mvm-udp")

    async def make() -> SandboxEngine:
        return SandboxEngine(backend, data, Settings(microvm_standby=1))

    engine = loop.run_until_complete(make())
    yield engine
    loop.run_until_complete(engine.close())
    backend.close()


def _build(loop, engine, tmp: Path, name: str, dockerfile: str, hooks: Hooks | None = None) -> tuple[BuiltImage,
                                                                                                        list[str]]:
    context = tmp / name
    context.mkdir()
    (context / "Dockerfile").write_text(dockerfile)
    (context / "app.py").write_text(UDP_APP)
    layer = tmp / "layers" / name
    layer.mkdir(parents=True)
    log: list[str] = []
    request = BuildRequest(image_name=name, version="1", context_dir=context, layer_dir=layer,
                           hooks=hooks or Hooks(), env={}, memory_mib=256, log=log.append)
    return loop.run_until_complete(asyncio.wait_for(engine.build(request), 120)), log


async def _echo(inst, port: int, data: bytes) -> bytes:
    sock: socket.socket = await inst.open_datagram(port)
    try:
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(sock, data)
        return await asyncio.wait_for(loop.sock_recv(sock, 2048), 5)
    finally:
        sock.close()


def test_udp_only_app_is_ready_once_its_port_is_bound(loop, engine, tmp_path: Path) -> None:
    built, log = _build(loop, engine, tmp_path, "udp-only",
                        "FROM public.ecr.aws/lambda/microvms:al2023-minimal\nWORKDIR /app\nCOPY app.py .\n"
                        "EXPOSE 7000/udp\nCMD [\"python3\", \"app.py\"]\n")
    assert built.config.expose == [] and built.config.expose_udp == [7000]
    assert "Waiting until UDP port 7000 is bound ..." in log, log
    # The standby the build verified is thawed: its socket is bound already, the first datagram is answered.
    inst = loop.run_until_complete(engine.launch(built, "mvm-udp-1"))
    try:
        assert loop.run_until_complete(_echo(inst, 7000, b"hi")) == b"echo:hi"
    finally:
        loop.run_until_complete(inst.terminate())


def test_udp_app_that_never_binds_fails_the_build_saying_so(loop, engine, tmp_path: Path) -> None:
    with pytest.raises(BuildError) as info:
        _build(loop, engine, tmp_path, "udp-wrong-port",
               "FROM lamina/base\nWORKDIR /app\nCOPY app.py .\nEXPOSE 7001/udp\nCMD [\"python3\", \"app.py\"]\n",
               hooks=Hooks(timeouts={"ready": 3}))
    assert "did not bind UDP port 7001 within 3s" in str(info.value), info.value
