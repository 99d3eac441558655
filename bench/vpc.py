#!/usr/bin/env python3
"""VPC networking: what VpcConfig costs a cold start, how long a pair's interface takes to set up, and how many
subnet addresses concurrent environments use (linux sandbox, root).

    .venv/bin/python bench/vpc.py [--n 100] [--setups 10] [--concurrency 1,50,200] [--json]

Starts its own `lamina serve` (per-request dispatch, so N concurrent invokes make N environments) and, in the same
run:

  cold      the same function deployed twice, without and with VpcConfig; N rounds of: DELETE both functions'
            environments, a pause (the pools refill off the measured path), one timed invoke of each (order
            alternating). p50/p90 of each and the difference (target: VPC adds <= 0.5 ms); also the median of the
            per-round differences, less noisy on a shared host. Also the CPU time (user + system) of the server's
            namespace thread ("lamina-net": it re-wires a pool's namespace for every cold start, on the server's
            process) over those rounds, per cold start.
  setup     `--setups` CreateFunction calls, each with a new security group (so a new pair: namespace, uplink into
            the subnet's bridge, address, nft rules), timed from CreateFunction's answer (Pending) to GetFunction
            showing Active, alternated with as many without VpcConfig: Active also waits for the function's zygote
            (every function's activation), so the pair's part is the difference of the p50s (target: <= 100 ms).
  addresses a host the script makes on the subnet (a network namespace on the subnet's bridge, a TCP server that
            answers with the peer's address); C concurrent invokes of the VPC function (each connects, then sleeps so
            all C environments exist at once); the number of distinct source addresses it saw (target: 1 each
            time) and DescribeNetworkInterfaces' count for the pair (1).

Prints figures only: exit status 0 whether targets are met or not, 1 if the server or an invoke fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import io
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
import zipfile
from collections.abc import Iterator
from typing import Any

from _common import run_guarded, server_failures
from coldstart import _invoke_async, check_result, raise_fd_limit, recycle, request, server_settings
from invoke import ROLE, BenchError, boto3_client, lamina_server, log, read_log

HOST = "127.0.0.1"
PLAIN, VPC = "bench-novpc", "bench-vpc"
SERVER_ADDRESS = "10.213.1.10"
ADD_TARGET_MS = 0.5
SETUP_TARGET_MS = 100.0

HANDLER_SRC = """\
import socket
import time

CALLS = 0


def handler(event, context):
    global CALLS
    CALLS += 1
    out = {"calls": CALLS}
    if event.get("host"):
        with socket.create_connection((event["host"], event["port"]), timeout=5) as s:
            out["seen_as"] = s.recv(64).decode()
    if event.get("sleep"):
        time.sleep(event["sleep"])
    return out
"""

# Runs in the subnet host's namespace: answers each connection with the peer's address.
PEER_SERVER = """\
import socket, sys
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], 7000))
srv.listen(1024)
print("ready", flush=True)
while True:
    conn, peer = srv.accept()
    with conn:
        conn.sendall(peer[0].encode())
"""


def code_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("app.py", HANDLER_SRC)
    return buf.getvalue()


def ec2_client(port: int) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client("ec2", endpoint_url=f"http://{HOST}:{port}", region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test",
                        config=Config(retries={"total_max_attempts": 1}))


def wait_state(client: Any, name: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        cfg = client.get_function_configuration(FunctionName=name)
        if cfg["State"] != "Pending" and cfg.get("LastUpdateStatus") != "InProgress":
            return str(cfg["State"])
        if time.monotonic() > deadline:
            raise BenchError(f"{name} still Pending after {timeout:.0f} s")
        time.sleep(0.001)


def create(client: Any, name: str, vpc: dict | None, timeout_s: int = 30) -> None:
    kwargs: dict[str, Any] = {"VpcConfig": vpc} if vpc else {}
    client.create_function(FunctionName=name, Runtime="python3.11", Role=ROLE, Handler="app.handler",
                           Code={"ZipFile": code_zip()}, Timeout=timeout_s, MemorySize=128, **kwargs)
    state = wait_state(client, name)
    if state != "Active":
        raise BenchError(f"{name} is {state}, not Active")


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s)) - 1))]


def summary(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50_ms": round(pct(values, 50), 3), "p90_ms": round(pct(values, 90), 3),
            "mean_ms": round(statistics.fmean(values), 3)}


def net_thread_cpu_s(pid: int) -> float:
    """CPU time (user + system) of the server's namespace thread(s) (nsops: "lamina-net"), in seconds."""
    ticks = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            with open(f"/proc/{pid}/task/{task}/stat") as fh:
                stat = fh.read()
            if stat[stat.index("(") + 1:stat.rindex(")")].startswith("lamina-net"):
                fields = stat[stat.rindex(")") + 2:].split()
                ticks += int(fields[11]) + int(fields[12])   # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


