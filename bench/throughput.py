#!/usr/bin/env python3
"""Hello-world throughput through Lamina function URLs, against a bare uvicorn + httptools server.

    .venv/bin/python bench/throughput.py [--rounds 5] [--duration 5] [--connections 32] [--json]
    .venv/bin/python bench/throughput.py --metrics-cost [--rounds 11] [--duration 4] [--aa]

Needs `wrk` (Debian/Ubuntu: `apt-get install -y wrk`) and `taskset`, and at least 2 CPUs. wrk runs
pinned to CPU 1 (`wrk -t1 -cC -dDs`); every server process runs pinned to CPU 0, in the same run:

  baseline  a raw ASGI hello world under uvicorn with httptools and uvloop, no access log (this file
            run with --baseline-server PORT)
  handler   a fresh `lamina serve` (free port, temporary data dir) with a python3.11 handler function
            returning "Hello, world!", reached through its function URL
            (GET /lamina/v1/url/<url-id>/)
  http-app  the same server with an HTTP-app function (AWS_LAMBDA_EXEC_WRAPPER=/opt/bootstrap, run.sh
            starting the same ASGI app under uvicorn shipped in the zip), through its function URL

Where the function environments run. The baseline does all of its work in one process on CPU 0; Lamina
does its own (the HTTP front door, dispatch, logs: the part that compares with uvicorn) in its server
process, and the function's work (decode the event, run the handler, encode the result) in a separate
environment process per concurrent request — the work AWS runs on Lambda's own hosts, not on the front
door's. So the handler is measured twice:

  handler          server on CPU 0, environments on CPU 1 beside wrk: Lamina's data plane gets one core,
                   as uvicorn does (the environments even compete with wrk). The target is judged here.
  handler 1 core   server and environments all on CPU 0: the whole platform on one core (for reference:
                   it also pays the handler's own work and two process switches per request).

The baseline and the handler row alternate --rounds times (both servers run throughout, each idle while the
other is measured): each row is the median of its runs and the target is judged on the median of the
round-by-round ratios, so a slow spell of the machine costs both sides of a ratio alike. The other rows run once.

--metrics-cost measures what Prometheus metrics cost instead: two `lamina serve` processes with the same handler
function, one with metrics on (LAMINA_METRICS=true, /metrics scraped every second while wrk runs: sixty times
Prometheus's default rate) and one with them off (nothing counted per invocation), interleaved --rounds times (the
order swapped every round: off-on, on-off, ...); the figure is the median of the round-by-round ratios of
handler-URL req/s, on / off (the limit: at most 3 % lower), with its spread (min, quartiles, max) and a
distribution-free confidence interval of the median (order statistics): PASS only if the whole interval is at or
above 0.97, FAIL if it is wholly below, else INCONCLUSIVE. The same for server CPU per request, off / on. --aa runs
both servers with metrics off (an A/A control): its ratios show the method's own noise and bias on this machine.
It also measures what metrics add part by part (`components`): the server CPU of one /metrics scrape and of the one
thing counted per invocation, as a share of the server's CPU per request at the measured rate; on a CPU-bound
server that share bounds the throughput cost, and it does not drift with the machine's load as req/s does.
Before the servers start, the CPUs' background load is sampled for 2 s, and every run reports the CPU time spent on
CPUs 0-1 by anything but the server, wrk and this script (other processes, kernel softirq): with background load
above 5 % the report says the machine is too busy for its figure to be quoted.

Each row also reports CPU time per request from /proc (utime + stime over the timed run, divided by
wrk's request count): the server process alone and its descendants (zygote, environments). That figure
is less sensitive to other load on the machine than req/s is, and `server core ratio` =
baseline CPU/request / Lamina server CPU/request is what one core of each would serve. Each row is warmed
up for 2 s before its (first) timed wrk run. Only prints figures: exit status is 0 whether the target is met or
not, 1 if a server fails, wrk is missing or a response is not a 200.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import importlib.metadata
import io
import math
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _common import (
    CLK_TCK,
    cpu_seconds,
    free_port,
    missing_cpus,
    pin_tree,
    pinned,
    process_tree,
    run_and_report,
    server_failures,
    stop_process,
    tree_cpu_seconds,
    wait_http_ok,
)
from invoke import ROLE, BenchError, boto3_client, lamina_server, log, read_log, server_info

HOST = "127.0.0.1"
SERVER_CPU = 0
WRK_CPU = 1
TARGET_RATIO = 0.5
HELLO = b"Hello, world!"

HANDLER_SRC = """\
def handler(event, context):
    return {"statusCode": 200, "headers": {"content-type": "text/plain"}, "body": "Hello, world!"}
