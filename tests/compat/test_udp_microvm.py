"""The UDP gateway's MicroVM destination through a real `lamina serve` (root: real MicroVM instances):
a per-tenant UDP counter app, one instance per tenant (tenant id = bytes [0:4]); each instance counts
only its own tenant's packets; an idle instance suspends and its tenant's next packet resumes it with
its count intact; a terminated instance is replaced on the next packet (the count restarts); removing
the listener terminates its instances. Every packet goes to and from 127.0.0.1 only."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest
from microvm_support import (
    LOW_IDLE_ENV,
    build,
    build_or_fail,
    client,
    low_idle_server,
    needs_root,
    wait_state,
    write_app,
)

from helpers import LaminaServer, raw_request, run_lamina, unique_name

pytestmark = [needs_root, pytest.mark.timeout(600)]

LISTENERS = "/lamina/v1/udp/listeners"

# Replies to each datagram with "<its tenant>:<packets this instance has seen>:<every tenant it has seen>",
# from the port the datagram came to. The TCP port is only for the build's readiness check (EXPOSE).
APP = '''
import socket, threading

def ready():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", 8080))
    s.listen()
    while True:
        s.accept()[0].close()

udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("0.0.0.0", 7000))
# Ready (the TCP port the build and launch wait for) only once the UDP port is bound.
threading.Thread(target=ready, daemon=True).start()
count, seen = 0, set()
while True:
    data, addr = udp.recvfrom(65535)
    count += 1
    seen.add(data[:4].decode(errors="replace"))
    udp.sendto(f"{data[:4].decode(errors='replace')}:{count}:{','.join(sorted(seen))}".encode(), addr)
'''

DOCKERFILE = """FROM public.ecr.aws/lambda/microvms:al2023-minimal
WORKDIR /app
COPY app.py .
EXPOSE 8080
CMD ["python3", "-u", "app.py"]
"""


# Delivery "http": each POST of {"Messages": [...]} is answered with one reply per message,
# "<tenant>:<messages this instance has seen>" (Data in base64, the default Formatter).
HTTP_APP = '''
import base64, json
from http.server import BaseHTTPRequestHandler, HTTPServer

count = 0

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        global count
        messages = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["Messages"]
        replies = []
        for m in messages:
            count += 1
            tenant = base64.b64decode(m["Data"])[:4].decode()
            replies.append({"Tag": m["Tag"], "Data": base64.b64encode(f"{tenant}:{count}".encode()).decode()})
        body = json.dumps({"Replies": replies}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

HTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
'''


def api(endpoint: str, method: str, path: str, body: object = None):
    data = json.dumps(body).encode() if body is not None else b""
    return raw_request(endpoint, method, path, data, {"content-type": "application/json"}, sign=False)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaminaServer]:
    """A server of our own: the idle policy needs the lowered minimum idle time."""
    with low_idle_server(tmp_path_factory.mktemp("udp-mvm")) as srv:
        yield srv


@pytest.fixture(scope="module")
def mvm(server: LaminaServer):
    return client(server.endpoint, validate=False)


@pytest.fixture(scope="module")
def image(mvm, server: LaminaServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    name = unique_name("udpcount")
    folder = write_app(tmp_path_factory.mktemp("udpcount"), {"app.py": APP, "Dockerfile": DOCKERFILE})
    return build_or_fail(mvm, server, name, folder, "UDP counter")


@pytest.fixture(scope="module")
def listener(server: LaminaServer, image: str, mvm) -> Iterator[dict]:
    resp = api(server.endpoint, "POST", LISTENERS, {
        "Name": unique_name("mvm"), "Host": "127.0.0.1",
        "Destinations": [{"Type": "microvm", "Name": "vms", "Image": image,
                          "Arguments": {"TenantIdExpression": "[0:4]", "TenantIdFormatter": "ascii", "Port": 7000,
                                        "MaxIdle": 2, "MaxSuspended": 300, "AutoResume": True}}]})
    assert resp.status == 201, resp.describe()
    doc = resp.json()
    yield doc
    api(server.endpoint, "DELETE", f"{LISTENERS}/{doc['Id']}")


class Sender:
    """One client socket on loopback."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))

    def ask(self, data: bytes, timeout: float = 60.0) -> tuple[bytes, tuple]:
        self.sock.settimeout(timeout)
        self.sock.sendto(data, ("127.0.0.1", self.port))
        return self.sock.recvfrom(65535)

    def close(self) -> None:
        self.sock.close()


def destination(server: LaminaServer, listener: dict) -> dict:
    resp = api(server.endpoint, "GET", f"{LISTENERS}/{listener['Id']}")
    assert resp.status == 200, resp.describe()
    return resp.json()["Destinations"][0]


