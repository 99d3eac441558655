"""The UDP gateway through a real `lamina serve`: listeners created over the API and the CLI, batches to
functions, replies to each sender, tenants, errors, client restrictions, restarts and removal.

Every packet goes to and from 127.0.0.1 only.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from helpers import create_function, raw_request, run_lamina, unique_name

pytestmark = pytest.mark.timeout(180)

LISTENERS = "/lamina/v1/udp/listeners"

# Replies to every message with b"echo:" + its data, and says which invocation it was in.
ECHO = '''
import base64, os

def handler(event, context):
    replies = []
    for m in event["Messages"]:
        data = base64.b64decode(m["Data"])
        if data == b"boom":
            raise RuntimeError("boom requested")
        replies.append({"Tag": m["Tag"], "Data": base64.b64encode(b"echo:" + data).decode()})
    return {"Replies": replies}
'''

# Each reply carries the invocation's tenant and every packet of the invocation: "tenant|d1,d2,...".
TENANT = '''
def handler(event, context):
    datas = [m["Data"] for m in event["Messages"]]
    body = context.tenant_id + "|" + ",".join(datas)
    return {"Replies": [{"Tag": m["Tag"], "Data": body} for m in event["Messages"]]}
'''


def api(endpoint: str, method: str, path: str, body: object = None):
    data = json.dumps(body).encode() if body is not None else b""
    return raw_request(endpoint, method, path, data, {"content-type": "application/json"}, sign=False)


def create_listener(endpoint: str, body: dict) -> dict:
    resp = api(endpoint, "POST", LISTENERS, body)
    assert resp.status == 201, resp.describe()
    return resp.json()


def get_listener(endpoint: str, ref: str) -> dict:
    resp = api(endpoint, "GET", f"{LISTENERS}/{ref}")
    assert resp.status == 200, resp.describe()
    return resp.json()


@contextmanager
def udp_socket(host: str = "127.0.0.1") -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    try:
        yield sock
    finally:
        sock.close()


def receive(sock: socket.socket, count: int, timeout: float = 15.0) -> list[tuple[bytes, tuple]]:
    """Up to `count` datagrams, waiting at most `timeout` seconds in all."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            got.append(sock.recvfrom(65535))
        except TimeoutError:
            break
    return got


def quiet(sock: socket.socket, seconds: float = 0.5) -> bool:
    """True if nothing arrives for `seconds`."""
    sock.settimeout(seconds)
    try:
        sock.recvfrom(65535)
    except TimeoutError:
        return True
    return False


def metrics(endpoint: str, ref: str) -> tuple[dict, dict]:
    doc = get_listener(endpoint, ref)
    return doc["Metrics"], doc["Destinations"][0]["Metrics"]


