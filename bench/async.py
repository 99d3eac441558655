"""Asynchronous invocation: accepted Event invokes per second with full durability, against a bare SQLite loop.

Starts its own `lamina serve` (free loopback port, temporary data dir, `async_durability = fsync`) pinned to CPU 0
(its writer thread included), deploys a trivial function (its environments on CPU 1, beside wrk) and measures:

- **accepted/s**: `wrk -t1 -c32` (32 keep-alive clients, on CPU 1) POSTing Event invokes (`X-Amz-Invocation-Type:
  Event`) for `--duration` s after a 2 s warm-up; every 202 means the event was committed (WAL fsynced) first.
  The function runs events meanwhile, as it would, with a bounded share of the server's core while accepts keep
  coming (events/delivery.py: START_PER_TURN, and while accepts saturate the loop RUN_SHARE of them): printed are
  the events run per second during the run, the backlog left at its end, how long it took to drain, and the run's
  accepts over the run and the drain (accepted and run per second).
- **baseline**: in the same run, on the same disk (a file in the same temporary directory), a bare loop of the
  same SQLite pattern — multi-row INSERTs of the queue's rows (store/async_events.py insert_rows, the function and
  its compact form for fresh events of one function) and a COMMIT with `synchronous=FULL` in WAL mode —
  with as many rows per commit as Lamina's group commit carried during the wrk run (accepts per fsync), pinned to
  CPU 0 too. Also shown: one row per commit, for reference, with its median commit time (an fsync of this disk:
  the floor under a single client's 202 latency).
- **202 latency**: p50/p99 of `--n` sequential Event invokes from one keep-alive client (wrk's p50 at 32 clients is
  printed too: under saturation it is 32 / throughput), beside the same client's DryRun invokes (the same request,
  answered without the queue: what the HTTP path and the client take of it).
- **server CPU per accepted event**: utime + stime of the server's threads (`/proc/<pid>/task/*/stat`) over the wrk
  run, per accepted event: the event loop's thread, the others (the queue's writer thread is the busiest), and with
  the backlog's drain after the run added (everything an accepted event cost, its run included). Unlike the rates it
  hardly depends on what else the machine runs, so it is the figure to compare on a shared machine.
- **accepted -> handler start**: the same sequential invokes; the handler prints `time.time()` when it starts,
  against the client's time when the 202 arrived (same host clock), with a warm environment.

Targets printed: >= 10,000 accepted/s on this 2-core machine and >= 0.5x the baseline; 202 p50 <= 1 ms;
accepted -> handler start p50 <= 2 ms, p99 <= 20 ms. Only prints figures (exit 0 whether or not they are met; 1
when the benchmark could not run). Needs `wrk` and `taskset`, and CPUs 0 and 1.

    .venv/bin/python bench/async.py [--duration 5] [--connections 32] [--n 2000] [--json]
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from _common import (
    CLK_TCK,
    cpu_seconds,
    free_port,
    missing_cpus,
    pin_tree,
    pinned,
    run_and_report,
    stop_process,
    wait_http_ok,
)

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
from lamina.store.async_events import AsyncEvent, insert_rows, row_of  # noqa: E402
from lamina.store.db import Database  # noqa: E402
from lamina.store.group_commit import connect  # noqa: E402

HOST = "127.0.0.1"
SERVER_CPU, WRK_CPU = 0, 1
ROLE = "arn:aws:iam::000000000000:role/lamina"
HANDLER = '''
import time
def handler(event, context):
    if event.get("mark"):
        print("STARTED %s %.6f" % (event["mark"], time.time()))
    return None
'''
WRK_SCRIPT = '''
wrk.method = "POST"
wrk.body = '{"n": 1}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Amz-Invocation-Type"] = "Event"
'''


class BenchError(Exception):
    pass


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def make_zip(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, content in files.items():
            zf.writestr(path, content)
    return buf.getvalue()


def health(port: int) -> dict[str, Any]:
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        conn.request("GET", "/lamina/v1/health")
        return json.loads(conn.getresponse().read())["async"]
    finally:
        conn.close()


def wait_drained(port: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        h = health(port)
        if h["depth"] == 0 and h["running"] == 0:
            return
        time.sleep(0.2)
    raise BenchError(f"the async queue did not drain in {timeout:g} s")


def wrk(port: int, path: str, duration: float, connections: int, script: Path) -> dict[str, Any]:
    cmd = ["taskset", "-c", str(WRK_CPU), "wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency",
           "-s", str(script), f"http://{HOST}:{port}{path}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    out = proc.stdout
    if proc.returncode != 0 or "Requests/sec:" not in out:
        raise BenchError(f"wrk failed (exit {proc.returncode}): {out}{proc.stderr}")

    def ms(text: str) -> float:
        m = re.match(r"([\d.]+)(us|ms|s)", text)
        return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)] if m else float("nan")

    total = re.search(r"(\d+) requests in", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    p50 = re.search(r"^\s+50(?:\.000)?%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99(?:\.000)?%\s+(\S+)", out, re.M)
    return {"requests": int(total.group(1)) if total else 0, "non_2xx": int(non2xx.group(1)) if non2xx else 0,
            "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
            "p50_ms": round(ms(p50.group(1)), 3) if p50 else None,
            "p99_ms": round(ms(p99.group(1)), 3) if p99 else None}


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds (utime + stime) of each thread of pid, by thread: "main" (the event loop) and the others by
    their kernel name and id."""
    out: dict[str, float] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", "rb") as fh:
                raw = fh.read().decode()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        f = raw[raw.rindex(")") + 2 :].split()
        key = "main" if tid == str(pid) else f"{comm}/{tid}"
        out[key] = (int(f[11]) + int(f[12])) / CLK_TCK
    return out