def test_each_tenant_gets_its_own_instance(server: LaminaServer, listener: dict, mvm) -> None:
    a, b = Sender(listener["Port"]), Sender(listener["Port"])
    try:
        data, addr = a.ask(b"acme-1")
        assert data == b"acme:1:acme" and addr == ("127.0.0.1", listener["Port"])   # from the listener's port
        assert b.ask(b"bolt-1")[0] == b"bolt:1:bolt"
        assert a.ask(b"acme-2")[0] == b"acme:2:acme"
        assert b.ask(b"acme-3")[0] == b"acme:3:acme"    # another sender, same tenant: same instance, reply to b
        assert a.ask(b"bolt-2")[0] == b"bolt:2:bolt"
    finally:
        a.close()
        b.close()
    dest = destination(server, listener)
    instances = dest["Instances"]
    assert set(instances) == {"acme", "bolt"} and instances["acme"] != instances["bolt"]
    for mid in instances.values():
        doc = mvm.get_microvm(microvmIdentifier=mid)
        assert doc["state"] in ("RUNNING", "SUSPENDING", "SUSPENDED")
        assert doc["idlePolicy"] == {"maxIdleDurationSeconds": 2, "suspendedDurationSeconds": 300,
                                     "autoResumeEnabled": True}
    metrics = dest["Metrics"]
    assert metrics["InstancesStarted"] == 2 and metrics["Delivered"] == 5 and metrics["Replies"] == 5


def test_idle_instance_suspends_and_resumes_on_its_next_packet(server: LaminaServer, listener: dict, mvm) -> None:
    a = Sender(listener["Port"])
    try:
        first = a.ask(b"idle-1")[0]
        assert first == b"idle:1:idle"
        mid = destination(server, listener)["Instances"]["idle"]
        doc = wait_state(mvm, mid, "SUSPENDED", timeout=60)
        assert "No inbound traffic" in doc["stateReason"]
        assert a.ask(b"idle-2")[0] == b"idle:2:idle"     # resumed, its memory (the count) intact
        assert mvm.get_microvm(microvmIdentifier=mid)["state"] in ("RUNNING", "SUSPENDING", "SUSPENDED")
        assert destination(server, listener)["Instances"]["idle"] == mid
        assert destination(server, listener)["Metrics"]["InstancesResumed"] >= 1
    finally:
        a.close()


def test_terminated_instance_is_replaced_on_the_next_packet(server: LaminaServer, listener: dict, mvm) -> None:
    a = Sender(listener["Port"])
    try:
        assert a.ask(b"zeta-1")[0] == b"zeta:1:zeta"
        assert a.ask(b"zeta-2")[0] == b"zeta:2:zeta"
        old = destination(server, listener)["Instances"]["zeta"]
        mvm.terminate_microvm(microvmIdentifier=old)
        wait_state(mvm, old, "TERMINATED")
        assert a.ask(b"zeta-3")[0] == b"zeta:1:zeta"     # a new instance: the count restarts
        new = destination(server, listener)["Instances"]["zeta"]
        assert new != old and mvm.get_microvm(microvmIdentifier=new)["state"] in ("RUNNING", "SUSPENDED",
                                                                                  "SUSPENDING")
        assert destination(server, listener)["Metrics"]["InstancesReplaced"] >= 1
    finally:
        a.close()


def test_removing_the_listener_terminates_its_instances(server: LaminaServer, image: str, mvm) -> None:
    resp = api(server.endpoint, "POST", LISTENERS, {
        "Host": "127.0.0.1", "Destinations": [{"Type": "microvm", "Image": image,
                                               "Arguments": {"TenantIdExpression": "[0:4]", "Port": 7000}}]})
    assert resp.status == 201, resp.describe()
    doc = resp.json()
    a = Sender(doc["Port"])
    try:
        assert a.ask(b"gone-1")[0] == b"gone:1:gone"
    finally:
        a.close()
    mid = destination(server, doc)["Instances"]["gone"]
    assert api(server.endpoint, "DELETE", f"{LISTENERS}/{doc['Id']}").status == 204
    final = wait_state(mvm, mid, "TERMINATED", timeout=30)
    assert "UDP listener" in final["stateReason"]


def test_unknown_image_and_low_idle_are_refused(server: LaminaServer, image: str) -> None:
    resp = api(server.endpoint, "POST", LISTENERS, {"Destinations": [{"Type": "microvm", "Image": "no-such-image"}]})
    assert resp.status == 400 and "no-such-image" in resp.describe()
    resp = api(server.endpoint, "POST", LISTENERS, {"Destinations": [{"Type": "microvm", "Image": image,
                                                                      "Arguments": {"MaxIdle": 0}}]})
    assert resp.status == 400 and "MaxIdle" in resp.describe()