"""

# The same raw ASGI app the baseline runs, shipped in the HTTP-app function's zip.
ASGI_SRC = """\
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"Hello, world!"})
"""

RUN_SH = """\
#!/bin/sh
export PYTHONPATH="$LAMBDA_TASK_ROOT"
exec python3 -m uvicorn --host 127.0.0.1 --port "$AWS_LWA_PORT" --no-access-log --log-level warning app:app
"""

URL_ID = re.compile(r"^https?://([a-z0-9]+)\.")
BUSY_LIMIT = 0.05   # background load on the bench's CPUs above which figures are not to be quoted


# --------------------------------------------------------------------------- baseline server


def run_baseline_server(port: int) -> None:
    import uvicorn

    namespace: dict[str, Any] = {}
    exec(ASGI_SRC, namespace)  # the very app the HTTP-app function runs
    uvicorn.run(
        namespace["app"], host=HOST, port=port, http="httptools", loop="uvloop", access_log=False, log_level="warning"
    )


@contextlib.contextmanager
def baseline_server(startup_timeout: float) -> Iterator[tuple[int, int]]:
    port = free_port(HOST)
    with pinned(SERVER_CPU):
        proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--baseline-server", str(port)], start_new_session=True
        )
    try:
        if not wait_http_ok(proc, HOST, port, "/", startup_timeout):
            raise BenchError(f"baseline server did not start (exit {proc.poll()})")
        yield proc.pid, port
    finally:
        stop_process(proc, grace=5)


# --------------------------------------------------------------------------- functions


def _installed_files(*dists: str) -> dict[str, bytes]:
    """The installed files of these distributions, to ship in a function zip (as pip --target would)."""
    files: dict[str, bytes] = {}
    for name in dists:
        dist = importlib.metadata.distribution(name)
        for rel in dist.files or []:
            path = str(rel)
            if path.startswith("..") or ".dist-info/" in path or "__pycache__" in path or path.startswith("bin/"):
                continue
            files[path] = Path(dist.locate_file(rel)).read_bytes()
    return files


def make_zip(files: dict[str, str | bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, content in files.items():
            info = zipfile.ZipInfo(path, date_time=(2024, 1, 1, 0, 0, 0))
            info.external_attr = (0o100755 if path.endswith(".sh") else 0o100644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, content.encode() if isinstance(content, str) else content)
    return buf.getvalue()


def deploy_url(client: Any, name: str, code: bytes, **config: Any) -> str:
    """Create the function and a NONE-auth function URL; return the path form of the URL."""
    client.create_function(FunctionName=name, Role=ROLE, Code={"ZipFile": code}, Timeout=30, **config)
    client.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    url = client.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"]
    m = URL_ID.match(url)
    if not m:
        raise BenchError(f"unexpected FunctionUrl {url!r}")
    return f"/lamina/v1/url/{m.group(1)}/"


def check_hello(what: str, port: int, path: str) -> None:
    conn = http.client.HTTPConnection(HOST, port, timeout=60)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    if resp.status != 200 or body != HELLO:
        raise BenchError(f"{what}: GET {path}: HTTP {resp.status}: {body[:1000]!r}")


# --------------------------------------------------------------------------- wrk


def wrk(port: int, path: str, duration: float, connections: int) -> dict[str, Any]:
    cmd = ["taskset", "-c", str(WRK_CPU), "wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency"]
    proc = subprocess.run([*cmd, f"http://{HOST}:{port}{path}"], capture_output=True, text=True, timeout=duration + 60)
    out = proc.stdout
    if proc.returncode != 0 or "Requests/sec:" not in out:
        raise BenchError(f"wrk failed (exit {proc.returncode}): {out}{proc.stderr}")

    def ms(text: str) -> float:
        m = re.match(r"([\d.]+)(us|ms|s)", text)
        if not m:
            return float("nan")
        return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]

    result: dict[str, Any] = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    total = re.search(r"(\d+) requests in", out)
    result["requests"] = int(total.group(1)) if total else None
    for p in ("50", "99"):
        m = re.search(rf"^\s+{p}(?:\.000)?%\s+(\S+)", out, re.M)
        result[f"p{p}_ms"] = round(ms(m.group(1)), 3) if m else None
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non_2xx"] = int(non2xx.group(1)) if non2xx else 0
    errors = re.search(r"Socket errors: (.*)", out)
    result["socket_errors"] = errors.group(1).strip() if errors else ""
    return result


def run_wrk(what: str, port: int, path: str, args: argparse.Namespace, tree_pid: int,
            env_cpu: int = SERVER_CPU, warm_up: bool = True) -> dict[str, Any]:
    """wrk against one server whose own process is on SERVER_CPU and whose descendants are on env_cpu."""
    pin_tree(tree_pid, SERVER_CPU, env_cpu)
    if warm_up:
        check_hello(what, port, path)
        log(f"{what}: warm-up 2 s ...")
        wrk(port, path, 2, args.connections)
        pin_tree(tree_pid, SERVER_CPU, env_cpu)  # environments started during the warm-up
    log(f"{what}: wrk -t1 -c{args.connections} -d{args.duration:g}s ...")
    cpus = sorted({SERVER_CPU, env_cpu, WRK_CPU})
    own0, all0, busy0, mine0 = cpu_seconds(tree_pid), tree_cpu_seconds(tree_pid), busy_seconds(cpus), my_seconds()
    result = wrk(port, path, args.duration, args.connections)
    own1, all1, busy1, mine1 = cpu_seconds(tree_pid), tree_cpu_seconds(tree_pid), busy_seconds(cpus), my_seconds()
    # What else ran on the bench's CPUs meanwhile: their busy time less the server's tree, wrk and this script.
    other = (busy1 - busy0) - (all1 - all0) - (mine1 - mine0)
    result["other_cpu_share"] = round(max(0.0, other) / (args.duration * len(cpus)), 4)
    if result["non_2xx"]:
        log(f"warning: {what}: {result['non_2xx']} responses were not 2xx/3xx")
    n = result["requests"] or 1
    result["server_us_per_request"] = round((own1 - own0) / n * 1e6, 1)
    # Descendants that exited during the run are missed (none should: environments are kept warm).
    result["env_us_per_request"] = round(max(0.0, (all1 - all0) - (own1 - own0)) / n * 1e6, 1)
    allowed: set[int] = set()
    procs = process_tree(tree_pid)
    for p in procs:
        with contextlib.suppress(OSError):
            allowed |= os.sched_getaffinity(p)
    result["server_processes"] = len(procs)
    result["server_cpus"] = sorted(allowed)
    result["env_cpu"] = env_cpu
    if allowed != {SERVER_CPU, env_cpu}:
        log(f"warning: {what}: the server's processes may run on CPUs {sorted(allowed)}, "
            f"not only {sorted({SERVER_CPU, env_cpu})}")
    return result


def busy_seconds(cpus: list[int]) -> float:
    """CPU time these CPUs spent busy (user, nice, system, irq, softirq, steal) since boot, from /proc/stat."""
    total = 0
    with open("/proc/stat") as fh:
        for line in fh:
            name, *fields = line.split()
            if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
                user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
                total += user + nice + system + irq + softirq + steal
    return total / CLK_TCK


def my_seconds() -> float:
    """CPU time of this script and of its reaped children (wrk runs)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def background_load(seconds: float = 2.0) -> float:
    """The share of CPUs SERVER_CPU and WRK_CPU kept busy by others while this script only waits."""
    import time

    cpus = sorted({SERVER_CPU, WRK_CPU})
    busy0, mine0 = busy_seconds(cpus), my_seconds()
    time.sleep(seconds)
    return round(max(0.0, busy_seconds(cpus) - busy0 - (my_seconds() - mine0)) / (seconds * len(cpus)), 4)


