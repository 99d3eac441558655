#!/usr/bin/env python3
"""UDP gateway throughput and reply latency, against a bare uvloop UDP echo server in the same run.

    .venv/bin/python bench/udp.py [--duration 5] [--window 1024] [--n 2000] [--json]

Needs `taskset`-style affinity (os.sched_setaffinity) and 2 CPUs. Every server runs pinned to CPU 0
(its whole process tree: `lamina serve`, the function's zygote and environments); the load generator
(this process, a uvloop DatagramProtocol client) runs pinned to CPU 1.

  baseline   a bare uvloop DatagramProtocol server (this file run with --baseline-server PORT): echoes
             each datagram, or only counts it when it starts with "!" (the one-way load)
  lamina     a fresh `lamina serve` (free port, temporary data dir) with three listeners:
             (the functions have MemorySize 1769, one vCPU's worth of CPU quota, as on Lambda)
             one-way    a function that takes each batch and replies nothing ({"Replies": []}), batched
                        (Count --batch-count, TimeoutInSeconds --batch-timeout, MaxInFlightBatches
                        --in-flight);
             echo       a Python echo function (`{"Replies": [{"Tag": m["Tag"], "Data": m["Data"]} ...]}`),
                        batched the same way;
             direct     the echo function without a batching window (batches of one loop tick), for latency.

One-way: one blocking socket sends 64-byte datagrams as fast as it can for --duration seconds; the
figure is packets delivered to the function per second (packets in invocations that succeeded, the
last batches included), beside the datagrams per second a bare uvloop server reads and counts.
Request/reply: closed loop, --window datagrams in flight, a new one sent for each reply (lost ones
re-sent when nothing arrived for 100 ms), replies counted for --duration seconds after a 2 s warm-up.
Latency: --n sequential request/reply round trips, one in flight.

Targets printed, as ratios to the bare server measured in the same run: one-way packets/s to a batched
function destination on one core >= 0.18x the bare server's, and a reply p50 without a batching window
<= 14x the bare echo's (see bench/README.md). Only prints figures: exit status 0 whether targets are met
or not, 1 if a server fails to start or a reply never comes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import platform
import sys
import time
from collections.abc import Iterator
from typing import Any

from _common import (
    Stats,
    missing_cpus,
    pin_tree,
    pinned,
    run_and_report,
    server_failures,
    stop_process,
    tree_cpu_seconds,
)
from invoke import ROLE, BenchError, boto3_client, lamina_server, log, read_log, server_info

HOST = "127.0.0.1"
SERVER_CPU = 0
CLIENT_CPU = 1
# The ">= 50,000 packets/s" and "added p50 <= 1 ms" as ratios to this run's bare uvloop server, which read
# 269,356 datagrams/s and answered at p50 0.075 ms where they were set (bench/README.md).
TARGET_ONE_WAY_RATIO = 0.18   # Lamina's one-way packets/s >= this fraction of the baseline's
TARGET_P50_RATIO = 14.0       # Lamina's reply p50 <= this multiple of the baseline's
PAYLOAD = b"0123456789abcdef" * 4   # 64 bytes
ONE_WAY = b"!" + PAYLOAD[1:]         # the baseline counts these instead of echoing them
# Lambda's CPU share follows memory (1,769 MB = one vCPU, as Lamina's cgroups do): give the functions a
# whole vCPU, so the figure measures the gateway and not a throttled function.
MEMORY_MB = 1769

ECHO_SRC = """\
def handler(event, context):
    return {"Replies": [{"Tag": m["Tag"], "Data": m["Data"]} for m in event["Messages"]]}
"""
# One-way: the function takes the batch and answers nothing.
SINK_SRC = """\
def handler(event, context):
    return {"Replies": []}