def wait_for(check, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


@pytest.fixture
def cleanup(endpoint: str) -> Iterator[list[str]]:
    ids: list[str] = []
    yield ids
    for ref in ids:
        api(endpoint, "DELETE", f"{LISTENERS}/{ref}")


def test_echo_batches_reply_to_each_sender(endpoint, functions, cleanup):
    fn = functions({"app.py": ECHO}, prefix="udp-echo")
    listener = create_listener(endpoint, {"Destinations": [
        {"Function": fn, "Batching": {"Count": 5, "TimeoutInSeconds": 0.1}}]})
    cleanup.append(listener["Id"])
    port = listener["Port"]
    assert listener["State"] == "Listening" and port > 0 and listener["Host"] == "127.0.0.1"
    with udp_socket() as a, udp_socket() as b, udp_socket() as c:
        clients = {"a": a, "b": b, "c": c}
        for i in range(4):
            for label, sock in clients.items():
                sock.sendto(f"{label}{i}".encode(), ("127.0.0.1", port))
        for label, sock in clients.items():
            got = receive(sock, 4)
            assert sorted(data for data, _ in got) == [f"echo:{label}{i}".encode() for i in range(4)]
            # Replies come from the listener's own address and port.
            assert {src for _, src in got} == {("127.0.0.1", port)}
            assert quiet(sock, 0.2)
    lm, dm = metrics(endpoint, listener["Id"])
    assert (lm["PacketsIn"], lm["PacketsOut"], dm["Packets"], dm["Replies"]) == (12, 12, 12, 12)
    # 12 packets with Count 5: at least 3 invocations, and fewer than one per packet.
    assert 3 <= dm["Batches"] < 12 and dm["Errors"] == 0


def test_per_tenant_function_sees_only_its_tenants_packets(endpoint, lambda_client, cleanup):
    name = unique_name("udp-tenant")
    create_function(lambda_client, name, {"app.py": TENANT}, TenancyConfig={"TenantIsolationMode": "PER_TENANT"})
    try:
        listener = create_listener(endpoint, {"Destinations": [
            {"Function": name, "Formatter": "utf8", "Batching": {"TimeoutInSeconds": 0.2},
             "Arguments": {"TenantIdExpression": "[0:4]", "TenantIdFormatter": "ascii"}}]})
        cleanup.append(listener["Id"])
        sent = [f"{t}-{i}" for i in range(3) for t in ("blue", "gren", "pink")]
        with udp_socket() as sock:
            for data in sent:
                sock.sendto(data.encode(), ("127.0.0.1", listener["Port"]))
            sock.sendto(b"xy", ("127.0.0.1", listener["Port"]))     # too short for [0:4]: no tenant, dropped
            got = receive(sock, len(sent))
        assert len(got) == len(sent)
        for data, _ in got:
            tenant, _, batch = data.decode().partition("|")
            # Every packet of the invocation belongs to the tenant the invocation ran for.
            assert batch and all(d.startswith(tenant + "-") for d in batch.split(",")), data
        assert {d.decode().partition("|")[0] for d, _ in got} == {"blue", "gren", "pink"}
        _, dm = metrics(endpoint, listener["Id"])
        assert dm["DroppedTenant"] == 1 and dm["Errors"] == 0
    finally:
        lambda_client.delete_function(FunctionName=name)


def test_function_error_is_counted_and_the_gateway_keeps_going(endpoint, functions, cleanup, assert_serving):
    fn = functions({"app.py": ECHO}, prefix="udp-err")
    listener = create_listener(endpoint, {"Destinations": [{"Function": fn}]})
    cleanup.append(listener["Id"])
    with udp_socket() as sock:
        sock.sendto(b"boom", ("127.0.0.1", listener["Port"]))
        assert wait_for(lambda: metrics(endpoint, listener["Id"])[1]["Errors"] == 1)
        assert quiet(sock, 0.2)
        sock.sendto(b"fine", ("127.0.0.1", listener["Port"]))
        assert [d for d, _ in receive(sock, 1)] == [b"echo:fine"]
    # A listener whose function does not exist: errors counted, nothing else happens.
    ghost = create_listener(endpoint, {"Destinations": [{"Function": unique_name("missing")}]})
    cleanup.append(ghost["Id"])
    with udp_socket() as sock:
        sock.sendto(b"anyone?", ("127.0.0.1", ghost["Port"]))
        assert wait_for(lambda: metrics(endpoint, ghost["Id"])[1]["Errors"] == 1)
        assert quiet(sock, 0.2)
    assert_serving()


def test_client_outside_the_allow_list_gets_nothing(endpoint, functions, cleanup):
    fn = functions({"app.py": ECHO}, prefix="udp-acl")
    listener = create_listener(endpoint, {"ClientRestrictions": {"Networks": ["10.0.0.0/8", "2001:db8::/32"]},
                                          "Destinations": [{"Function": fn}]})
    cleanup.append(listener["Id"])
    with udp_socket() as sock:
        sock.sendto(b"let me in", ("127.0.0.1", listener["Port"]))
        assert quiet(sock, 0.5)
    lm, dm = metrics(endpoint, listener["Id"])
    assert (lm["PacketsIn"], lm["DroppedRestricted"], dm["Packets"], dm["Batches"]) == (1, 1, 0, 0)


def test_api_errors(endpoint, cleanup):
    resp = api(endpoint, "POST", LISTENERS, {"Destinations": [{"Function": "f", "Batching": {"Count": 0}}]})
    assert resp.status == 400 and resp.error_type == "ValidationException"
    assert "Destinations[0].Batching.Count" in resp.json()["message"]
    resp = api(endpoint, "POST", LISTENERS, {"Destinations": [{"Function": "f",
                                                                "Arguments": {"TenantIdExpression": "[1:"}}]})
    assert resp.status == 400 and "TenantIdExpression" in resp.json()["message"]
    assert "column" in resp.json()["message"]
    resp = api(endpoint, "GET", f"{LISTENERS}/udp-nope")
    assert resp.status == 404 and resp.error_type == "ResourceNotFoundException"
    first = create_listener(endpoint, {"Destinations": [{"Type": "log"}]})
    cleanup.append(first["Id"])
    resp = api(endpoint, "POST", LISTENERS, {"Port": first["Port"], "Destinations": [{"Type": "log"}]})
    assert resp.status == 409 and resp.error_type == "ResourceConflictException"
    assert "already in use" in resp.json()["message"]


def test_cli_create_ls_get_rm_frees_the_port(endpoint, functions):
    fn = functions({"app.py": ECHO}, prefix="udp-cli")
    name = unique_name("cli")
    proc = run_lamina(endpoint, "udp", "listener", "create", "--name", name, "--destination", f"function:{fn}",
                       "--batch-count", "10", "--batch-timeout", "0.05", "--allow", "127.0.0.0/8")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert name in proc.stdout and f"function:{fn}" in proc.stdout
    port = get_listener(endpoint, name)["Port"]
    with udp_socket() as sock:
        sock.sendto(b"via cli", ("127.0.0.1", port))
        assert [d for d, _ in receive(sock, 1)] == [b"echo:via cli"]
    proc = run_lamina(endpoint, "udp", "listener", "ls")
    assert proc.returncode == 0, proc.stderr
    row = next(line for line in proc.stdout.splitlines() if name in line)
    assert f"127.0.0.1:{port}" in row and "Listening" in row and f"function:{fn}" in row
    # Piped without COLUMNS (rich's default is 80): ids and endpoints must still come out whole, on one row.
    proc = run_lamina(endpoint, "udp", "listener", "ls", columns=None)
    listener_id = get_listener(endpoint, name)["Id"]
    row = next(line for line in proc.stdout.splitlines() if name in line)
    assert listener_id in row and f"127.0.0.1:{port}" in row and f"function:{fn}" in row, proc.stdout
    proc = run_lamina(endpoint, "udp", "listener", "get", name)
    assert proc.returncode == 0 and "PacketsIn=1" in proc.stdout and "Replies=1" in proc.stdout, proc.stdout
    proc = run_lamina(endpoint, "udp", "listener", "create", "--destination", "queue:x")
    assert proc.returncode != 0 and "function:NAME" in proc.stderr
    proc = run_lamina(endpoint, "udp", "listener", "create", "--destination", "log", "--port", str(port))
    assert proc.returncode == 1 and "already in use" in proc.stderr
    proc = run_lamina(endpoint, "udp", "listener", "rm", name)
    assert proc.returncode == 0, proc.stderr
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", port))          # the port is ours again
    assert api(endpoint, "GET", f"{LISTENERS}/{name}").status == 404
    proc = run_lamina(endpoint, "udp", "listener", "rm", name)
    assert proc.returncode == 1 and "not found" in proc.stderr


def test_cli_warns_about_function_destinations_that_would_always_fail(endpoint, functions):
    # Accepted (the function may be deployed later), but a typo must not show up only as an error count.
    fn = functions({"app.py": ECHO}, prefix="udp-warn")
    name = unique_name("warn")
    proc = run_lamina(endpoint, "udp", "listener", "create", "--name", name, "--destination", f"function:{fn}-typo",
                       "--destination", f"function:{fn}", "--destination", f"function:{fn}:nope")
    try:
        assert proc.returncode == 0, proc.stderr
        assert f"function {fn}-typo does not exist" in proc.stderr, proc.stderr
        assert f"function {fn} has no version or alias nope" in proc.stderr, proc.stderr
        assert f"function {fn} does not" not in proc.stderr, proc.stderr
    finally:
        run_lamina(endpoint, "udp", "listener", "rm", name)
    # Tenant ids for a function without tenancy, and none for a PER_TENANT one: every invoke would fail.
    tenanted = functions({"app.py": ECHO}, prefix="udp-warn-pt", TenancyConfig={"TenantIsolationMode": "PER_TENANT"})
    for destination, tenant_args, warning in (
            (fn, ["--tenant-expression", "[0:2]"], f"function {fn} is not PER_TENANT"),
            (tenanted, [], f"function {tenanted} is PER_TENANT and needs a tenant id")):
        proc = run_lamina(endpoint, "udp", "listener", "create", "--name", name, "--destination",
                           f"function:{destination}", *tenant_args)
        try:
            assert proc.returncode == 0 and warning in proc.stderr, proc.stderr
        finally:
            run_lamina(endpoint, "udp", "listener", "rm", name)
    proc = run_lamina(endpoint, "udp", "listener", "create", "--name", name, "--destination", f"function:{tenanted}",
                       "--tenant-id", "t1")
    run_lamina(endpoint, "udp", "listener", "rm", name)
    assert proc.returncode == 0 and "Warning" not in proc.stderr, proc.stderr


def test_listener_survives_a_restart(lamina_factory, tmp_path: Path):
    data = tmp_path / "udp-data"
    server = lamina_factory(data_dir=data)
    create_function(server.client(), "udp-persist", {"app.py": ECHO})
    listener = create_listener(server.endpoint, {"Name": "keep", "Destinations": [
        {"Function": "udp-persist", "Formatter": "base64", "Batching": {"Count": 2, "TimeoutInSeconds": 0.05}}]})
    assert server.stop() == 0
    again = lamina_factory(data_dir=data)
    doc = get_listener(again.endpoint, "keep")
    assert (doc["Id"], doc["Port"], doc["State"]) == (listener["Id"], listener["Port"], "Listening")
    assert doc["Destinations"][0]["Batching"] == {"Count": 2, "TimeoutInSeconds": 0.05}
    assert f"udp listeners: keep 127.0.0.1:{doc['Port']}" in again.output()   # the start-up banner
    with udp_socket() as sock:
        sock.sendto(b"after restart", ("127.0.0.1", doc["Port"]))
        assert [d for d, _ in receive(sock, 1, timeout=30)] == [b"echo:after restart"]
    assert again.stop() == 0
    # Its port taken by someone else while the server was down: restored as Failed saying why, and bound
    # again by itself once the port is free (nobody has to remove and re-create it).
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
        squatter.bind(("127.0.0.1", doc["Port"]))
        third = lamina_factory(data_dir=data)
        failed = get_listener(third.endpoint, "keep")
        assert failed["State"] == "Failed", failed
        assert "already in use" in failed["StateReason"] and "retrying" in failed["StateReason"], failed
    assert wait_for(lambda: get_listener(third.endpoint, "keep")["State"] == "Listening", timeout=60)
    with udp_socket() as sock:
        sock.sendto(b"rebound", ("127.0.0.1", doc["Port"]))
        assert [d for d, _ in receive(sock, 1, timeout=30)] == [b"echo:rebound"]
    assert third.stop() == 0


RECORDER = '''
import base64

def handler(event, context):
    for m in event["Messages"]:
        print("recorded", base64.b64decode(m["Data"]).decode())
    return {"Replies": [{"Tag": m["Tag"], "Data": "aWdub3JlZA=="} for m in event["Messages"]]}
'''


def test_sinks_async_function_and_log(endpoint, lamina_server, functions, cleanup):
    fn = functions({"app.py": RECORDER}, prefix="udp-sink")
    mark = unique_name("mark")
    listener = create_listener(endpoint, {"Name": mark, "Destinations": [
        {"Type": "function-async", "Function": fn, "Batching": {"TimeoutInSeconds": 0.05}},
        {"Type": "log", "Formatter": "utf8"}]})
    cleanup.append(listener["Id"])
    with udp_socket() as sock:
        sock.sendto(f"{mark}-1".encode(), ("127.0.0.1", listener["Port"]))
        sock.sendto(f"{mark}-2".encode(), ("127.0.0.1", listener["Port"]))
        # Event invocations: the function's replies are not sent.
        assert quiet(sock, 0.5)

    def recorded() -> bool:
        resp = api(endpoint, "GET", f"/lamina/v1/functions/{fn}/logs")
        text = resp.body.decode()
        return f"recorded {mark}-1" in text and f"recorded {mark}-2" in text

    assert wait_for(recorded), "the async function did not get both packets"
    doc = get_listener(endpoint, mark)
    am, lm = (d["Metrics"] for d in doc["Destinations"])
    assert am["Invocations"] >= 1 and am["Replies"] == 0 and am["Errors"] == 0
    assert lm["Packets"] == 2 and doc["Metrics"]["PacketsOut"] == 0
    assert wait_for(lambda: f"utf8:{mark}-2" in lamina_server.output())
    assert f"udp {mark}/{mark}-2 127.0.0.1:" in lamina_server.output()