def spread(values: list[float], level: float = 0.95) -> dict[str, Any]:
    """Median, quartiles and range of round-by-round ratios, and a distribution-free confidence interval of the
    median: the order statistics x(k) and x(n+1-k) for the largest k whose binomial(n, 1/2) coverage is >= level
    (for n < 6 no k reaches 95 %: the interval is the whole range, with the coverage it has)."""
    xs = sorted(values)
    n = len(xs)
    q1, _, q3 = statistics.quantiles(xs, n=4, method="inclusive") if n > 1 else (xs[0], xs[0], xs[0])

    def coverage(k: int) -> float:   # P(x(k) <= median <= x(n+1-k))
        return 1 - 2 * sum(math.comb(n, i) for i in range(k)) / 2 ** n

    k = 1
    while k + 1 <= (n + 1) // 2 and coverage(k + 1) >= level:
        k += 1
    return {"median": round(statistics.median(xs), 4), "min": round(xs[0], 4), "q1": round(q1, 4),
            "q3": round(q3, 4), "max": round(xs[-1], 4), "ci_low": round(xs[k - 1], 4), "ci_high": round(xs[n - k], 4),
            "ci_coverage": round(coverage(k), 4), "n": n}


# --------------------------------------------------------------------------- measurement


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from several runs of it: the median of each figure, the sum of the counts, and the runs."""
    row = dict(runs[len(runs) // 2])
    for key in ("rps", "p50_ms", "p99_ms", "server_us_per_request", "env_us_per_request"):
        values = [r[key] for r in runs if r.get(key) is not None]
        row[key] = round(statistics.median(values), 3) if values else None
    for key in ("requests", "non_2xx"):
        row[key] = sum(r[key] or 0 for r in runs)
    row["socket_errors"] = "; ".join(r["socket_errors"] for r in runs if r["socket_errors"])
    row["runs"] = [{k: r[k] for k in ("rps", "server_us_per_request", "env_us_per_request")} for r in runs]
    return row


def measure(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    log("baseline: uvicorn + httptools ...")
    with baseline_server(args.startup_timeout) as (base_pid, base_port), pinned(SERVER_CPU), \
            lamina_server(args.startup_timeout) as (proc, port, log_path), \
            server_failures(proc, lambda: read_log(log_path), BenchError):
        results["server"] = server_info(port)
        client = boto3_client(port)
        log("deploying the handler function ...")
        handler_path = deploy_url(
            client,
            "bench-hello",
            make_zip({"app.py": HANDLER_SRC}),
            Runtime="python3.11",
            Handler="app.handler",
            MemorySize=128,
        )
        log("deploying the HTTP-app function ...")
        files: dict[str, str | bytes] = {}
        files.update(_installed_files("uvicorn", "h11", "click", "httptools"))
        files.update({"app.py": ASGI_SRC, "run.sh": RUN_SH})
        app_path = deploy_url(
            client,
            "bench-hello-app",
            make_zip(files),
            Runtime="python3.11",
            Handler="run.sh",
            MemorySize=512,
            Environment={"Variables": {"AWS_LAMBDA_EXEC_WRAPPER": "/opt/bootstrap", "AWS_LWA_PORT": "8000"}},
        )
        # The baseline and the handler row alternate, --rounds times each: every handler run has a baseline run
        # just before it, so a slow spell of the machine (other load, this VM's host) costs both alike. The
        # rows are the medians; the target is judged on the median of the per-round ratios.
        base_runs, handler_runs = [], []
        for i in range(args.rounds):
            what = f" (round {i + 1}/{args.rounds})" if args.rounds > 1 else ""
            base_runs.append(run_wrk("baseline" + what, base_port, "/", args, base_pid, warm_up=i == 0))
            handler_runs.append(run_wrk("handler function URL" + what, port, handler_path, args, proc.pid, WRK_CPU,
                                        warm_up=i == 0))
        results["baseline"] = median_run(base_runs)
        results["handler"] = median_run(handler_runs)
        results["round_ratios"] = [round(h["rps"] / b["rps"], 4) for b, h in zip(base_runs, handler_runs, strict=True)]
        results["handler_1core"] = run_wrk("handler function URL, 1 core", port, handler_path, args, proc.pid)
        results["http_app"] = run_wrk("HTTP-app function URL", port, app_path, args, proc.pid, WRK_CPU)
    return results


@contextlib.contextmanager
def lamina_with(env: dict[str, str], startup_timeout: float) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    """lamina_server with these LAMINA_* settings in its environment."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with lamina_server(startup_timeout) as server:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            yield server
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def scraping(port: int, interval_s: float) -> Iterator[list[int]]:
    """GET /metrics every interval_s in a thread for the block; yields the list of response sizes."""
    import threading

    sizes: list[int] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval_s):
            conn = http.client.HTTPConnection(HOST, port, timeout=10)
            try:
                conn.request("GET", "/metrics")
                resp = conn.getresponse()
                body = resp.read()
                if resp.status != 200:
                    raise BenchError(f"/metrics: HTTP {resp.status}")
                sizes.append(len(body))
            finally:
                conn.close()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield sizes
    finally:
        stop.set()
        thread.join()


