"""No leaks: after many cold starts and teardowns under the linux sandbox, no cgroup, mount, namespace
or process is left (LAMINA_LEAK_STARTS, default 10,000; of VPC functions LAMINA_VPC_LEAK_STARTS, default 400 in the
suite — set it to 10000 for the issue's full count). For VPC functions, the network too: the pair's namespace goes
when its functions do, and at stop nothing of the server's is left (named namespaces, host links, nft table, state).

A dedicated server; THREADS client threads, each with a function of its own, loop {invoke: a fresh
environment forked from the zygote; DELETE /lamina/v1/functions/NAME/environments: tear it down}.
Every other invoke also leaves a stray process behind in its environment, which the teardown has to
kill. Then the functions are deleted (their zygotes stop) and everything is compared with a baseline
taken before the first function existed; last, the server is stopped and its cgroup subtree must go.
Every start must succeed, however long they take (bench/churn.py measures how fast they go).
"""

from __future__ import annotations

import contextlib
import glob
import http.client
import json
import os
import re
import subprocess
import threading
import time

import boto3
import pytest

from helpers import (
    all_pids,
    create_function,
    descendants,
    describe_pids,
    environments,
    health,
    processes_referencing,
    unique_name,
)

STARTS = int(os.environ.get("LAMINA_LEAK_STARTS", "10000"))
VPC_STARTS = int(os.environ.get("LAMINA_VPC_LEAK_STARTS", "400"))
THREADS = 8
NS_KINDS = ("mnt", "pid", "net", "ipc", "uts", "user", "cgroup")
NS_LINK = re.compile(r"^(mnt|pid|net|ipc|uts|user|cgroup|time):\[(\d+)\]$")
SETTLE_S = 30.0

# CALLS starts at 0 in every environment (each is a fork of the zygote, which never runs the
# handler), so calls == 1 proves the invoke got a new environment.
APP = '''
import os, time

CALLS = 0


def handler(event, context):
    global CALLS
    CALLS += 1
    with open("/tmp/scratch", "w") as fh:  # the environment's private tmpfs
        fh.write("x" * 4096)
    if event.get("stray") and os.fork() == 0:  # a process left behind: the teardown must kill it
        try:
            os.setsid()
            os.closerange(3, 4096)
            time.sleep(600)
        finally:
            os._exit(0)
    return {"calls": CALLS}
'''


# --------------------------------------------------------------------------------------------------
# What the host holds


def _read(path: str) -> str:
    try:
        with open(path, errors="replace") as fh:
            return fh.read()
    except OSError:
        return ""


def cgroup_roots(server_pid: int) -> list[str]:
    """The server's subtree in every hierarchy: /sys/fs/cgroup/<controller or unified>/lamina/<pid> (or v2)."""
    return sorted(glob.glob(f"/sys/fs/cgroup/*/lamina/{server_pid}") + glob.glob(f"/sys/fs/cgroup/lamina/{server_pid}"))


def cgroup_dirs(server_pid: int) -> set[str]:
    """Every directory at or below the server's subtrees."""
    found: set[str] = set()
    for root in cgroup_roots(server_pid):
        for dirpath, _dirnames, _files in os.walk(root):
            found.add(dirpath)
    return found


def namespaces_in_use() -> dict[str, set[int]]:
    """{"net:[4026532..]": {pids holding it}} over every process's /proc/<pid>/ns/* and namespace fds."""
    held: dict[str, set[int]] = {}
    for pid in all_pids():
        for kind in NS_KINDS:
            with contextlib.suppress(OSError):
                held.setdefault(os.readlink(f"/proc/{pid}/ns/{kind}"), set()).add(pid)
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if NS_LINK.match(target):
                        held.setdefault(target, set()).add(pid)
    return held


def mount_count(server_pid: int) -> int:
    """Mounts in the host's mount namespace, less the named network namespaces (/run/netns) that are not this
    server's per-function ones: other servers on the host bind theirs there, and this server's outbound namespace
    (`lamina-<pid>-out`) lives as long as the server (its removal at stop is net/plumbing's to check)."""
    ours = f"/run/netns/lamina-{server_pid}-"
    count = 0
    for line in _read("/proc/self/mountinfo").splitlines():
        mountpoint = line.split()[4]
        if mountpoint.startswith("/run/netns/") and (not mountpoint.startswith(ours) or mountpoint.endswith("-out")):
            continue
        count += 1
    return count


def lamina_instance(pid: int) -> int | None:
    """The server pid in the `/lamina/<pid>/` cgroup path of a sandboxed process, if any."""
    m = re.search(r"/lamina/(\d+)(/|$)", _read(f"/proc/{pid}/cgroup"), re.MULTILINE)
    return int(m.group(1)) if m else None