def cpu_per_event(before: dict[str, float], after: dict[str, float], events: int) -> dict[str, float]:
    """Microseconds of CPU per event: all threads, the event loop's ("main"), the others summed and the busiest of
    them (the async queue's writer), from two thread_cpu() readings."""
    used = {k: after[k] - before.get(k, 0.0) for k in after}
    main = used.pop("main", 0.0)
    busiest = max(used.values(), default=0.0)
    rest = sum(used.values())
    n = max(1, events)
    return {"total_us": round((main + rest) / n * 1e6, 1), "main_us": round(main / n * 1e6, 1),
            "busiest_thread_us": round(busiest / n * 1e6, 1), "other_threads_us": round(rest / n * 1e6, 1)}


def sqlite_baseline(path: Path, rows_per_commit: int, seconds: float) -> tuple[float, float]:
    """Rows per second of the queue's INSERT + COMMIT pattern (WAL, synchronous=FULL) in a bare loop, and the
    median time of one commit (ms)."""
    Database(path).close()   # the same schema (migrations)
    conn = connect(path, "fsync")
    payload = b'{"n": 1}'
    n = 0
    times: list[float] = []
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        now = time.time()
        rows = [row_of(AsyncEvent(str(uuid.uuid4()), "bench", "$LATEST", None,
                                  "arn:aws:lambda:us-east-1:000000000000:function:bench", payload, created=now,
                                  due=now, claimed=True)) for _ in range(rows_per_commit)]
        t0 = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        insert_rows(conn, rows)
        conn.execute("COMMIT")
        times.append(time.perf_counter() - t0)
        n += rows_per_commit
    elapsed = time.perf_counter() - start
    conn.close()
    return n / elapsed, statistics.median(times) * 1e3


def sequential(port: int, name: str, n: int) -> tuple[list[float], dict[str, float]]:
    """n Event invokes one at a time: each 202's latency (ms) and, by mark, the client's time at the 202."""
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    path = f"/2015-03-31/functions/{name}/invocations"
    headers = {"Content-Type": "application/json", "X-Amz-Invocation-Type": "Event"}
    latencies: list[float] = []
    accepted_at: dict[str, float] = {}
    try:
        for i in range(n):
            mark = f"m{i}"
            body = json.dumps({"mark": mark}).encode()
            t0 = time.perf_counter()
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            t1 = time.perf_counter()
            wall = time.time()
            if resp.status != 202:
                raise BenchError(f"Event invoke: HTTP {resp.status}")
            latencies.append((t1 - t0) * 1e3)
            accepted_at[mark] = wall
            time.sleep(0.002)   # the environment is idle (warm) again before the next one
    finally:
        conn.close()
    return latencies, accepted_at


