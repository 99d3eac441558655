"""What functions reach, for every kind of runtime (Python forks of a zygote, custom runtimes the launcher starts):
the default outbound network reaches "the outside" (a network namespace the test makes and routes from the host)
but not the host itself; a VPC function reaches a host on its subnet (a namespace on the subnet's bridge);
`function_network = none` leaves loopback only. Traffic goes only to namespaces the tests make."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import boto3
import pytest

from helpers import create_function, invoke_ok, unique_name

pytestmark = pytest.mark.usefixtures("linux_sandbox")

OUTSIDE_HOST, OUTSIDE_PEER = "198.18.77.1", "198.18.77.2"    # the host's end, "the outside" (RFC 2544 range)
SUBNET_PEER = "10.214.1.10"
PORT = 7070

PROBE = '''
import socket


def probe(event):
    out = {}
    if event.get("ifaces"):
        with open("/proc/net/dev") as fh:
            out["ifaces"] = sorted(line.split(":")[0].strip() for line in fh.readlines()[2:])
    for name, (host, port) in event.get("targets", {}).items():
        try:
            with socket.create_connection((host, port), timeout=1) as s:
                out[name] = s.recv(64).decode() or "connected"
        except OSError as exc:
            out[name] = "error: " + type(exc).__name__
    return out
'''

PYTHON_APP = PROBE + '''

def handler(event, context):
    return probe(event)
'''

BOOTSTRAP = '#!/usr/bin/python3\n' + PROBE + '''
import http.client, json, os
host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
conn = http.client.HTTPConnection(host, int(port))
while True:
    conn.request("GET", "/2018-06-01/runtime/invocation/next")
    resp = conn.getresponse()
    event = json.loads(resp.read())
    rid = resp.getheader("Lambda-Runtime-Aws-Request-Id")
    conn.request("POST", f"/2018-06-01/runtime/invocation/{rid}/response", json.dumps(probe(event)))
    conn.getresponse().read()
'''

# Answers each connection with the address it came from.
PEER_SERVER = '''
import socket, sys
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2])))
srv.listen(64)
print("ready", flush=True)
while True:
    conn, peer = srv.accept()
    with conn:
        conn.sendall(peer[0].encode())
'''


def _sh(*argv: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True)
    assert proc.returncode == 0, f"{argv}: {proc.stderr}"


@contextlib.contextmanager
def _peer(ns: str | None, address: str) -> Iterator[None]:
    """PEER_SERVER on address:PORT, in namespace ns (None: the host's)."""
    prefix = ["ip", "netns", "exec", ns] if ns else []
    server = subprocess.Popen([*prefix, sys.executable, "-c", PEER_SERVER, address, str(PORT)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        yield
    finally:
        server.terminate()
        server.wait(10)


@contextlib.contextmanager
def _namespace(link: str, ns: str) -> Iterator[None]:
    try:
        _sh("ip", "netns", "add", ns)
        _sh("ip", "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", ns)
        _sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", link], capture_output=True)


@pytest.fixture(scope="module")
def outside() -> Iterator[None]:
    """'The outside': a namespace routed from the host (198.18.77.2), a server in it; and a server on the host's own
    end of that link (198.18.77.1), which functions must not reach."""
    tag = uuid.uuid4().hex[:8]
    link, ns = f"lto{tag}", f"ltout{tag}"
    with _namespace(link, ns):
        _sh("ip", "addr", "add", f"{OUTSIDE_HOST}/30", "dev", link)
        _sh("ip", "link", "set", link, "up")
        _sh("ip", "-n", ns, "addr", "add", f"{OUTSIDE_PEER}/30", "dev", "eth0")
        _sh("ip", "-n", ns, "link", "set", "eth0", "up")
        with _peer(ns, OUTSIDE_PEER), _peer(None, OUTSIDE_HOST):
            yield


@pytest.fixture
def subnet(endpoint: str) -> Iterator[dict[str, str]]:
    """A VPC subnet with a host on it (a namespace on the subnet's bridge, a server at 10.214.1.10)."""
    ec2 = boto3.client("ec2", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test",
                       aws_secret_access_key="test")
    vpc = ec2.create_vpc(CidrBlock="10.214.0.0/16")["Vpc"]["VpcId"]
    subnet_id = ec2.create_subnet(VpcId=vpc, CidrBlock="10.214.1.0/24")["Subnet"]["SubnetId"]
    sg = ec2.create_security_group(VpcId=vpc, GroupName=unique_name("net"), Description="net")["GroupId"]
    bridge = "lsb" + subnet_id.split("-")[1][:8]
    deadline = time.monotonic() + 10
    while subprocess.run(["ip", "link", "show", bridge], capture_output=True).returncode \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    tag = uuid.uuid4().hex[:8]
    link, ns = f"lts{tag}", f"ltsub{tag}"
    with _namespace(link, ns):
        _sh("ip", "link", "set", link, "master", bridge, "up")
        _sh("ip", "-n", ns, "addr", "add", f"{SUBNET_PEER}/24", "dev", "eth0")
        _sh("ip", "-n", ns, "link", "set", "eth0", "up")
        with _peer(ns, SUBNET_PEER):
            yield {"subnet": subnet_id, "sg": sg}


TARGETS = {"outside": [OUTSIDE_PEER, PORT], "host": [OUTSIDE_HOST, PORT], "vpc": [SUBNET_PEER, PORT]}


@pytest.mark.parametrize("kind", ["python", "custom"])
def test_outbound_reaches_the_outside_not_the_host_nor_vpc(lambda_client, functions, outside, subnet, kind) -> None:
    files, extra = ({"app.py": PYTHON_APP}, {}) if kind == "python" else \
        ({"bootstrap": BOOTSTRAP}, {"Runtime": "provided.al2023", "handler": "unused"})
    name = functions(files, **extra)
    got = invoke_ok(lambda_client, name, {"targets": TARGETS, "ifaces": True})
    # Masqueraded out of the host's interface towards the outside: the outside sees the host's address.
    assert got["outside"] == OUTSIDE_HOST, got
    assert got["host"].startswith("error"), got
    assert got["vpc"].startswith("error"), got
    assert got["ifaces"] == ["eth0", "lo"], got


@pytest.mark.parametrize("kind", ["python", "custom"])
def test_vpc_function_reaches_its_subnet_only(lambda_client, functions, outside, subnet, kind) -> None:
    files, extra = ({"app.py": PYTHON_APP}, {}) if kind == "python" else \
        ({"bootstrap": BOOTSTRAP}, {"Runtime": "provided.al2023", "handler": "unused"})
    name = functions(files, VpcConfig={"SubnetIds": [subnet["subnet"]], "SecurityGroupIds": [subnet["sg"]]},
                     **extra)
    got = invoke_ok(lambda_client, name, {"targets": TARGETS})
    assert got["vpc"].startswith("10.214.1."), got     # the pair's one subnet address
    assert got["outside"].startswith("error"), got     # no NAT out of a VPC unless the VPC has one
    assert got["host"].startswith("error"), got


def test_function_network_none_is_loopback_only(lamina_factory, outside) -> None:
    server = lamina_factory(env={"LAMINA_FUNCTION_NETWORK": "none"})
    client = server.client()
    for kind, files, extra in (("python", {"app.py": PYTHON_APP}, {}),
                               ("custom", {"bootstrap": BOOTSTRAP}, {"Runtime": "provided.al2023"})):
        name = unique_name(f"none-{kind}")
        create_function(client, name, files, handler="unused" if extra else "app.handler", **extra)
        got = invoke_ok(client, name, {"targets": {"outside": [OUTSIDE_PEER, PORT]}, "ifaces": True})
        assert got["ifaces"] == ["lo"] and got["outside"].startswith("error"), (kind, got)
