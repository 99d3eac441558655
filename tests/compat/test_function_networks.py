"""What functions reach, for every kind of runtime (Python forks of a zygote; custom runtimes and Node.js, sandboxes
the launcher starts): the default outbound network reaches "the outside" (a network namespace the test makes and
routes from the host) but not the host itself nor a VPC subnet; a VPC function reaches a host on its subnet (a
namespace on the subnet's bridge) and not the outside; environments cannot reach each other; security-group
changes keep established connections; `function_network = none` leaves loopback only. Traffic goes only to
namespaces the tests make."""

from __future__ import annotations

import contextlib
import http.client
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest

from helpers import create_function, health, invoke_ok, unique_name

pytestmark = pytest.mark.usefixtures("linux_sandbox")

OUTSIDE_HOST, OUTSIDE_PEER = "198.18.77.1", "198.18.77.2"    # the host's end, "the outside" (RFC 2544 range)
SUBNET_PEER = "10.214.1.10"
PORT = 7070

PROBE = '''
import socket
import threading
import time

HELD = []


def _serve(srv):
    while True:
        conn, _ = srv.accept()
        with conn:
            conn.sendall(b"env")


def probe(event):
    out = {}
    if event.get("whoami"):   # this environment's own address (no packet is sent)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((event["whoami"], 9))
            out["me"] = s.getsockname()[0]
    if event.get("listen"):   # a server in this environment, left running after the invoke
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("0.0.0.0", event["listen"]))
        srv.listen(8)
        threading.Thread(target=_serve, args=(srv,), daemon=True).start()
    if event.get("hold"):     # a connection kept open across invokes
        s = socket.create_connection(tuple(event["hold"]), timeout=2)
        HELD.append(s)
        out["held"] = s.recv(64).decode().strip()
    if event.get("use"):      # a line echoed over the held connection
        s = HELD[-1]
        s.sendall(event["use"].encode())
        out["echo"] = s.recv(64).decode()
    if event.get("sleep"):
        time.sleep(event["sleep"])
    if event.get("ifaces"):
        with open("/proc/net/dev") as fh:
            out["ifaces"] = sorted(line.split(":")[0].strip() for line in fh.readlines()[2:])
    for name, (host, port) in event.get("targets", {}).items():
        try:
            with socket.create_connection((host, port), timeout=1) as s:
                out[name] = s.recv(64).decode().strip() or "connected"
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

NODE_APP = '''
import fs from 'node:fs';
import net from 'node:net';

function connect(host, port) {
  return new Promise((resolve) => {
    const s = net.connect({ host, port, timeout: 1000 });
    s.on('data', (d) => { s.destroy(); resolve(String(d).trim()); });
    s.on('timeout', () => { s.destroy(); resolve('error: timeout'); });
    s.on('error', (e) => resolve('error: ' + e.code));
  });
}

export const handler = async (event) => {
  const out = {};
  if (event.ifaces) {
    out.ifaces = fs.readFileSync('/proc/net/dev', 'utf8').split('\\n').slice(2).filter(Boolean)
      .map((line) => line.split(':')[0].trim()).sort();
  }
  for (const [name, [host, port]] of Object.entries(event.targets || {})) out[name] = await connect(host, port);
  return out;
};
'''

# Answers each connection with the address it came from, then echoes what it gets.
PEER_SERVER = '''
import socket, sys, threading
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2])))
srv.listen(512)
print("ready", flush=True)


def serve(conn, peer):
    with conn:
        conn.sendall(peer[0].encode() + b"\\n")
        while data := conn.recv(4096):
            conn.sendall(data)


while True:
    threading.Thread(target=serve, args=srv.accept(), daemon=True).start()
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
def subnet(endpoint: str) -> Iterator[dict]:
    with _subnet(endpoint) as made:
        yield made


@contextlib.contextmanager
def _subnet(endpoint: str) -> Iterator[dict]:
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
            yield {"subnet": subnet_id, "sg": sg, "ec2": ec2, "ns": ns}


def _function(kind: str, endpoint: str) -> tuple[dict, dict]:
    """The probe as a function of each kind: a Python one (forks of a zygote), a custom runtime and a Node.js one
    (sandboxes the launcher starts)."""
    if kind == "python":
        return {"app.py": PYTHON_APP}, {}
    if kind == "custom":
        return {"bootstrap": BOOTSTRAP}, {"Runtime": "provided.al2023", "handler": "unused"}
    available = sorted(r for r in health(endpoint)["runtimes"]["available"] if r.startswith("nodejs"))
    if not available:
        pytest.skip("no Node.js on this machine")
    return {"index.mjs": NODE_APP}, {"Runtime": available[0], "handler": "index.handler"}


TARGETS = {"outside": [OUTSIDE_PEER, PORT], "host": [OUTSIDE_HOST, PORT], "vpc": [SUBNET_PEER, PORT]}


@pytest.mark.parametrize("kind", ["python", "custom", "node"])
def test_outbound_reaches_the_outside_not_the_host_nor_vpc(lambda_client, endpoint, functions, outside, subnet,
                                                           kind) -> None:
    files, extra = _function(kind, endpoint)
    name = functions(files, Timeout=15, **extra)
    got = invoke_ok(lambda_client, name, {"targets": TARGETS, "ifaces": True})
    # Masqueraded out of the host's interface towards the outside: the outside sees the host's address.
    assert got["outside"] == OUTSIDE_HOST, got
    assert got["host"].startswith("error"), got
    assert got["vpc"].startswith("error"), got
    assert got["ifaces"] == ["eth0", "lo"], got


