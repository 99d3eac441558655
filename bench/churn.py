#!/usr/bin/env python3
"""Cold starts and teardowns per second (environment churn), against spawning fresh python3 processes.

    .venv/bin/python bench/churn.py [--starts 2000] [--threads 8] [--baseline 800] [--json]

The load of tests/integration/test_sandbox_leaks.py, timed. Starts its own `lamina serve` on a free port
with a temporary data dir and deploys, with boto3, one function per thread. Each thread then loops, on
one keep-alive http.client connection: invoke (a new environment, forked from the function's zygote
through the whole sandbox; every other invoke leaves a stray process behind in it) and
`DELETE /lamina/v1/functions/NAME/environments` (the teardown, which must kill the stray too). The
handler counts its calls, so `calls == 1` proves each invoke got a new environment.

  churn     --starts invoke + teardown rounds over --threads threads: rounds per second.
  baseline  --baseline runs of a fresh `/usr/bin/python3 -I -S -c pass` (else this interpreter),
            spawned and waited for from the same number of threads, half before the churn and half
            after: what starting and ending a process costs on this machine, in the same run.

Only prints figures: the exit status is 0 whether the target is met or not, 1 if the server fails or
an invoke or a teardown returns an error.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from typing import Any

from _common import run_and_report, server_failures, tree_cpu_seconds
from invoke import ROLE, BenchError, boto3_client, lamina_server, log, read_log, server_info

HOST = "127.0.0.1"
# Rounds per second >= this fraction of the fresh-python3 spawn rate (see bench/README.md).
TARGET_RATIO = 0.25

# CALLS starts at 0 in every environment (each is a fork of the zygote, which never runs the handler).
HANDLER_SRC = """\
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
"""


def function_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("app.py", HANDLER_SRC)
    return buf.getvalue()


def deploy(client: Any, name: str) -> None:
    client.create_function(FunctionName=name, Runtime="python3.11", Role=ROLE, Handler="app.handler",
                           Code={"ZipFile": function_zip()}, Timeout=30)
    client.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 120})


def run_threads(threads: int, total: int, one: Any) -> float:
    """Run one(index, round) `total` times spread over `threads` threads; the wall time in seconds. The first
    exception a thread raises stops that thread and is raised here."""
    errors: list[BaseException] = []

    def worker(index: int, rounds: int) -> None:
        try:
            for r in range(rounds):
                one(index, r)
        except BaseException as exc:
            errors.append(exc)

    shares = [total // threads + (1 if i < total % threads else 0) for i in range(threads)]
    pool = [threading.Thread(target=worker, args=(i, n), daemon=True) for i, n in enumerate(shares)]
    t0 = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return wall


def churn(port: int, names: list[str], starts: int) -> float:
    conns: dict[int, http.client.HTTPConnection] = {}

    def request(conn: http.client.HTTPConnection, method: str, path: str, body: bytes = b"") -> tuple:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
        resp = conn.getresponse()
        return resp.status, resp.getheader("X-Amz-Function-Error"), resp.read()

    def one(index: int, r: int) -> None:
        conn = conns.setdefault(index, http.client.HTTPConnection(HOST, port, timeout=60))
        name = names[index]
        status, err, body = request(conn, "POST", f"/2015-03-31/functions/{name}/invocations",
                                    json.dumps({"stray": r % 2 == 0}).encode())
        if status != 200 or err or json.loads(body).get("calls") != 1:
            raise BenchError(f"invoke of {name}: HTTP {status} X-Amz-Function-Error={err} body={body[:500]!r}")
        status, _, body = request(conn, "DELETE", f"/lamina/v1/functions/{name}/environments")
        if status != 200 or json.loads(body).get("stopped") != 1:
            raise BenchError(f"DELETE environments of {name}: HTTP {status} body={body[:500]!r}")

    try:
        return run_threads(len(names), starts, one)
    finally:
        for conn in conns.values():
            conn.close()


def baseline_python() -> str:
    return "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


def baseline(threads: int, runs: int) -> float:
    cmd = [baseline_python(), "-I", "-S", "-c", "pass"]
    subprocess.run(cmd, check=True)  # warm the page cache

    def one(index: int, r: int) -> None:
        subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL)

    return run_threads(threads, runs, one)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    # Half the baseline before the churn and half after, so that a change in the machine's other load
    # during the run weighs on both sides alike.
    log(f"baseline: {args.baseline // 2} fresh python3 processes over {args.threads} threads ...")
    results["baseline_s"] = baseline(args.threads, args.baseline // 2)
    with lamina_server(30.0) as (proc, port, log_path), server_failures(proc, lambda: read_log(log_path), BenchError):
        results["server"] = server_info(port)
        client = boto3_client(port)
        names = [f"bench-churn-{i}" for i in range(args.threads)]
        for name in names:
            deploy(client, name)
        log(f"churn: {args.starts} invoke + teardown rounds over {args.threads} threads ...")
        cpu0 = tree_cpu_seconds(proc.pid)
        results["churn_s"] = churn(port, names, args.starts)
        results["server_tree_cpu_s"] = tree_cpu_seconds(proc.pid) - cpu0
    rest = args.baseline - args.baseline // 2
    log(f"baseline: {rest} more fresh python3 processes ...")
    results["baseline_s"] += baseline(args.threads, rest)
    return results


def summarize(results: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    rate = args.starts / results["churn_s"]
    base = args.baseline / results["baseline_s"]
    ratio = rate / base
    return {
        "settings": {"starts": args.starts, "threads": args.threads, "baseline_runs": args.baseline,
                     "baseline_python": baseline_python()},
        "server": results["server"],
        "churn": {"rounds_per_s": round(rate, 1), "seconds": round(results["churn_s"], 2),
                  "server_tree_cpu_ms_per_round": round(results["server_tree_cpu_s"] / args.starts * 1000, 2)},
        "baseline": {"spawns_per_s": round(base, 1), "seconds": round(results["baseline_s"], 2)},
        "ratio": round(ratio, 3),
        "target": {"min_ratio": TARGET_RATIO, "value": round(ratio, 3), "pass": ratio >= TARGET_RATIO},
        "env": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()},
    }


def print_report(s: dict[str, Any]) -> None:
    st, srv, c, b = s["settings"], s["server"], s["churn"], s["baseline"]
    print(f"Environment churn — {st['starts']} cold start + teardown rounds over {st['threads']} threads")
    print(f"server: lamina {srv.get('version', '?')}, sandbox {srv.get('sandbox', '?')} "
          f"(isolated: {srv.get('isolated', '?')}); host: {s['env']['cpus']} CPUs, Python {s['env']['python']}")
    print(f"  lamina    {c['rounds_per_s']:8.1f} rounds/s  ({c['seconds']:.1f} s; server tree CPU "
          f"{c['server_tree_cpu_ms_per_round']:.1f} ms per round)")
    print(f"  baseline  {b['spawns_per_s']:8.1f} spawns/s  ({st['baseline_runs']} x {st['baseline_python']} -I -S "
          f"-c pass, {b['seconds']:.1f} s)")
    t = s["target"]
    print(f"target: cold start + teardown rounds/s >= {TARGET_RATIO:g}x fresh python3 spawns/s — "
          f"{'PASS' if t['pass'] else 'FAIL'} ({t['value']:.3f}x)")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--starts", type=int, default=2000, help="invoke + teardown rounds (default 2000)")
    p.add_argument("--threads", type=int, default=8, help="client threads, one function each (default 8)")
    p.add_argument("--baseline", type=int, default=800,
                   help="fresh python3 processes, half before and half after the churn (default 800)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = p.parse_args(argv)
    if args.starts < 1 or args.threads < 1 or args.baseline < 2:
        p.error("--starts and --threads must be >= 1, --baseline >= 2")
    if shutil.which(baseline_python()) is None:
        p.error(f"no {baseline_python()}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_and_report(lambda: measure(args), lambda results: summarize(results, args), print_report,
                          args.json, log, BenchError)


if __name__ == "__main__":
    sys.exit(main())