def ours(server_pid: int) -> set[int]:
    """Lamina's own processes: the server, its descendants, and whatever is in its cgroup subtree (a process that
    left the tree, e.g. reparented after a double fork, is still in its environment's cgroup)."""
    found = {server_pid, *descendants(server_pid)}
    found.update(pid for pid in all_pids() if lamina_instance(pid) == server_pid)
    return found


def leaked_namespaces(baseline: dict[str, set[int]], server_pid: int) -> dict[str, list[int]]:
    """Namespaces that were not in use at the baseline and are now held by one of this server's processes.
    Namespaces other programs on the host made meanwhile (another test session, a container) are not Lamina's."""
    now = namespaces_in_use()
    new = {ns: pids for ns, pids in now.items() if ns not in baseline}
    if not new:
        return {}
    mine = ours(server_pid)
    leaked = {}
    for ns, pids in new.items():
        held = sorted(p for p in pids if p in mine)
        if held:
            leaked[ns] = held
    return leaked


# --------------------------------------------------------------------------------------------------
# The load


class Worker(threading.Thread):
    """Loops {invoke (a new environment); DELETE environments (tear it down)} on one function.

    A failed invoke is recorded and the loop goes on (the leak checks still run; the test reports
    the failures after them); it gives up after MAX_FAILURES.
    """

    MAX_FAILURES = 20

    def __init__(self, port: int, name: str, count: int) -> None:
        super().__init__(name=f"leak-{name}", daemon=True)
        self.port, self.function, self.count = port, name, count
        self.done = 0
        self.failures: list[str] = []

    def _request(self, conn: http.client.HTTPConnection, method: str, path: str, body: bytes = b"") -> tuple:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
        resp = conn.getresponse()
        return resp.status, resp.getheader("X-Amz-Function-Error"), resp.read()

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        invoke = f"/2015-03-31/functions/{self.function}/invocations"
        recycle = f"/lamina/v1/functions/{self.function}/environments"
        try:
            for i in range(self.count):
                if len(self.failures) >= self.MAX_FAILURES:
                    return
                status, err, body = self._request(conn, "POST", invoke, json.dumps({"stray": i % 2 == 0}).encode())
                ok = status == 200 and not err and json.loads(body).get("calls") == 1
                if not ok:
                    self.failures.append(f"invoke {i}: HTTP {status} X-Amz-Function-Error={err} body={body[:300]!r}")
                status, _, body = self._request(conn, "DELETE", recycle)
                if status != 200 or (ok and json.loads(body).get("stopped") != 1):
                    self.failures.append(f"DELETE environments after invoke {i}: HTTP {status} body={body[:300]!r}")
                self.done += 1
        except Exception as exc:  # reported by the test
            self.failures.append(f"after {self.done} starts: {type(exc).__name__}: {exc}")
        finally:
            conn.close()



def _wait_for(check, timeout: float):
    """Poll check() until it returns a falsy value or time runs out; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if not value or time.monotonic() >= deadline:
            return value
        time.sleep(0.2)


# --------------------------------------------------------------------------------------------------


def _network_of(server_pid: int, links: list[str]) -> dict[str, list[str]]:
    """What of the server's networking the host holds: named namespaces, which of `links` exist (host links: VPC
    segments and pair uplinks, the outbound link), its nft table, its state file."""
    nft = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    return {"netns": sorted(glob.glob(f"/run/netns/lamina-{server_pid}-*")),
            "links": sorted(n for n in links if os.path.exists(f"/sys/class/net/{n}")),
            "tables": [t for t in nft.split() if t == f"lamina_{server_pid}"],
            "state": glob.glob(f"/run/lamina-net/{server_pid}.json")}


def _links_of(server_pid: int, endpoint: str) -> list[str]:
    """The host links the server lists in its state (net/plumbing.py), and its pairs' uplinks (lsp<eni hex>)."""
    enis = _ec2(endpoint).describe_network_interfaces()["NetworkInterfaces"]
    uplinks = [f"lsp{e['NetworkInterfaceId'].split('-', 1)[1][:8]}" for e in enis]
    with contextlib.suppress(OSError, ValueError), open(f"/run/lamina-net/{server_pid}.json") as fh:
        return [*json.load(fh)["links"], *uplinks]
    return uplinks


def _ec2(endpoint: str):
    return boto3.client("ec2", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test",
                        aws_secret_access_key="test")