"""


# --------------------------------------------------------------------------- baseline server


COUNT_QUERY = b"?count"


class _Echo(asyncio.DatagramProtocol):
    """Echoes every datagram, except that a datagram starting with b"!" is only counted (one-way load);
    COUNT_QUERY answers with how many were counted."""

    counted = 0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        if data[:1] == b"!":
            self.counted += 1
        elif data == COUNT_QUERY:
            self.transport.sendto(str(self.counted).encode(), addr)
        else:
            self.transport.sendto(data, addr)

    def error_received(self, exc: Exception) -> None:
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        pass


def run_baseline_server(port: int) -> None:
    import uvloop

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(_Echo, local_addr=(HOST, port))
        await asyncio.Event().wait()

    uvloop.run(serve())


def free_udp_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def baseline_server() -> Iterator[tuple[int, int]]:
    import subprocess

    port = free_udp_port()
    with pinned(SERVER_CPU):
        proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--baseline-server", str(port)],
                                start_new_session=True)
    try:
        time.sleep(0.5)
        if proc.poll() is not None:
            raise BenchError(f"baseline server exited ({proc.returncode})")
        yield proc.pid, port
    finally:
        stop_process(proc, grace=5)


# --------------------------------------------------------------------------- the load generator


class _Client(asyncio.DatagramProtocol):
    """While `window` is set, a closed loop: each reply sends the next of `datagrams` (in turn); otherwise a
    reply completes `waiter` (sequential round trips)."""

    def __init__(self, datagrams: list[bytes]) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.datagrams = datagrams
        self.i = 0
        self.received = 0
        self.window = 0
        self.waiter: asyncio.Future | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def send_next(self) -> None:
        self.i = (self.i + 1) % len(self.datagrams)
        self.transport.sendto(self.datagrams[self.i])  # type: ignore[union-attr]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.received += 1
        if self.window:
            self.send_next()
        elif self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(data)

    def error_received(self, exc: Exception) -> None:
        pass


async def _connect(port: int, datagrams: list[bytes]) -> _Client:
    import socket

    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        sock.setsockopt(socket.SOL_SOCKET, opt, 8 * 1024 * 1024)
    sock.connect((HOST, port))
    _, proto = await loop.create_datagram_endpoint(lambda: _Client(datagrams), sock=sock)
    return proto


async def closed_loop(port: int, window: int, warmup_s: float, duration_s: float,
                      datagrams: list[bytes] | None = None) -> dict[str, float]:
    """Replies per second with `window` datagrams in flight (`datagrams` sent in turn; default PAYLOAD)."""
    client = await _connect(port, datagrams or [PAYLOAD])
    assert client.transport is not None
    client.window = window
    for _ in range(window):
        client.send_next()

    async def refill() -> None:
        # Datagrams lost on the way (a full socket buffer) would shrink the window for good: top it up.
        last = -1
        while True:
            await asyncio.sleep(0.1)
            if client.received == last:
                for _ in range(window):
                    client.send_next()
            last = client.received

    keeper = asyncio.create_task(refill())
    try:
        await asyncio.sleep(warmup_s)
        start_n, start_t = client.received, time.perf_counter()
        await asyncio.sleep(duration_s)
        n, t = client.received - start_n, time.perf_counter() - start_t
    finally:
        keeper.cancel()
        client.window = 0
        client.transport.close()
    if n == 0:
        raise BenchError(f"no replies from port {port} in {duration_s:g} s")
    return {"pps": n / t, "replies": n, "seconds": t}


async def round_trips(port: int, n: int, warmup: int) -> Stats:
    """Sequential request/reply latency, one datagram in flight."""
    client = await _connect(port, [PAYLOAD])
    assert client.transport is not None
    loop = asyncio.get_running_loop()
    samples = []
    try:
        for i in range(warmup + n):
            client.waiter = loop.create_future()
            t0 = time.perf_counter_ns()
            client.transport.sendto(PAYLOAD)
            try:
                await asyncio.wait_for(client.waiter, 5.0)
            except TimeoutError:
                raise BenchError(f"no reply from port {port} within 5 s (request {i})") from None
            if i >= warmup:
                samples.append(time.perf_counter_ns() - t0)
    finally:
        client.transport.close()
    return Stats.from_ns(samples, sum(samples))


def blast(port: int, seconds: float) -> int:
    """Send ONE_WAY datagrams as fast as one blocking socket can for `seconds`; how many were sent
    (those the receiver's socket buffer had no room for are lost in the kernel, as on a real network)."""
    import socket

    sent = 0
    with pinned(CLIENT_CPU), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect((HOST, port))
        send = sock.send
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            # OSError: ECONNREFUSED reported for an earlier ICMP error; keep going.
            with contextlib.suppress(OSError):
                for _ in range(256):
                    send(ONE_WAY)
                    sent += 1
    return sent


def baseline_count(port: int) -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(COUNT_QUERY, (HOST, port))
        return int(sock.recvfrom(64)[0])


def client_run(coro: Any) -> Any:
    import uvloop

    with pinned(CLIENT_CPU):
        return uvloop.run(coro)


# --------------------------------------------------------------------------- lamina


def api(port: int, method: str, path: str, body: Any = None) -> Any:
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        conn.request(method, path, body=json.dumps(body) if body is not None else None,
                     headers={"content-type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
        if resp.status >= 300:
            raise BenchError(f"{method} {path}: HTTP {resp.status}: {data[:500]!r}")
        return json.loads(data) if data else None
    finally:
        conn.close()


def listener_metrics(port: int, listener_id: str) -> dict[str, Any]:
    doc = api(port, "GET", f"/lamina/v1/udp/listeners/{listener_id}")
    return {**doc["Metrics"], **doc["Destinations"][0]["Metrics"]}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    log("baseline: bare uvloop UDP echo ...")
    with baseline_server() as (pid, port):
        pin_tree(pid, SERVER_CPU)
        results["baseline_throughput"] = client_run(closed_loop(port, args.window, 1.0, args.duration))
        results["baseline_latency"] = client_run(round_trips(port, args.n, args.warmup)).as_dict()
        log(f"baseline: one-way for {args.duration:g} s ...")
        counted = baseline_count(port)
        t0 = time.perf_counter()
        sent = blast(port, args.duration)
        elapsed = time.perf_counter() - t0
        time.sleep(0.2)
        got = baseline_count(port) - counted
        results["baseline_ingest"] = {"sent": sent, "received": got, "pps": got / elapsed, "seconds": elapsed}

    with pinned(SERVER_CPU), lamina_server(30.0) as (proc, http_port, log_path), \
            server_failures(proc, lambda: read_log(log_path), BenchError):
        results["server"] = server_info(http_port)
        client = boto3_client(http_port)
        client.create_function(FunctionName="bench-udp-echo", Role=ROLE, Runtime="python3.11",
                               Handler="app.handler", Code={"ZipFile": _zip(ECHO_SRC)}, MemorySize=MEMORY_MB,
                               Timeout=30)
        client.get_waiter("function_active_v2").wait(FunctionName="bench-udp-echo",
                                                     WaiterConfig={"Delay": 0.5, "MaxAttempts": 120})
        batching: dict[str, Any] = {"Count": args.batch_count}
        if args.batch_timeout:
            batching["TimeoutInSeconds"] = args.batch_timeout
        batched = api(http_port, "POST", "/lamina/v1/udp/listeners", {
            "Name": "bench-batched", "Destinations": [{"Function": "bench-udp-echo", "Batching": batching,
                                                        "MaxInFlightBatches": args.in_flight}]})
        direct = api(http_port, "POST", "/lamina/v1/udp/listeners", {
            "Name": "bench-direct", "Destinations": [{"Function": "bench-udp-echo"}]})
        client.create_function(FunctionName="bench-udp-sink", Role=ROLE, Runtime="python3.11",
                               Handler="app.handler", Code={"ZipFile": _zip(SINK_SRC)}, MemorySize=MEMORY_MB,
                               Timeout=30)
        client.get_waiter("function_active_v2").wait(FunctionName="bench-udp-sink",
                                                     WaiterConfig={"Delay": 0.5, "MaxAttempts": 120})
        ingest = api(http_port, "POST", "/lamina/v1/udp/listeners", {
            "Name": "bench-ingest", "Destinations": [{"Function": "bench-udp-sink", "Batching": batching,
                                                       "MaxInFlightBatches": args.in_flight}]})
        # Warm the function (its environments start on the first batches), then pin them too.
        client_run(round_trips(batched["Port"], 50, 0))
        pin_tree(proc.pid, SERVER_CPU)
        log(f"lamina: closed loop, {args.window} in flight, batching {batching} ...")
        before = listener_metrics(http_port, batched["Id"])
        cpu0 = tree_cpu_seconds(proc.pid)
        results["lamina_throughput"] = client_run(closed_loop(batched["Port"], args.window, 2.0, args.duration))
        cpu1 = tree_cpu_seconds(proc.pid)
        after = listener_metrics(http_port, batched["Id"])
        pin_tree(proc.pid, SERVER_CPU)
        results["lamina_counters"] = {k: after[k] - before.get(k, 0) for k in after if isinstance(after[k], int)}
        batches = results["lamina_counters"]["Batches"] or 1
        results["lamina_throughput"]["mean_batch"] = results["lamina_counters"]["Packets"] / batches
        results["lamina_throughput"]["server_cpu_s"] = cpu1 - cpu0
        log(f"lamina: one-way for {args.duration:g} s to a function destination, batching {batching} ...")
        blast(ingest["Port"], 1.0)   # warm-up: the sink function's environments start
        time.sleep(0.5)
        pin_tree(proc.pid, SERVER_CPU)
        before = listener_metrics(http_port, ingest["Id"])
        t0 = time.perf_counter()
        sent = blast(ingest["Port"], args.duration)
        while listener_metrics(http_port, ingest["Id"])["InFlight"]:   # the last batches finish
            time.sleep(0.01)
        elapsed = time.perf_counter() - t0
        after = listener_metrics(http_port, ingest["Id"])
        d = {k: after[k] - before.get(k, 0) for k in after if isinstance(after[k], int)}
        delivered = d["Packets"] - d["DroppedOverload"] if not d["Errors"] and not d["Throttles"] else 0
        results["lamina_ingest"] = {"sent": sent, "received": d["PacketsIn"], "delivered": delivered,
                                    "batches": d["Batches"], "errors": d["Errors"] + d["Throttles"],
                                    "dropped_overload": d["DroppedOverload"], "pps": delivered / elapsed,
                                    "seconds": elapsed}
        log("lamina: sequential round trips without a batching window ...")
        results["lamina_latency"] = client_run(round_trips(direct["Port"], args.n, args.warmup)).as_dict()
        results["environments"] = server_info(http_port).get("environments")
    return results


def _zip(source: str) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", source)
    return buf.getvalue()


# --------------------------------------------------------------------------- report


def summarize(r: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    pps = r["lamina_ingest"]["pps"]
    added = r["lamina_latency"]["p50_ms"] - r["baseline_latency"]["p50_ms"]
    one_way = pps / r["baseline_ingest"]["pps"]
    p50 = r["lamina_latency"]["p50_ms"] / r["baseline_latency"]["p50_ms"]
    return {
        "settings": {"duration_s": args.duration, "window": args.window, "batch_count": args.batch_count,
                     "batch_timeout_s": args.batch_timeout, "in_flight": args.in_flight, "n": args.n,
                     "payload_bytes": len(PAYLOAD)},
        "results": r,
        "ratios_to_baseline": {
            "one_way": round(one_way, 4),
            "echo": round(r["lamina_throughput"]["pps"] / r["baseline_throughput"]["pps"], 4),
            "p50": round(p50, 4),
        },
        "added_p50_ms": round(added, 4),
        "targets": {
            "one_way": {"min_ratio": TARGET_ONE_WAY_RATIO, "value": round(one_way, 4),
                        "pass": one_way >= TARGET_ONE_WAY_RATIO},
            "p50": {"max_ratio": TARGET_P50_RATIO, "value": round(p50, 4), "pass": p50 <= TARGET_P50_RATIO},
        },
        "env": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()},
    }


def print_report(s: dict[str, Any]) -> None:
    r = s["results"]
    st = s["settings"]
    bt, lt = r["baseline_throughput"], r["lamina_throughput"]
    bl, ll = r["baseline_latency"], r["lamina_latency"]
    print(f"UDP gateway — servers on CPU {SERVER_CPU}, load generator on CPU {CLIENT_CPU}, {st['payload_bytes']}-byte "
          f"datagrams")
    bi, li = r["baseline_ingest"], r["lamina_ingest"]
    batching = f"Count {st['batch_count']}, window {st['batch_timeout_s']:g} s"
    print(f"one-way, one blocking sender as fast as it goes, {st['duration_s']:g} s:")
    print(f"  {'bare uvloop server (counts)':44} {bi['pps']:>10,.0f} packets/s  (sent {bi['sent']:,})")
    print(f"  {'lamina function (' + batching + ')':44} {li['pps']:>10,.0f} packets/s  "
          f"x{s['ratios_to_baseline']['one_way']:.3f}  (sent {li['sent']:,}, read {li['received']:,}, delivered "
          f"{li['delivered']:,} in {li['batches']:,} batches, errors {li['errors']}, dropped overload "
          f"{li['dropped_overload']})")
    print(f"request/reply, closed loop with {st['window']} in flight, {st['duration_s']:g} s:")
    print(f"  {'bare uvloop echo':44} {bt['pps']:>10,.0f} replies/s")
    print(f"  {'lamina echo function (' + batching + ')':44} {lt['pps']:>10,.0f} replies/s  "
          f"x{s['ratios_to_baseline']['echo']:.3f}  (mean batch {lt['mean_batch']:.0f}, server tree CPU "
          f"{lt['server_cpu_s']:.2f} s in {lt['seconds'] + 2:.1f} s)")
    c = r["lamina_counters"]
    print(f"  gateway counters in that run: packets {c['Packets']:,}, batches {c['Batches']:,}, replies "
          f"{c['Replies']:,}, errors {c['Errors']}, throttles {c['Throttles']}, dropped overload "
          f"{c['DroppedOverload']}, dropped send {c['DroppedSend']}")
    print(f"latency, one datagram in flight, {st['n']} round trips (ms):")
    print(f"  {'':34} {'p50':>7} {'p90':>7} {'p99':>7}")
    print(f"  {'bare uvloop echo':34} {bl['p50_ms']:>7.3f} {bl['p90_ms']:>7.3f} {bl['p99_ms']:>7.3f}")
    print(f"  {'lamina function, no batching window':34} {ll['p50_ms']:>7.3f} {ll['p90_ms']:>7.3f} "
          f"{ll['p99_ms']:>7.3f}")
    t = s["targets"]
    print(f"target: one-way packets/s to a batched function destination on one core >= {TARGET_ONE_WAY_RATIO:g}x "
          f"the bare server's — {'PASS' if t['one_way']['pass'] else 'FAIL'} ({t['one_way']['value']:.3f}x: "
          f"{li['pps']:,.0f} against {bi['pps']:,.0f})")
    print(f"target: reply p50 without a batching window <= {TARGET_P50_RATIO:g}x the bare echo's — "
          f"{'PASS' if t['p50']['pass'] else 'FAIL'} ({t['p50']['value']:.2f}x: {ll['p50_ms']:.3f} ms against "
          f"{bl['p50_ms']:.3f} ms, {s['added_p50_ms']:.3f} ms added)")
    srv = r.get("server", {})
    print(f"server: lamina {srv.get('version', '?')}, sandbox {srv.get('sandbox', '?')}; "
          f"environments at the end: {r.get('environments')}")


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=5.0, help="seconds of each throughput run (default 5)")
    p.add_argument("--window", type=int, default=1024, help="datagrams in flight for throughput (default 1024)")
    p.add_argument("--batch-count", type=int, default=1000, help="Batching.Count of the batched listener")
    p.add_argument("--batch-timeout", type=float, default=0.005,
                   help="Batching.TimeoutInSeconds of the batched listener (default 0.005)")
    p.add_argument("--in-flight", type=int, default=4, help="MaxInFlightBatches of the batched listener (default 4)")
    p.add_argument("--n", type=int, default=2000, help="sequential round trips for latency (default 2000)")
    p.add_argument("--warmup", type=int, default=200, help="round trips before timing (default 200)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--baseline-server", type=int, metavar="PORT", help="internal: run the baseline echo server")
    args = p.parse_args(argv)
    if args.duration <= 0 or args.window < 1 or args.n < 1:
        p.error("--duration must be > 0, --window and --n >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.baseline_server is not None:
        run_baseline_server(args.baseline_server)
        return 0
    if why := missing_cpus(SERVER_CPU, CLIENT_CPU):
        log(f"benchmark failed: {why}")
        return 1
    return run_and_report(lambda: measure(args), lambda r: summarize(r, args), print_report, args.json, log, BenchError)


if __name__ == "__main__":
    sys.exit(main())