def measure_metrics_cost(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"background_load": background_load()}
    log(f"background load on CPUs {SERVER_CPU},{WRK_CPU} before the servers start: "
        f"{results['background_load'] * 100:.1f} %")
    # The side under test ("on"): metrics on and scraped, or, for the A/A control, a second server with them off.
    on_env = {"LAMINA_METRICS": "false" if args.aa else "true"}
    on_label = "B: metrics off too (A/A)" if args.aa else "metrics on, scraped every 1 s"
    with pinned(SERVER_CPU), lamina_with(on_env, args.startup_timeout) as (on, on_port, on_log), \
            lamina_with({"LAMINA_METRICS": "false"}, args.startup_timeout) as (off, off_port, off_log), \
            server_failures(on, lambda: read_log(on_log), BenchError), \
            server_failures(off, lambda: read_log(off_log), BenchError):
        results["server"] = server_info(on_port)
        paths = {}
        for what, port in (("on", on_port), ("off", off_port)):
            log(f"server {what}: deploying the handler function ...")
            paths[what] = deploy_url(boto3_client(port), "bench-hello", make_zip({"app.py": HANDLER_SRC}),
                                     Runtime="python3.11", Handler="app.handler", MemorySize=128)
        on_runs, off_runs, scrapes = [], [], []
        scrape_bytes: int | None = None
        for i in range(args.rounds):
            what = f" (round {i + 1}/{args.rounds})" if args.rounds > 1 else ""
            # Which side goes first alternates too: a machine getting busier or quieter costs both alike.
            for side in (("off", "on") if i % 2 == 0 else ("on", "off")):
                if side == "off":
                    off_runs.append(run_wrk("metrics off" + what, off_port, paths["off"], args, off.pid, WRK_CPU,
                                            warm_up=i == 0))
                    continue
                if args.aa:
                    on_runs.append(run_wrk(on_label + what, on_port, paths["on"], args, on.pid, WRK_CPU,
                                           warm_up=i == 0))
                    continue
                with scraping(on_port, 1.0) as sizes:
                    on_runs.append(run_wrk(on_label + what, on_port, paths["on"], args, on.pid, WRK_CPU,
                                           warm_up=i == 0))
                scrapes.append(len(sizes))
                scrape_bytes = sizes[-1] if sizes else scrape_bytes
        results["metrics_on"] = median_run(on_runs)
        results["metrics_off"] = median_run(off_runs)
        for key, runs in (("metrics_on", on_runs), ("metrics_off", off_runs)):
            results[key]["other_cpu_share"] = statistics.median(r["other_cpu_share"] for r in runs)
        results["round_ratios"] = [round(a["rps"] / b["rps"], 4) for a, b in zip(on_runs, off_runs, strict=True)]
        # Server CPU per request, off / on: less sensitive to other load on the machine than req/s.
        results["cpu_ratios"] = [round(b["server_us_per_request"] / a["server_us_per_request"], 4)
                                 for a, b in zip(on_runs, off_runs, strict=True) if a["server_us_per_request"]]
        results["other_cpu_share_by_round"] = [round(max(a["other_cpu_share"], b["other_cpu_share"]), 4)
                                               for a, b in zip(on_runs, off_runs, strict=True)]
        results["scrapes_per_round"] = scrapes
        results["scrape_bytes"] = scrape_bytes
        results["on_label"] = on_label
        if not args.aa:
            results["components"] = metrics_components(on_port, on.pid, results["metrics_on"])
    return results