@pytest.mark.parametrize("kind", ["python", "custom", "node"])
def test_vpc_function_reaches_its_subnet_only(lambda_client, endpoint, functions, outside, subnet, kind) -> None:
    files, extra = _function(kind, endpoint)
    name = functions(files, Timeout=15, VpcConfig={"SubnetIds": [subnet["subnet"]], "SecurityGroupIds": [subnet["sg"]]},
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
        create_function(client, name, files, handler="unused" if extra else "app.handler", Timeout=15, **extra)
        got = invoke_ok(client, name, {"targets": {"outside": [OUTSIDE_PEER, PORT]}, "ifaces": True})
        assert got["ifaces"] == ["lo"] and got["outside"].startswith("error"), (kind, got)


def test_established_connection_survives_a_security_group_change(lambda_client, functions, subnet) -> None:
    name = functions({"app.py": PYTHON_APP}, Timeout=15,
                     VpcConfig={"SubnetIds": [subnet["subnet"]], "SecurityGroupIds": [subnet["sg"]]})
    held = invoke_ok(lambda_client, name, {"hold": [SUBNET_PEER, PORT]})
    assert held["held"].startswith("10.214.1."), held
    # No egress at all from now on: new connections fail, the established one stays.
    subnet["ec2"].revoke_security_group_egress(GroupId=subnet["sg"], IpPermissions=[
        {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    deadline = time.monotonic() + 10
    while not (now := invoke_ok(lambda_client, name, {"targets": {"vpc": [SUBNET_PEER, PORT]}}))["vpc"] \
            .startswith("error") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert now["vpc"].startswith("error"), now
    assert invoke_ok(lambda_client, name, {"use": "still here"})["echo"] == "still here"


def test_environments_cannot_reach_each_other_nor_be_reached_from_the_vpc(lambda_client, functions, subnet) -> None:
    vpc = {"SubnetIds": [subnet["subnet"]], "SecurityGroupIds": [subnet["sg"]]}
    first, second = (functions({"app.py": PYTHON_APP}, Timeout=15, VpcConfig=vpc) for _ in range(2))
    listening = invoke_ok(lambda_client, first, {"listen": 7171, "whoami": SUBNET_PEER})
    me = listening["me"]
    # The server is up (its own environment reaches it) ...
    assert invoke_ok(lambda_client, first, {"targets": {"self": [me, 7171]}})["self"] == "env"
    # ... but not from an environment of another function in the same pair, nor of the same function.
    assert invoke_ok(lambda_client, second, {"targets": {"other": [me, 7171]}})["other"].startswith("error")
    eni = subnet["ec2"].describe_network_interfaces(Filters=[{"Name": "subnet-id", "Values": [subnet["subnet"]]}])
    [address] = [i["PrivateIpAddress"] for i in eni["NetworkInterfaces"]]
    # Nothing in the VPC opens a connection into an environment (one way, as on AWS).
    probe = ("import socket, sys\ntry:\n    socket.create_connection((sys.argv[1], 7171), timeout=1)\n"
             "    print('connected')\nexcept OSError as exc:\n    print(type(exc).__name__)")
    for target in (address, me):
        got = subprocess.run(["ip", "netns", "exec", subnet["ns"], sys.executable, "-c", probe, target],
                             capture_output=True, text=True, timeout=10).stdout.strip()
        assert got and got != "connected", (target, got)


def test_200_environments_of_two_functions_share_one_interface(lamina_factory) -> None:
    server = lamina_factory(env={"LAMINA_DISPATCH_MODE": "per-request", "LAMINA_ACCOUNT_CONCURRENCY": "400"})
    client = server.client()
    with _subnet(server.endpoint) as net:
        vpc = {"SubnetIds": [net["subnet"]], "SecurityGroupIds": [net["sg"]]}
        names = [unique_name("pair") for _ in range(2)]
        for name in names:
            create_function(client, name, {"app.py": PYTHON_APP}, Timeout=60, VpcConfig=vpc)
        payload = json.dumps({"targets": {"vpc": [SUBNET_PEER, PORT]}, "whoami": SUBNET_PEER, "sleep": 4}).encode()

        def one(name: str) -> dict:
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
            try:
                conn.request("POST", f"/2015-03-31/functions/{name}/invocations", body=payload)
                resp = conn.getresponse()
                body = resp.read()
                assert resp.status == 200 and not resp.getheader("X-Amz-Function-Error"), body
                return json.loads(body)
            finally:
                conn.close()

        with ThreadPoolExecutor(200) as pool:
            results = list(pool.map(one, names * 100))
        seen = {r["vpc"] for r in results}
        envs = {r["me"] for r in results}
        assert len(seen) == 1 and next(iter(seen)).startswith("10.214.1."), seen   # one subnet address
        assert len(envs) >= 100, len(envs)   # that many environments at once, each with its own address
        enis = net["ec2"].describe_network_interfaces(Filters=[{"Name": "subnet-id", "Values": [net["subnet"]]}])
        assert [i["PrivateIpAddress"] for i in enis["NetworkInterfaces"]] == list(seen)
        for name in names:
            client.delete_function(FunctionName=name)