def cold_starts(port: int, pid: int, n: int, pause_s: float) -> dict[str, Any]:
    conn = http.client.HTTPConnection(HOST, port, timeout=120)
    samples: dict[str, list[float]] = {PLAIN: [], VPC: []}
    try:
        for name in samples:
            check_result("first invoke", *request(conn, "POST", f"/2015-03-31/functions/{name}/invocations", b"{}"))
        time.sleep(pause_s)   # the pools refilled: what the thread does next is the rounds' re-wiring
        net_cpu = net_thread_cpu_s(pid)
        log(f"cold: {n} rounds of DELETE environments, {pause_s * 1000:.0f} ms pause, one timed invoke of each ...")
        for i in range(n):
            order = [PLAIN, VPC] if i % 2 == 0 else [VPC, PLAIN]
            for name in order:
                recycle(conn, name)
            time.sleep(pause_s)
            for name in order:
                t0 = time.perf_counter_ns()
                got = check_result(f"cold invoke {i} of {name}",
                                   *request(conn, "POST", f"/2015-03-31/functions/{name}/invocations", b"{}"))
                samples[name].append((time.perf_counter_ns() - t0) / 1e6)
                if got["calls"] != 1:
                    raise BenchError(f"cold invoke {i} of {name} ran in an environment that was not new")
        time.sleep(pause_s)
        net_cpu = net_thread_cpu_s(pid) - net_cpu
    finally:
        conn.close()
    plain, vpc = summary(samples[PLAIN]), summary(samples[VPC])
    added = round(vpc["p50_ms"] - plain["p50_ms"], 3)
    # Both functions of a round ran back to back under the same machine load: the median of the per-round
    # differences is far less noisy on a shared host than the difference of two p50s.
    paired = round(statistics.median(v - p for v, p in zip(samples[VPC], samples[PLAIN], strict=True)), 3)
    return {"no_vpc": plain, "vpc": vpc, "vpc_adds_p50_ms": added, "paired_median_ms": paired,
            "net_thread_cpu_ms_per_cold_start": round(net_cpu * 1000 / (2 * n), 2) if n else None,
            "target": f"VPC adds <= {ADD_TARGET_MS} ms to the cold start p50 — "
                      f"{'PASS' if added <= ADD_TARGET_MS else 'FAIL'}"}