def metrics_components(port: int, pid: int, on: dict[str, Any]) -> dict[str, float]:
    """What metrics add, part by part, measured directly rather than read off two noisy throughput figures: the
    server CPU one scrape takes (100 scrapes of the idle metrics-on server, from /proc) and the one thing counted
    per invocation (dispatch/pool.py calls FunctionStats.invoked once per invocation; timed in this process). Their
    share of the server's CPU per request at the rate measured bounds the throughput cost of a CPU-bound server."""
    from lamina.dispatch.stats import FunctionStats

    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        conn.getresponse().read()
        n = 100
        before = cpu_seconds(pid)
        for _ in range(n):
            conn.request("GET", "/metrics")
            conn.getresponse().read()
        scrape_ms = (cpu_seconds(pid) - before) / n * 1000
    finally:
        conn.close()
    stats = FunctionStats()
    count = 200_000
    t0 = time.process_time()
    for _ in range(count):
        stats.invoked(0.8, False)
    count_us = (time.process_time() - t0) / count * 1e6
    rps, per_request_us = on["rps"], on["server_us_per_request"]
    share = (count_us + scrape_ms * 1000 / max(rps, 1.0)) / per_request_us if per_request_us else float("nan")
    return {"scrape_cpu_ms": round(scrape_ms, 3), "count_us": round(count_us, 3), "cpu_share": round(share, 5)}


