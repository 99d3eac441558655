#!/usr/bin/env python3
"""UDP gateway to per-tenant MicroVMs: packets/s with --tenants tenants (one instance each), beside a bare
uvloop UDP server measured in the same run (part (b) of the UDP benchmarks; bench/udp.py is part (a)).

    sudo .venv/bin/python bench/udp_microvm.py [--tenants 100] [--duration 5] [--window 1024] [--json]

Needs root (MicroVM instances use the linux sandbox) and 2 CPUs. The servers' own threads run pinned
to CPU 0: the bare uvloop server, and `lamina serve` (the gateway: listener, tenant registry, sockets
into the instances); the load generator and the MicroVM instances' apps run on CPU 1. So the figure
is what the gateway does on one core.

The image: a stdlib Python UDP app on port 7000 in each instance (a blocking recvfrom/sendto loop) that
echoes each datagram, only counts it when byte 4 is "!" (one-way load), and answers "?" with its count.
The listener's microvm destination takes the tenant id from bytes [0:4] ("t000".."t099"), one instance
per tenant (started by the warm-up: one datagram per tenant, answered once its instance runs).

  one-way       one blocking socket sends 64-byte datagrams, the tenants in turn, as fast as it can for
                --duration s; the figure is datagrams that reached the instances' apps per second (the
                sum of their counts), beside the datagrams per second the bare uvloop server reads.
  request/reply closed loop, --window datagrams in flight (the tenants in turn), a new one sent for each
                reply: replies per second, beside the bare uvloop echo server's.

Target printed: one-way packets/s to per-tenant MicroVMs with 100 tenants (the gateway on one core)
>= 0.07x the bare server's in the same run (see bench/README.md). Only prints figures; exit status 1
only when the benchmark itself fails.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import missing_cpus, pin_tree, pinned, run_and_report, server_failures, tree_cpu_seconds
from invoke import BenchError, lamina_server, log, read_log, server_info
from udp import CLIENT_CPU, HOST, SERVER_CPU, api, baseline_server, client_run, closed_loop, listener_metrics

# The ">= 20,000 packets/s" as a ratio to this run's bare uvloop server, which read 280,951 datagrams/s
# where it was set (bench/README.md).
TARGET_ONE_WAY_RATIO = 0.07
PORT_IN_INSTANCE = 7000
BASE = "arn:aws:lambda:us-east-1:aws:microvm-image:al2023-1"
ROLE = "arn:aws:iam::000000000000:role/lamina"
MEMORY_MIB = 256   # 100 instances fit the default memory quota (65,536 MiB) with room to spare

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
udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
udp.bind(("0.0.0.0", 7000))
# Ready (the TCP port the build and launch wait for) only once the UDP port is bound.
threading.Thread(target=ready, daemon=True).start()
recv, send = udp.recvfrom, udp.sendto
count = 0
while True:
    data, addr = recv(65535)
    mark = data[4:5]
    if mark == b"!":
        count += 1
    elif mark == b"?":
        send(str(count).encode(), addr)
    else:
        count += 1
        send(data, addr)
'''

DOCKERFILE = """FROM public.ecr.aws/lambda/microvms:al2023-minimal
WORKDIR /app
COPY app.py .
EXPOSE 8080
CMD ["python3", "-u", "app.py"]
"""


def payloads(tenants: int, mark: bytes) -> list[bytes]:
    """64-byte datagrams, one per tenant: b"t007" + mark + filler."""
    return [(f"t{i:03d}".encode() + mark).ljust(64, b".") for i in range(tenants)]


# --------------------------------------------------------------------------- the load generator


def blast(port: int, datagrams: list[bytes], seconds: float) -> int:
    """Send the datagrams in turn as fast as one blocking socket can for `seconds`; how many were sent."""
    sent = 0
    k = len(datagrams)
    with pinned(CLIENT_CPU), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 * 1024 * 1024)
        sock.connect((HOST, port))
        send = sock.send
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            with contextlib.suppress(OSError):
                for i in range(256):
                    send(datagrams[(sent + i) % k])
            sent += 256
    return sent


def ask_all(port: int, datagrams: list[bytes], timeout: float = 120.0) -> dict[bytes, bytes]:
    """Send each datagram (re-sent every second until answered); the answers by tenant (bytes [0:4])."""
    answers: dict[bytes, bytes] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        sock.settimeout(0.2)
        deadline = time.monotonic() + timeout
        last_send = 0.0
        while len(answers) < len(datagrams):
            if time.monotonic() > deadline:
                missing = [d[:4].decode() for d in datagrams if d[:4] not in answers]
                raise BenchError(f"no answer for tenants {missing[:10]} within {timeout:g} s")
            if time.monotonic() - last_send > 1.0:
                for d in datagrams:
                    if d[:4] not in answers:
                        sock.sendto(d, (HOST, port))
                last_send = time.monotonic()
            try:
                data, _ = sock.recvfrom(65535)
            except TimeoutError:
                continue
            answers[data[:4]] = data
    return answers


def counts(port: int, tenants: int) -> int:
    """The sum of the instances' counts (asked one tenant at a time)."""
    total = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        sock.settimeout(1.0)
        for query in payloads(tenants, b"?"):
            for _attempt in range(5):
                sock.sendto(query, (HOST, port))
                try:
                    total += int(sock.recvfrom(64)[0])
                    break
                except TimeoutError:
                    continue
            else:
                raise BenchError(f"tenant {query[:4].decode()} never answered its count")
    return total