def setups(client: Any, ec2: Any, net: dict[str, str], k: int) -> dict[str, Any]:
    """Pending -> Active includes what every function's activation does (unpack, start and init its zygote): the
    same CreateFunction without VpcConfig, alternated with the VPC ones, is the baseline; the pair's part is the
    difference of the p50s."""
    log(f"setup: {k} CreateFunction calls with a new security group (a new pair) each, {k} without VpcConfig ...")
    times: dict[str, list[float]] = {"vpc": [], "no_vpc": []}
    for i in range(k):
        for kind in ("vpc", "no_vpc"):
            extra: dict[str, Any] = {}
            if kind == "vpc":
                sg = ec2.create_security_group(VpcId=net["vpc"], GroupName=f"bench-{uuid.uuid4().hex[:8]}",
                                               Description="bench")["GroupId"]
                extra["VpcConfig"] = {"SubnetIds": [net["subnet"]], "SecurityGroupIds": [sg]}
            name = f"bench-setup-{kind}-{i}"
            client.create_function(FunctionName=name, Runtime="python3.11", Role=ROLE, Handler="app.handler",
                                   Code={"ZipFile": code_zip()}, MemorySize=128, **extra)
            t0 = time.perf_counter()
            state = wait_state(client, name)
            times[kind].append((time.perf_counter() - t0) * 1000)
            if state != "Active":
                raise BenchError(f"{name} is {state}, not Active")
            client.delete_function(FunctionName=name)
    out: dict[str, Any] = {kind: summary(v) for kind, v in times.items()}
    pair = round(out["vpc"]["p50_ms"] - out["no_vpc"]["p50_ms"], 1)
    out["pair_setup_p50_ms"] = pair
    out["target"] = f"pair setup (Pending -> Active, VPC minus no VPC) <= {SETUP_TARGET_MS:.0f} ms — " \
                    f"{'PASS' if pair <= SETUP_TARGET_MS else 'FAIL'}"
    return out


@contextlib.contextmanager
def subnet_host(subnet_id: str) -> Iterator[None]:
    """A host on the subnet's segment: a namespace with a veth on the subnet's bridge and the peer server."""
    bridge = "lsb" + subnet_id.split("-")[1][:8]
    ns, link = f"lbvpc{uuid.uuid4().hex[:8]}", f"lbv{uuid.uuid4().hex[:8]}"
    server = None

    def sh(*argv: str) -> None:
        proc = subprocess.run(argv, capture_output=True, text=True)
        if proc.returncode:
            raise BenchError(f"{' '.join(argv)}: {proc.stderr.strip()}")

    try:
        deadline = time.monotonic() + 10
        while subprocess.run(["ip", "link", "show", bridge], capture_output=True).returncode:
            if time.monotonic() > deadline:
                raise BenchError(f"the subnet's bridge {bridge} did not appear")
            time.sleep(0.05)
        sh("ip", "netns", "add", ns)
        sh("ip", "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "link", "set", link, "master", bridge, "up")
        sh("ip", "-n", ns, "addr", "add", f"{SERVER_ADDRESS}/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        server = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", PEER_SERVER, SERVER_ADDRESS],
                                  stdout=subprocess.PIPE, text=True)
        assert server.stdout is not None
        if server.stdout.readline().strip() != "ready":
            raise BenchError("the subnet host's server did not start")
        yield
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        subprocess.run(["ip", "link", "del", link], capture_output=True)