def summarize_metrics_cost(results: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    rps, cpu = spread(results["round_ratios"]), spread(results["cpu_ratios"])
    limit = 0.97
    if rps["ci_low"] >= limit:
        verdict = "PASS"
    elif rps["ci_high"] < limit:
        verdict = "FAIL"
    else:
        verdict = "INCONCLUSIVE"
    busy = results["background_load"] > BUSY_LIMIT
    return {**results, "rps_ratio": rps, "cpu_ratio": cpu, "rounds": args.rounds, "duration_s": args.duration,
            "connections": args.connections, "aa": args.aa, "busy_machine": busy,
            "target": {"metric": "metrics-on rps / metrics-off rps (median over rounds, with its CI)", "limit": limit,
                       "value": rps["median"], "verdict": "A/A control" if args.aa else verdict,
                       "pass": None if args.aa or verdict == "INCONCLUSIVE" else verdict == "PASS",
                       "quotable": not busy}}


def _spread_text(s: dict[str, Any]) -> str:
    return (f"median {s['median']:.3f}, {s['ci_coverage'] * 100:.0f} % CI [{s['ci_low']:.3f}, {s['ci_high']:.3f}], "
            f"quartiles {s['q1']:.3f}-{s['q3']:.3f}, range {s['min']:.3f}-{s['max']:.3f} ({s['n']} rounds)")


def print_metrics_cost(s: dict[str, Any]) -> None:
    print(f"Metrics cost{' — A/A control' if s['aa'] else ''} — handler function URL, wrk -t1 -c{s['connections']} "
          f"-d{s['duration_s']:g}s on CPU {WRK_CPU}, servers on CPU {SERVER_CPU}, environments on CPU {WRK_CPU}; "
          f"{s['rounds']} interleaved rounds (order swapped each round), rows are medians")
    for key, label in (("metrics_off", "metrics off"), ("metrics_on", s["on_label"])):
        r = s[key]
        print(f"  {label:40s} {r['rps']:9.0f} req/s  p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms  "
              f"server {r['server_us_per_request']:.1f} us/req  non-2xx {r['non_2xx']}  "
              f"other CPU {r['other_cpu_share'] * 100:.1f} %")
    print("on / off req/s, round by round: " + ", ".join(f"{x:.3f}" for x in s["round_ratios"]))
    print(f"  {_spread_text(s['rps_ratio'])}")
    print("off / on server CPU per request, round by round: " + ", ".join(f"{x:.3f}" for x in s["cpu_ratios"]))
    print(f"  {_spread_text(s['cpu_ratio'])}")
    print("other CPU on the bench's CPUs, round by round (the busier side): "
          + ", ".join(f"{x * 100:.1f} %" for x in s["other_cpu_share_by_round"]))
    if not s["aa"]:
        print(f"scrapes per round: {s['scrapes_per_round']}; last scrape {s['scrape_bytes']} bytes")
        c = s["components"]
        print(f"components: a scrape costs {c['scrape_cpu_ms']:.2f} ms of server CPU (once a second), counting an "
              f"invocation {c['count_us']:.2f} us: {c['cpu_share'] * 100:.2f} % of the server's "
              f"{s['metrics_on']['server_us_per_request']:.0f} us of CPU per request at "
              f"{s['metrics_on']['rps']:.0f} req/s (target <= 3 %: {'met' if c['cpu_share'] <= 0.03 else 'not met'})")
    print(f"background load on CPUs {SERVER_CPU},{WRK_CPU} before the run: {s['background_load'] * 100:.1f} %"
          + (f" — BUSY MACHINE (> {BUSY_LIMIT * 100:.0f} %): do not quote these figures" if s["busy_machine"] else ""))
    t = s["target"]
    if s["aa"]:
        print(f"A/A control: two metrics-off servers; the ratio's distance from 1.000 and its spread are this "
              f"method's noise here ({t['value']:.3f}x)")
    else:
        print(f"target: metrics cost at most 3 % of handler-URL req/s — {t['verdict']} ({t['value']:.3f}x; "
              f"PASS needs the CI's low end >= {t['limit']})")


# --------------------------------------------------------------------------- report


def summarize(results: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    results = dict(results)
    server = results.pop("server", {})
    round_ratios = results.pop("round_ratios")
    base = results["baseline"]["rps"]
    ratios = {k: round(results[k]["rps"] / base, 4) for k in ("handler", "handler_1core", "http_app")}
    ratios["handler"] = round(statistics.median(round_ratios), 4)
    base_us = results["baseline"]["server_us_per_request"]
    core_ratios = {k: round(base_us / results[k]["server_us_per_request"], 4)
                   for k in ("handler", "handler_1core", "http_app") if results[k]["server_us_per_request"]}
    return {
        "server_core_ratios": core_ratios,
        "round_ratios": round_ratios,
        "rounds": args.rounds,
        "duration_s": args.duration,
        "connections": args.connections,
        "server": server,
        "results": results,
        "ratios_to_baseline": ratios,
        "target": {
            "metric": "handler rps / baseline rps (median over rounds)",
            "limit": TARGET_RATIO,
            "value": ratios["handler"],
            "pass": ratios["handler"] >= TARGET_RATIO and results["handler"]["non_2xx"] == 0,
        },
        "env": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()},
    }


ROWS = [
    ("baseline", "bare uvicorn + httptools"),
    ("handler", "handler function URL"),
    ("handler_1core", "handler function URL, 1 core"),
    ("http_app", "HTTP-app function URL"),
]


def print_report(s: dict[str, Any]) -> None:
    cols = ["server", "envs on", "req/s", "x baseline", "p50 ms", "p99 ms", "server us/req", "core ratio",
            "envs us/req", "non-2xx", "procs", "socket errors"]
    rows = []
    for key, label in ROWS:
        r = s["results"][key]
        ratio = s["server_core_ratios"].get(key)
        rows.append(
            [
                label,
                "-" if key == "baseline" else f"CPU {r['env_cpu']}",
                f"{r['rps']:.0f}",
                f"{s['ratios_to_baseline'][key] if key != 'baseline' else 1.0:.3f}",
                *(f"{r[k]:.2f}" if r[k] is not None else "-" for k in ("p50_ms", "p99_ms")),
                f"{r['server_us_per_request']:.1f}",
                "-" if key == "baseline" or ratio is None else f"{ratio:.3f}",
                "-" if key == "baseline" else f"{r['env_us_per_request']:.1f}",
                str(r["non_2xx"]),
                str(r["server_processes"]),
                r["socket_errors"] or "-",
            ]
        )
    widths = [max(len(x) for x in col) for col in zip(cols, *rows, strict=True)]
    print(
        f"Hello-world throughput — wrk -t1 -c{s['connections']} -d{s['duration_s']:g}s on CPU {WRK_CPU}, "
        f"server processes on CPU {SERVER_CPU}; baseline and handler rows: medians of {s['rounds']} alternating "
        "rounds"
    )
    for row in [cols, *rows]:
        cells = (x.ljust(w) if i in (0, 11) else x.rjust(w) for i, (x, w) in enumerate(zip(row, widths, strict=True)))
        print("  " + "  ".join(cells))
    srv = s["server"]
    print(
        f"server: lamina {srv.get('version', '?')}, sandbox {srv.get('sandbox', '?')} "
        f"(isolated: {srv.get('isolated', '?')}, scheduling: {srv.get('scheduling', '?')}); "
        f"host: {s['env']['cpus']} CPUs, Python {s['env']['python']}"
    )
    print("us/req: CPU time (utime + stime) per request; core ratio: baseline server us/req / this server us/req")
    if s["rounds"] > 1:
        print("handler / baseline req/s, round by round: " + ", ".join(f"{x:.3f}" for x in s["round_ratios"]))
    t = s["target"]
    verdict = "PASS" if t["pass"] else "FAIL"
    print(f"target: handler function URL (server on its own core) >= 0.5x bare uvicorn req/s — {verdict} "
          f"({t['value']:.3f}x; all on one core: {s['ratios_to_baseline']['handler_1core']:.3f}x)")


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=5.0, help="seconds of each timed wrk run (default 5)")
    p.add_argument("--rounds", type=int, default=5,
                   help="alternating baseline/handler runs; rows are their medians (default 5)")
    p.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON instead of a table")
    p.add_argument("--startup-timeout", type=float, default=20.0, help=argparse.SUPPRESS)
    p.add_argument("--baseline-server", type=int, metavar="PORT", help="internal: run the baseline server")
    p.add_argument("--metrics-cost", action="store_true",
                   help="measure handler-URL req/s with metrics on (scraped) against off, instead")
    p.add_argument("--aa", action="store_true",
                   help="with --metrics-cost: both servers with metrics off (an A/A control of the method's noise)")
    args = p.parse_args(argv)
    if args.duration <= 0 or args.connections < 1 or args.rounds < 1:
        p.error("--duration must be > 0, --connections and --rounds >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.baseline_server is not None:
        run_baseline_server(args.baseline_server)
        return 0
    missing = [tool for tool in ("wrk", "taskset") if shutil.which(tool) is None]
    if missing:
        log(f"benchmark failed: {' and '.join(missing)} not found (Debian/Ubuntu: apt-get install -y wrk util-linux)")
        return 1
    if (why := missing_cpus(SERVER_CPU, WRK_CPU)) is not None:
        log(f"benchmark failed: {why}")
        return 1

    if args.metrics_cost:
        return run_and_report(lambda: measure_metrics_cost(args), lambda results: summarize_metrics_cost(results, args),
                              print_metrics_cost, args.json, log, BenchError)
    return run_and_report(lambda: measure(args), lambda results: summarize(results, args), print_report, args.json,
                          log, BenchError)


if __name__ == "__main__":
    sys.exit(main())