# --------------------------------------------------------------------------- measure


def measure(args: argparse.Namespace) -> dict[str, Any]:
    if os.geteuid() != 0:
        raise BenchError("run as root: MicroVM instances need the linux sandbox backend")
    results: dict[str, Any] = {}
    echo = payloads(args.tenants, b"-")
    one_way = payloads(args.tenants, b"!")
    log("baseline: bare uvloop UDP server ...")
    with baseline_server() as (pid, port):
        from udp import ONE_WAY, baseline_count

        results["baseline_echo"] = client_run(closed_loop(port, args.window, 1.0, args.duration, echo))
        before = baseline_count(port)
        t0 = time.perf_counter()
        sent = blast(port, [ONE_WAY], args.duration)
        elapsed = time.perf_counter() - t0
        time.sleep(0.2)
        got = baseline_count(port) - before
        results["baseline_ingest"] = {"sent": sent, "received": got, "pps": got / elapsed, "seconds": elapsed}

    with tempfile.TemporaryDirectory(prefix="lamina-udp-mvm-") as tmp, \
            lamina_server(30.0) as (proc, http_port, log_path), \
            server_failures(proc, lambda: read_log(log_path), BenchError):
        results["server"] = server_info(http_port)
        folder = Path(tmp) / "app"
        folder.mkdir()
        (folder / "app.py").write_text(APP)
        (folder / "Dockerfile").write_text(DOCKERFILE)
        api(http_port, "POST", "/2025-09-09/microvm-images", {
            "name": "udpbench", "baseImageArn": BASE, "buildRoleArn": ROLE,
            "codeArtifact": {"uri": folder.as_uri()}, "resources": [{"minimumMemoryInMiB": MEMORY_MIB}]})
        t = time.monotonic()
        while (state := api(http_port, "GET", "/2025-09-09/microvm-images/udpbench")["state"]) == "CREATING":
            time.sleep(0.1)
        if state != "CREATED":
            raise BenchError(f"image build {state}\n{read_log(log_path)}")
        log(f"image built in {time.monotonic() - t:.2f}s")
        listener = api(http_port, "POST", "/lamina/v1/udp/listeners", {
            "Name": "bench-mvm", "Destinations": [{
                "Type": "microvm", "Name": "tenants", "Image": "udpbench",
                "Arguments": {"TenantIdExpression": "[0:4]", "TenantIdFormatter": "ascii",
                              "Port": PORT_IN_INSTANCE}}]})
        port = listener["Port"]
        log(f"starting {args.tenants} instances (one datagram per tenant) ...")
        t = time.monotonic()
        answers = ask_all(port, echo)
        results["start_all_s"] = time.monotonic() - t
        if any(answers[d[:4]] != d for d in echo):
            raise BenchError("an instance answered another tenant's datagram")
        log(f"{args.tenants} instances answered in {results['start_all_s']:.2f}s")
        pin_tree(proc.pid, SERVER_CPU, CLIENT_CPU)  # the instances on CLIENT_CPU

        log(f"lamina: closed loop, {args.window} in flight, {args.tenants} tenants ...")
        cpu0 = tree_cpu_seconds(proc.pid)
        results["lamina_echo"] = client_run(closed_loop(port, args.window, 2.0, args.duration, echo))
        results["lamina_echo"]["tree_cpu_s"] = tree_cpu_seconds(proc.pid) - cpu0
        pin_tree(proc.pid, SERVER_CPU, CLIENT_CPU)

        log(f"lamina: one-way for {args.duration:g} s, {args.tenants} tenants ...")
        before = counts(port, args.tenants)
        m0 = listener_metrics(http_port, listener["Id"])
        t0 = time.perf_counter()
        sent = blast(port, one_way, args.duration)
        elapsed = time.perf_counter() - t0
        time.sleep(0.5)    # what is queued in the instances' sockets is read
        got = counts(port, args.tenants) - before
        m1 = listener_metrics(http_port, listener["Id"])
        d = {k: m1[k] - m0.get(k, 0) for k in m1 if isinstance(m1[k], int)}
        results["lamina_ingest"] = {"sent": sent, "read": d["PacketsIn"], "delivered": d["Delivered"],
                                    "reached_apps": got, "pps": got / elapsed, "seconds": elapsed,
                                    "counters": d}
        info = api(http_port, "GET", f"/lamina/v1/udp/listeners/{listener['Id']}")["Destinations"][0]
        results["instances"] = len(info.get("Instances", {}))
        results["final_metrics"] = info["Metrics"]
    return results