def _vpc_config(endpoint: str) -> dict:
    ec2 = _ec2(endpoint)
    vpc = ec2.create_vpc(CidrBlock="10.215.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.215.1.0/24")["Subnet"]["SubnetId"]
    sg = ec2.create_security_group(VpcId=vpc, GroupName="leak", Description="leak")["GroupId"]
    return {"SubnetIds": [subnet], "SecurityGroupIds": [sg]}


@pytest.mark.timeout(1800)  # a hang guard: 10,000 starts take 400 s or so on a 2-core VM
@pytest.mark.parametrize("vpc", [False, True], ids=["default-network", "vpc"])
def test_no_leaks_after_cold_starts_and_teardowns(lamina_factory, vpc: bool):
    server = lamina_factory()
    if health(server.endpoint).get("sandbox") != "linux":
        pytest.skip("needs root: the linux sandbox backend")
    client = server.client()
    starts = VPC_STARTS if vpc else STARTS
    vpc_config = _vpc_config(server.endpoint) if vpc else None

    # The baseline, before any function (so without zygotes) exists.
    base_cgroups = cgroup_dirs(server.pid)
    base_procs = set(descendants(server.pid))
    base_ns = namespaces_in_use()
    base_mounts = mount_count(server.pid)
    assert cgroup_roots(server.pid), "the linux backend made no cgroup subtree for the server"

    links = _links_of(server.pid, server.endpoint)
    base_net = _network_of(server.pid, links)

    names = [unique_name("leak") for _ in range(THREADS)]
    for name in names:
        create_function(client, name, {"app.py": APP}, Timeout=30, **({"VpcConfig": vpc_config} if vpc else {}))
    if vpc:
        assert len(_network_of(server.pid, links)["netns"]) == len(base_net["netns"]) + 1, "one pair for them all"
        links = _links_of(server.pid, server.endpoint)
    per_thread = [starts // THREADS + (1 if i < starts % THREADS else 0) for i in range(THREADS)]
    workers = [Worker(server.port, name, n) for name, n in zip(names, per_thread, strict=True)]

    for w in workers:
        w.start()
    for w in workers:
        w.join()
    done = sum(w.done for w in workers)
    failures = [f"{w.function}: {f}" for w in workers for f in w.failures]

    for name in names:
        client.delete_function(FunctionName=name)

    # Everything the starts made goes away: environments, zygotes, their cgroups and processes.
    left_envs = _wait_for(lambda: environments(server.endpoint), SETTLE_S)
    assert left_envs == 0, f"{left_envs} environments still counted {SETTLE_S:.0f} s after the functions were deleted"
    extra_cgroups = _wait_for(lambda: sorted(cgroup_dirs(server.pid) - base_cgroups), SETTLE_S)
    extra_procs = _wait_for(lambda: sorted(set(descendants(server.pid)) - base_procs), SETTLE_S)
    leaked_ns = _wait_for(lambda: leaked_namespaces(base_ns, server.pid), SETTLE_S)
    mounts = mount_count(server.pid)

    assert not extra_cgroups, f"{len(extra_cgroups)} cgroups left, e.g. {extra_cgroups[:10]}"
    assert not extra_procs, f"{len(extra_procs)} processes left under the server: {describe_pids(extra_procs[:20])}"
    assert not leaked_ns, f"{len(leaked_ns)} namespaces left, e.g. " + "; ".join(
        f"{ns} held by {describe_pids(pids[:3])}" for ns, pids in list(leaked_ns.items())[:10]
    )
    assert mounts == base_mounts, f"mount count {base_mounts} -> {mounts}"
    # The pair went with its last function (its namespace, its uplink); the server's own network stays.
    net = _wait_for(lambda: _network_of(server.pid, links) != base_net and _network_of(server.pid, links), SETTLE_S)
    assert not net, f"network left after the functions were deleted: {net}, was {base_net}"

    # Stopping the server removes its whole cgroup subtree and leaves nothing running.
    pid = server.pid
    assert server.stop() == 0, server.output()[-3000:]
    assert not cgroup_roots(pid), f"cgroup subtree left after the server stopped: {cgroup_roots(pid)}"
    left = processes_referencing(server.data_dir)
    assert not left, f"processes left after the server stopped: {describe_pids(left)}"
    net_left = _network_of(pid, links)
    assert not any(net_left.values()), f"network left after the server stopped: {net_left}"

    # Last, so that a failed invoke does not hide the leak checks above.
    assert not failures, f"{len(failures)} of {done} cold starts failed:\n" + "\n".join(failures[:20])
    assert done == starts, f"only {done} of {starts} cold starts were made"