def test_http_delivery(server: LaminaServer, mvm, tmp_path) -> None:
    name = unique_name("udphttp")
    got = build(mvm, name, write_app(tmp_path / "app", {"app.py": HTTP_APP, "Dockerfile": DOCKERFILE}))
    assert got["state"] == "CREATED", got
    resp = api(server.endpoint, "POST", LISTENERS, {
        "Host": "127.0.0.1", "Destinations": [{"Type": "microvm", "Image": name, "Arguments": {
            "TenantIdExpression": "[0:4]", "Port": 8080, "Delivery": "http"}}]})
    assert resp.status == 201, resp.describe()
    doc = resp.json()
    a, b = Sender(doc["Port"]), Sender(doc["Port"])
    try:
        assert a.ask(b"acme-1")[0] == b"acme:1"
        assert b.ask(b"bolt-1")[0] == b"bolt:1"
        assert b.ask(b"acme-2")[0] == b"acme:2"      # same tenant, another sender: its own reply
        instances = destination(server, doc)["Instances"]
        assert set(instances) == {"acme", "bolt"} and instances["acme"] != instances["bolt"]
    finally:
        a.close()
        b.close()
        api(server.endpoint, "DELETE", f"{LISTENERS}/{doc['Id']}")


def test_restart_gives_each_tenant_one_new_instance(lamina_factory, tmp_path) -> None:
    """Instances do not survive a restart; the restored listener starts one new instance per tenant (the next
    clientToken generation), never two."""
    env = dict(LOW_IDLE_ENV)
    first = lamina_factory(data_dir=tmp_path / "data", env=env)
    api_client = client(first.endpoint, validate=False)
    name = unique_name("udprestart")
    assert build(api_client, name, write_app(tmp_path / "app", {"app.py": APP, "Dockerfile": DOCKERFILE}))[
        "state"] == "CREATED"
    resp = api(first.endpoint, "POST", LISTENERS, {
        "Name": "restart", "Host": "127.0.0.1", "Destinations": [{"Type": "microvm", "Name": "vms", "Image": name,
                                                                  "Arguments": {"TenantIdExpression": "[0:4]",
                                                                                "Port": 7000}}]})
    assert resp.status == 201, resp.describe()
    port = resp.json()["Port"]
    a = Sender(port)
    try:
        assert a.ask(b"acme-1")[0] == b"acme:1:acme"
        assert a.ask(b"acme-2")[0] == b"acme:2:acme"
    finally:
        a.close()
    old = destination(first, resp.json())["Instances"]["acme"]
    first.stop()

    second = lamina_factory(data_dir=tmp_path / "data", env=env)
    api_client = client(second.endpoint, validate=False)
    listener = api(second.endpoint, "GET", f"{LISTENERS}/restart").json()
    assert listener["Port"] == port and listener["State"] == "Listening"
    a, b = Sender(port), Sender(port)
    try:
        # Two senders at once: one start in flight for the tenant, both packets answered by the new instance.
        a.sock.sendto(b"acme-3", ("127.0.0.1", port))
        b.sock.sendto(b"acme-4", ("127.0.0.1", port))
        a.sock.settimeout(60)
        b.sock.settimeout(60)
        answers = sorted([a.sock.recvfrom(100)[0], b.sock.recvfrom(100)[0]])
        assert answers == [b"acme:1:acme", b"acme:2:acme"]   # a new instance: the count restarted
    finally:
        a.close()
        b.close()
    new = destination(second, listener)["Instances"]["acme"]
    assert new != old
    assert api_client.get_microvm(microvmIdentifier=old)["state"] == "TERMINATED"
    alive = [i for i in api_client.list_microvms(imageIdentifier=name)["items"] if i["state"] != "TERMINATED"]
    assert [i["microvmId"] for i in alive] == [new]


def test_cli_creates_a_microvm_destination(server: LaminaServer, image: str, mvm) -> None:
    def lamina(*args: str) -> str:
        done = run_lamina(server.endpoint, *args, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    name = unique_name("cli")
    lamina("udp", "listener", "create", "--name", name, "--host", "127.0.0.1", "--destination", f"microvm:{image}",
           "--tenant-expression", "[0:4]", "--tenant-formatter", "ascii", "--instance-port", "7000",
           "--max-idle", "60", "--no-auto-resume")
    try:
        doc = api(server.endpoint, "GET", f"{LISTENERS}/{name}").json()
        assert doc["Destinations"][0]["Arguments"] == {
            "Port": 7000, "MaxDuration": 28800, "AutoResume": False, "Delivery": "udp", "MaxIdle": 60,
            "MaxSuspended": 28800, "TenantIdExpression": "[0:4]", "TenantIdFormatter": "ascii"}
        a = Sender(doc["Port"])
        try:
            assert a.ask(b"clix-1")[0] == b"clix:1:clix"
        finally:
            a.close()
        mid = destination(server, doc)["Instances"]["clix"]
        assert mvm.get_microvm(microvmIdentifier=mid)["idlePolicy"]["autoResumeEnabled"] is False
        shown = lamina("udp", "listener", "get", name)
        assert f"microvm:{image}" in shown and f"tenant clix: {mid}" in shown
    finally:
        lamina("udp", "listener", "rm", name)