# --------------------------------------------------------------------------- report


def summarize(r: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    pps = r["lamina_ingest"]["pps"]
    one_way = pps / r["baseline_ingest"]["pps"]
    return {
        "settings": {"tenants": args.tenants, "duration_s": args.duration, "window": args.window,
                     "payload_bytes": 64},
        "results": r,
        "ratios_to_baseline": {
            "one_way": round(one_way, 4),
            "echo": round(r["lamina_echo"]["pps"] / r["baseline_echo"]["pps"], 4),
        },
        "targets": {"one_way": {"min_ratio": TARGET_ONE_WAY_RATIO, "value": round(one_way, 4),
                                "pass": one_way >= TARGET_ONE_WAY_RATIO}},
        "env": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()},
    }


def print_report(s: dict[str, Any]) -> None:
    r, st = s["results"], s["settings"]
    bi, li = r["baseline_ingest"], r["lamina_ingest"]
    be, le = r["baseline_echo"], r["lamina_echo"]
    print(f"UDP gateway -> per-tenant MicroVMs, {st['tenants']} tenants ({r['instances']} instances running), "
          f"servers on CPU {SERVER_CPU}, load generator and instances on CPU {CLIENT_CPU}, 64-byte datagrams")
    print(f"start: one datagram per tenant, all {st['tenants']} answered in {r['start_all_s']:.2f} s")
    print(f"one-way, one blocking sender as fast as it goes, {st['duration_s']:g} s:")
    print(f"  {'bare uvloop server (counts)':40} {bi['pps']:>10,.0f} packets/s  (sent {bi['sent']:,})")
    print(f"  {'lamina -> MicroVM apps (their counts)':40} {li['pps']:>10,.0f} packets/s  "
          f"x{s['ratios_to_baseline']['one_way']:.3f}  (sent {li['sent']:,}, read {li['read']:,}, delivered "
          f"{li['delivered']:,}, reached the apps {li['reached_apps']:,})")
    print(f"request/reply, closed loop with {st['window']} in flight, {st['duration_s']:g} s:")
    print(f"  {'bare uvloop echo':40} {be['pps']:>10,.0f} replies/s")
    print(f"  {'lamina -> MicroVM echo apps':40} {le['pps']:>10,.0f} replies/s  "
          f"x{s['ratios_to_baseline']['echo']:.3f}  (server tree CPU {le['tree_cpu_s']:.2f} s in "
          f"{le['seconds'] + 2:.1f} s)")
    t = s["targets"]["one_way"]
    print(f"target: one-way packets/s to per-tenant MicroVMs with {st['tenants']} tenants, gateway on one core, >= "
          f"{TARGET_ONE_WAY_RATIO:g}x the bare server's — {'PASS' if t['pass'] else 'FAIL'} ({t['value']:.3f}x: "
          f"{li['pps']:,.0f} against {bi['pps']:,.0f})")
    fm = r["final_metrics"]
    print(f"destination counters: started {fm['InstancesStarted']}, replaced {fm['InstancesReplaced']}, "
          f"flows {fm['Flows']}, dropped held {fm['DroppedHeld']}, dropped start {fm['DroppedStart']}, "
          f"errors {fm['Errors']}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tenants", type=int, default=100, help="tenants, one MicroVM each (default 100, max 1000)")
    p.add_argument("--duration", type=float, default=5.0, help="seconds of each run (default 5)")
    p.add_argument("--window", type=int, default=1024, help="datagrams in flight, request/reply (default 1024)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = p.parse_args(argv)
    if not 1 <= args.tenants <= 1000 or args.duration <= 0 or args.window < 1:
        p.error("--tenants 1-1000, --duration > 0, --window >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if why := missing_cpus(SERVER_CPU, CLIENT_CPU):
        log(f"benchmark failed: {why}")
        return 1
    return run_and_report(lambda: measure(args), lambda r: summarize(r, args), print_report, args.json, log, BenchError)


if __name__ == "__main__":
    sys.exit(main())