def addresses(port: int, ec2: Any, subnet_id: str, levels: list[int]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    path = f"/2015-03-31/functions/{VPC}/invocations"
    raise_fd_limit(max(levels) + 256)
    for c in levels:
        conn = http.client.HTTPConnection(HOST, port, timeout=60)
        try:
            recycle(conn, VPC)
        finally:
            conn.close()
        time.sleep(0.5)
        sleep_s = 2.0 + c / 50
        body = json.dumps({"host": SERVER_ADDRESS, "port": 7000, "sleep": sleep_s}).encode()
        log(f"addresses: {c} concurrent invokes of {VPC} (each connects to the subnet host, then sleeps "
            f"{sleep_s:g} s) ...")

        async def burst(count: int, payload: bytes, timeout: float) -> list:
            return await asyncio.gather(*(_invoke_async(port, path, payload, timeout) for _ in range(count)),
                                        return_exceptions=True)

        results = asyncio.run(burst(c, body, sleep_s + 120))
        seen: set[str] = set()
        new_envs = failed = 0
        for r in results:
            if isinstance(r, BaseException):
                failed += 1
                continue
            got = check_result("burst invoke", *r)
            seen.add(got["seen_as"])
            new_envs += got["calls"] == 1
        enis = ec2.describe_network_interfaces(Filters=[{"Name": "subnet-id", "Values": [subnet_id]}])
        out[str(c)] = {"environments": new_envs, "failed": failed, "source_addresses": sorted(seen),
                       "interfaces": len(enis["NetworkInterfaces"])}
    ok = all(len(v["source_addresses"]) == 1 and v["failed"] == 0 for v in out.values())
    out["target"] = f"1 subnet address at {', '.join(map(str, levels))} concurrent environments — " \
                    f"{'PASS' if ok else 'FAIL'}"
    return out


def measure(args: argparse.Namespace) -> dict[str, Any]:
    levels = [int(x) for x in args.concurrency.split(",") if x]
    budget = max([*levels, 100, int(os.environ.get("LAMINA_ACCOUNT_CONCURRENCY") or 0)])
    settings = {"LAMINA_DISPATCH_MODE": "per-request", "LAMINA_ACCOUNT_CONCURRENCY": str(budget + 10)}
    results: dict[str, Any] = {"server_settings": settings}
    with server_settings(settings), lamina_server(args.startup_timeout) as (proc, port, log_path), \
            server_failures(proc, lambda: read_log(log_path), BenchError):
        client, ec2 = boto3_client(port), ec2_client(port)
        vpc = ec2.create_vpc(CidrBlock="10.213.0.0/16")["Vpc"]["VpcId"]
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.213.1.0/24")["Subnet"]["SubnetId"]
        sg = ec2.create_security_group(VpcId=vpc, GroupName="bench-app", Description="bench")["GroupId"]
        net = {"vpc": vpc, "subnet": subnet, "sg": sg}
        log("deploying the two functions ...")
        create(client, PLAIN, None)
        create(client, VPC, {"SubnetIds": [subnet], "SecurityGroupIds": [sg]}, timeout_s=300)
        results["cold"] = cold_starts(port, proc.pid, args.n, args.pause_ms / 1000)
        results["setup"] = setups(client, ec2, net, args.setups)
        if levels:
            with subnet_host(subnet):
                results["addresses"] = addresses(port, ec2, subnet, levels)
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100, help="cold start rounds (each times both functions)")
    ap.add_argument("--pause-ms", type=float, default=100.0, help="pause between teardown and the timed invokes")
    ap.add_argument("--setups", type=int, default=10, help="pairs set up at CreateFunction")
    ap.add_argument("--concurrency", default="1,50,200", help="concurrent environments for the address count")
    ap.add_argument("--startup-timeout", type=float, default=60.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        log("bench/vpc.py needs root (the linux sandbox and network namespaces)")
        return 1
    got = run_guarded(lambda: measure(args), log, BenchError)
    if isinstance(got, int):
        return got
    if args.json:
        print(json.dumps(got, indent=2))
    else:
        c = got["cold"]
        print(f"cold start p50: no VPC {c['no_vpc']['p50_ms']:.2f} ms (p90 {c['no_vpc']['p90_ms']:.2f}), "
              f"VPC {c['vpc']['p50_ms']:.2f} ms (p90 {c['vpc']['p90_ms']:.2f}); "
              f"VPC adds {c['vpc_adds_p50_ms']:+.2f} ms (median of the per-round differences "
              f"{c['paired_median_ms']:+.2f} ms)")
        print(f"  target: {c['target']}")
        print(f"namespace thread CPU per cold start (re-wiring a pool's namespace): "
              f"{c['net_thread_cpu_ms_per_cold_start']} ms")
        s = got["setup"]
        print(f"Pending -> Active p50: with a new pair {s['vpc']['p50_ms']:.1f} ms, without VpcConfig "
              f"{s['no_vpc']['p50_ms']:.1f} ms; the pair's part {s['pair_setup_p50_ms']:+.1f} ms")
        print(f"  target: {s['target']}")
        if "addresses" in got:
            a = got["addresses"]
            for level, v in a.items():
                if level != "target":
                    print(f"{level:>4} concurrent: {v['environments']} new environments, {v['failed']} failed, "
                          f"source addresses {v['source_addresses']}, interfaces {v['interfaces']}")
            print(f"  target: {a['target']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
