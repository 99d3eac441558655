"""What says a MicroVM app is ready (the first EXPOSEd TCP port, else a UDP-only app's first `EXPOSE n/udp` port
being bound, else 8080), reading bound UDP ports from the kernel's table, and hook failures that name where the
hook was called."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from microvm_fake import FakeEngine, app_dir

from lamina.config import Settings
from lamina.microvm import dockerfile
from lamina.microvm.engine import BuiltImage, Hooks, ImageConfig
from lamina.microvm.instance import describe_readiness, ready_port, udp_port_bound
from lamina.microvm.manager import MicrovmManager
from lamina.sandbox.netns import bound_ports
from lamina.store.db import Database

# /proc/net/udp as the kernel writes it: 0.0.0.0:7000 (0x1B58) and 127.0.0.1:53 (0x0035), then one line of udp6.
UDP_TABLE = """\
   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  123: 00000000:1B58 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 41 2 0000000000000000 0
  456: 0100007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 42 2 0000000000000000 0
"""
UDP6_TABLE = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when
   7: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000
"""


def image(expose: list[int] | None = None, expose_udp: list[int] | None = None,
          hooks: Hooks | None = None) -> BuiltImage:
    config = ImageConfig(cmd=["app"], expose=expose or [], expose_udp=expose_udp or [])
    return BuiltImage("demo", "1", Path("/nonexistent"), config, hooks or Hooks(), 256)


def test_expose_splits_tcp_and_udp_ports() -> None:
    df = dockerfile.parse("FROM lamina/base\nEXPOSE 8000 7000/udp 9000/tcp 5000-5001/udp\nCMD app\n")
    [expose, _cmd] = df.steps
    assert dockerfile.expose_ports(expose, {}) == [8000, 9000]
    assert dockerfile.expose_ports(expose, {}, "udp") == [7000, 5000, 5001]


def test_ready_port_prefers_tcp_then_udp_then_8080() -> None:
    assert ready_port(image([5000], [7000])) == (5000, "tcp")
    assert ready_port(image([], [7000, 7001])) == (7000, "udp")
    assert ready_port(image()) == (8080, "tcp")
    assert describe_readiness(image([], [7000])) == "UDP port 7000 is bound"
    assert describe_readiness(image([5000])) == "port 5000 accepts connections"
    assert describe_readiness(image(hooks=Hooks(enabled={"ready"}))) == "the /ready hook answered 200"


def test_built_images_keep_their_udp_ports_across_a_restart() -> None:
    stored = BuiltImage.from_dict(image([5000], [7000]).to_dict())
    assert (stored.config.expose, stored.config.expose_udp) == ([5000], [7000])
    assert BuiltImage.from_dict({**image().to_dict(), "config": {"cmd": ["app"]}}).config.expose_udp == []


def test_bound_ports_reads_the_kernels_tables() -> None:
    assert bound_ports(UDP_TABLE) == {7000, 53}
    assert bound_ports(UDP6_TABLE) == {8080}
    assert bound_ports(UDP_TABLE.splitlines()[0]) == set()


def test_udp_port_bound_sees_a_socket_of_this_host() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        assert asyncio.run(udp_port_bound(None, port))
    assert not asyncio.run(udp_port_bound(None, port))


def test_hook_target_names_path_and_port() -> None:
    assert Hooks(port=9001).target("run") == "POST /aws/lambda-microvms/runtime/v1/run on port 9001 inside the MicroVM"


def test_a_failing_run_hook_says_where_it_was_called(tmp_path: Path) -> None:
    async def main() -> None:
        db = Database(tmp_path / "data" / "lamina.db")
        engine = FakeEngine(fail_hooks="run")
        mgr = MicrovmManager(Settings(data_dir=tmp_path / "data"), db, engine)
        mgr.load()
        mgr.start()
        try:
            mgr.images.create({"name": "demo", "baseImageArn": "arn:aws:lambda:us-east-1:aws:microvm-image:al2023-1",
                               "buildRoleArn": "arn:aws:iam::000000000000:role/build",
                               "codeArtifact": {"uri": app_dir(tmp_path).as_uri()}})
            for _ in range(500):
                if mgr.images.images["demo"].config["state"] == "CREATED":
                    break
                await asyncio.sleep(0.02)
            mid = mgr.run({"imageIdentifier": "demo"})["microvmId"]
            for _ in range(500):
                if mgr.get(mid)["state"] == "TERMINATED":
                    break
                await asyncio.sleep(0.02)
            reason = mgr.get(mid)["stateReason"]
            # FakeEngine's hooks server is on 8080
            assert reason == ("The /run hook returned HTTP 500 (POST /aws/lambda-microvms/runtime/v1/run on port "
                              "8080 inside the MicroVM); it must answer 200."), reason
        finally:
            await mgr.close()
            db.close()

    asyncio.run(main())