def dry_runs(port: int, name: str, n: int) -> list[float]:
    """n DryRun invokes one at a time, as sequential() sends Event ones: the same request and client, answered
    without the queue (the HTTP path and the client's own share of a 202's latency)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    path = f"/2015-03-31/functions/{name}/invocations"
    headers = {"Content-Type": "application/json", "X-Amz-Invocation-Type": "DryRun"}
    latencies: list[float] = []
    try:
        for i in range(n):
            body = json.dumps({"mark": f"d{i}"}).encode()
            t0 = time.perf_counter()
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            latencies.append((time.perf_counter() - t0) * 1e3)
            if resp.status != 204:
                raise BenchError(f"DryRun invoke: HTTP {resp.status}")
            time.sleep(0.002)
    finally:
        conn.close()
    return latencies


def starts(port: int, name: str) -> dict[str, float]:
    conn = http.client.HTTPConnection(HOST, port, timeout=60)
    try:
        conn.request("GET", f"/lamina/v1/functions/{name}/logs")
        lines = conn.getresponse().read().splitlines()
    finally:
        conn.close()
    out = {}
    for line in lines:
        msg = json.loads(line)["message"]
        if msg.startswith("STARTED "):
            _, mark, t = msg.split()
            out[mark] = float(t)
    return out


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def measure(args: argparse.Namespace) -> dict[str, Any]:
    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        raise BenchError("needs wrk and taskset (apt-get install -y wrk)")
    if (why := missing_cpus(SERVER_CPU, WRK_CPU)) is not None:
        raise BenchError(why)
    tmp = Path(tempfile.mkdtemp(prefix="lamina-bench-async-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAMINA_") or k == "LAMINA_SANDBOX"}
    env["LAMINA_ASYNC_DURABILITY"] = "fsync"
    cmd = [sys.executable, "-m", "lamina", "serve", "--host", HOST, "--port", str(port), "--data-dir",
           str(tmp / "data"), "--log-level", "warning"]
    with pinned(SERVER_CPU), open(tmp / "server.log", "wb") as server_log:
        proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=server_log,
                                start_new_session=True)
    try:
        if not wait_http_ok(proc, HOST, port, "/lamina/v1/health", 30):
            raise BenchError(f"lamina serve did not start: {(tmp / 'server.log').read_text()[-2000:]}")
        client = boto3.client("lambda", endpoint_url=f"http://{HOST}:{port}", region_name="us-east-1",
                              aws_access_key_id="x", aws_secret_access_key="x",
                              config=Config(retries={"total_max_attempts": 1}))
        name = "bench-async"
        client.create_function(FunctionName=name, Runtime="python3.11", Role=ROLE, Handler="app.handler",
                               Code={"ZipFile": make_zip({"app.py": HANDLER})}, MemorySize=1024)
        client.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 0.5, "MaxAttempts": 120})
        script = tmp / "event.lua"
        script.write_text(WRK_SCRIPT)
        path = f"/2015-03-31/functions/{name}/invocations"
        pin_tree(proc.pid, SERVER_CPU, WRK_CPU)
        log("warm-up 2 s ...")
        wrk(port, path, 2, args.connections, script)
        wait_drained(port)
        pin_tree(proc.pid, SERVER_CPU, WRK_CPU)   # environments started during the warm-up
        before = health(port)
        cpu0, proc0 = thread_cpu(proc.pid), cpu_seconds(proc.pid)
        log(f"wrk -t1 -c{args.connections} -d{args.duration:g}s (Event invokes) ...")
        lamina = wrk(port, path, args.duration, args.connections, script)
        cpu1, proc1 = thread_cpu(proc.pid), cpu_seconds(proc.pid)
        after = health(port)
        if lamina["non_2xx"]:
            raise BenchError(f"{lamina['non_2xx']} Event invokes were not accepted")
        commits = max(1, after["commits"] - before["commits"])
        accepted = after["accepted"] - before["accepted"]
        ran = after["succeeded"] - before["succeeded"]
        cpu_during = cpu_per_event(cpu0, cpu1, accepted)
        cpu_during["process_us"] = round((proc1 - proc0) / max(1, accepted) * 1e6, 1)
        per_commit = max(1, round(accepted / commits))
        log("waiting for the queue to drain ...")
        t0 = time.perf_counter()
        wait_drained(port)
        drain_s = time.perf_counter() - t0
        # Everything an accepted event cost the server, its run included (the backlog drained after the wrk run).
        cpu_all = cpu_per_event(cpu0, thread_cpu(proc.pid), accepted)
        log(f"baseline: bare SQLite loop, {per_commit} row(s) per commit, then 1 per commit ...")
        with pinned(SERVER_CPU):
            base, _ = sqlite_baseline(tmp / "baseline.db", per_commit, args.duration)
            single, single_ms = sqlite_baseline(tmp / "baseline1.db", 1, min(args.duration, 3.0))
        log(f"{args.n} sequential Event invokes ...")
        sequential(port, name, 50)   # warm
        latencies, accepted_at = sequential(port, name, args.n)
        dry = dry_runs(port, name, min(args.n, 500))
        wait_drained(port)
        started = starts(port, name)
        to_start = [(started[m] - t) * 1e3 for m, t in accepted_at.items() if m in started]
        if len(to_start) < len(accepted_at):
            raise BenchError(f"{len(accepted_at) - len(to_start)} sequential events never started")
        return {
            "accepted_per_s": round(accepted / args.duration if accepted else lamina["rps"]),
            "wrk": lamina,
            "events_per_commit": round(accepted / commits, 1),
            "ran_during_per_s": round(ran / args.duration),
            "backlog_after": after["depth"],
            "drain_s": round(drain_s, 2),
            # Every event accepted during the run had run once the drain was over: accepted and run per second.
            "accepted_and_run_per_s": round(accepted / (args.duration + drain_s)) if accepted else 0,
            "saturated_windows": (after.get("saturated_windows") or 0) - (before.get("saturated_windows") or 0),
            "baseline_single_row_commit_p50_ms": round(single_ms, 3),
            "baseline_rows_per_s": round(base),
            "baseline_rows_per_commit": per_commit,
            "baseline_single_row_commits_per_s": round(single),
            "ratio": round((accepted / args.duration) / base, 3) if base else None,
            "latency_202_ms": {"p50": round(statistics.median(latencies), 3), "p99": round(pct(latencies, 99), 3)},
            "latency_dry_run_ms": {"p50": round(statistics.median(dry), 3), "p99": round(pct(dry, 99), 3)},
            "accepted_to_start_ms": {"p50": round(statistics.median(to_start), 3), "p99": round(pct(to_start, 99), 3)},
            "durability": after["durability"],
            "server_cpu_per_event_us": {"during_run": cpu_during, "with_drain": cpu_all},
        }
    finally:
        stop_process(proc)
        shutil.rmtree(tmp, ignore_errors=True)


def report(r: dict[str, Any]) -> None:
    w = r["wrk"]
    print(f"accepted Event invokes/s (32 keep-alive clients, durability {r['durability']}): {r['accepted_per_s']:,}"
          f"  (wrk p50 {w['p50_ms']} ms, p99 {w['p99_ms']} ms; {r['events_per_commit']} events per commit)")
    print(f"events run meanwhile: {r['ran_during_per_s']:,}/s; {r['backlog_after']:,} queued at the end of the run, "
          f"drained in {r['drain_s']} s (accepting came first in {r['saturated_windows']} of the run's 20 ms windows: "
          f"the backlog lags while accepts saturate the server's core); accepted and run: "
          f"{r['accepted_and_run_per_s']:,}/s (the run's accepts over the run and the drain)")
    print(f"baseline: bare SQLite insert+commit loop, {r['baseline_rows_per_commit']} row(s) per commit: "
          f"{r['baseline_rows_per_s']:,} rows/s  (1 row per commit: {r['baseline_single_row_commits_per_s']:,}/s, "
          f"p50 {r['baseline_single_row_commit_p50_ms']} ms a commit)")
    print(f"ratio Lamina / baseline: {r['ratio']}x")
    c, a = r["server_cpu_per_event_us"]["during_run"], r["server_cpu_per_event_us"]["with_drain"]
    print(f"server CPU per accepted event: {c['total_us']} us during the wrk run (event loop {c['main_us']}, other "
          f"threads {c['other_threads_us']}, the busiest of them {c['busiest_thread_us']}); {a['total_us']} us "
          f"with the backlog's drain after it (loop {a['main_us']}, other threads {a['other_threads_us']})")
    lat, st = r["latency_202_ms"], r["accepted_to_start_ms"]
    dry = r["latency_dry_run_ms"]
    print(f"202 latency, one client: p50 {lat['p50']} ms, p99 {lat['p99']} ms  (DryRun, the same request answered "
          f"without the queue: p50 {dry['p50']} ms, p99 {dry['p99']} ms)")
    print(f"accepted -> handler start (warm): p50 {st['p50']} ms, p99 {st['p99']} ms")

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"
    print(f"target: >= 10,000 accepted/s — {verdict(r['accepted_per_s'] >= 10_000)}")
    print(f"target: >= 0.5x the baseline — {verdict((r['ratio'] or 0) >= 0.5)}")
    print(f"target: 202 p50 <= 1 ms — {verdict(lat['p50'] <= 1.0)}")
    print(f"target: accepted -> handler start p50 <= 2 ms — {verdict(st['p50'] <= 2.0)}, "
          f"p99 <= 20 ms — {verdict(st['p99'] <= 20.0)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    return run_and_report(lambda: measure(args), lambda r: r, report, args.json, log, BenchError)


if __name__ == "__main__":
    sys.exit(main())
