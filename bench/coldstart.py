#!/usr/bin/env python3
"""Cold-start latency of Lamina (zygote fork + full sandbox) against spawning a fresh python3 (or node).

    .venv/bin/python bench/coldstart.py [--runtime python3.11] [--n 100] [--warm 1000] [--baseline 20] [--idle 1000]
                                        [--json]

--runtime picks the function's runtime: any python3.X this host has (each version has its zygote on its own
interpreter; the baseline runs that interpreter), or a nodejsN.x. A Node.js function has no zygote: its cold start
takes the initialised spare environment its pool keeps (node_spare_environments), and a second server with no
spares (LAMINA_NODE_SPARE_ENVIRONMENTS=0) measures what a cold start costs without one (sandbox + node + init, the
`cold, no spare` row); the baseline is a fresh `node` importing the same module and calling the handler, with the
runtime's flags and plain (`node -e`). For Node.js the pause is 1000 ms by default (the spare taken by a round is
replaced in the background and must be ready again) and the idle phase is off (1,000 node processes do not fit).

Starts its own `lamina serve` on a free port with a temporary data dir and deploys, with boto3, a
Python function whose module imports json, asyncio, email and http.client and builds ~20 MB of
data at init (the zygote runs that once). Then, in the same run:

  cold      N rounds of: DELETE /lamina/v1/functions/NAME/environments (the zygote stays), a short
            pause so the teardown is off the measured path, then one timed invoke over a keep-alive
            http.client connection (raw POST .../invocations): a fresh environment forked from the
            zygote, through the whole sandbox, to the response. Also the server-reported
            `Restore Duration` of those environments (REPORT lines of the function's log).
  warm      M sequential invokes of the then warm environment, for reference.
  baseline  K runs of a fresh /usr/bin/python3 (the interpreter the sandbox runs; else this one)
            importing the same handler module from a code dir and calling handler({}, None) once,
            timed from spawn to the printed result: what a cold start costs without a snapshot.
  idle      a second server (per-request dispatch, as Lambda: one environment per waiting
            invocation) and the same code as a second function; fires N concurrent invokes
            (asyncio, one HTTP/1.1 connection each) that sleep long enough for N environments to
            exist and, while those sit idle, measures their count, the MemAvailable drop and each
            one's private memory (Private_Clean + Private_Dirty of its processes,
            /proc/<pid>/smaps_rollup) and cgroup memory usage; then stops them and checks that
            they go away.

Only prints figures: exit status is 0 whether the targets are met or not, 1 if a server fails or
a cold or warm invoke returns an error (failed invokes of the idle burst are counted and shown:
they mean that target is not met).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import glob
import http.client
import io
import json
import math
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from _common import Stats, process_tree, run_guarded, server_failures
from invoke import ROLE, BenchError, boto3_client, lamina_server, log, read_log, server_info

HOST = "127.0.0.1"
COLD_FUNCTION = "bench-cold"
IDLE_FUNCTION = "bench-idle"
PAYLOAD = b"{}"
# Cold start p50 >= this many times faster than the fresh-python3 baseline's p50, with the full sandbox. It also
# carries the "<= 10 ms": the baseline measured 101 ms where that was set (bench/README.md).
SPEEDUP_TARGET = 10.0
IDLE_TARGET = 1000

# Cold start p50 <= this fraction of a fresh node process's p50 (the Node.js runtimes' target).
NODE_FRACTION_TARGET = 0.5
DEFAULT_RUNTIME = "python3.11"

# The handler module: stdlib imports plus ~20 MB of Python objects built at init (the work a
# snapshot saves). CALLS counts invocations per environment: every fork starts from the zygote's 0,
# so `calls == 1` proves an invoke ran in a fresh environment.
HANDLER_SRC = """\
import asyncio
import email
import email.message
import email.parser
import http.client
import json
import time

DATA = [f"{i:010d}" * 5 for i in range(195_000)]  # 195,000 str of 50 chars + the list: ~20 MB
INDEX = json.dumps({"items": len(DATA), "first": DATA[0]})
CALLS = 0


def handler(event, context):
    global CALLS
    CALLS += 1
    if isinstance(event, dict) and event.get("sleep"):
        time.sleep(float(event["sleep"]))
    return {"calls": CALLS, "items": len(DATA), "loop": asyncio.__name__, "client": http.client.__name__}
"""

# Run by the baseline interpreter: import the handler from the code dir, call it once, print the result.
BASELINE_DRIVER = (
    "import json, sys\n"
    "sys.path.insert(0, sys.argv[1])\n"
    "import app\n"
    "print(json.dumps(app.handler({}, None)), flush=True)\n"
)


# The same for Node.js: built-in modules imported and ~20 MB of strings built at init.
NODE_HANDLER_SRC = """\
import { createHash } from 'node:crypto';
import http from 'node:http';
import zlib from 'node:zlib';

const DATA = Array.from({ length: 195000 }, (_, i) => String(i).padStart(10, '0').repeat(5));  // ~20 MB
const INDEX = JSON.stringify({ items: DATA.length, first: DATA[0] });
let CALLS = 0;

export const handler = async (event) => {
  CALLS += 1;
  if (event && event.sleep) await new Promise((resolve) => setTimeout(resolve, event.sleep * 1000));
  return { calls: CALLS, items: DATA.length, index: INDEX.length, http: typeof http.request,
           zlib: typeof zlib.gzipSync, hash: createHash('sha1').update('x').digest('hex').length };
};
"""

# Run by a fresh node: import the handler module from the code dir (argv[1]), call it once, print the result.
NODE_BASELINE_DRIVER = (
    "const { handler } = await import(process.argv[1] + '/index.mjs');\n"
    "console.log(JSON.stringify(await handler({}, {})));\n"
)


# --------------------------------------------------------------------------- small helpers


def is_node(runtime: str) -> bool:
    return runtime.startswith("nodejs")


def function_zip(runtime: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        if is_node(runtime):
            zf.writestr("index.mjs", NODE_HANDLER_SRC)
        else:
            zf.writestr("app.py", HANDLER_SRC)
    return buf.getvalue()


def deploy(client: Any, name: str, timeout_s: int, memory_mb: int, runtime: str, per_environment: bool = False) -> None:
    client.create_function(
        FunctionName=name,
        Runtime=runtime,
        # Opted out of the zygote's snapshot: init in each environment (runtime/snapshot.py).
        Environment={"Variables": {"LAMINA_INIT": "per-environment"} if per_environment else {}},
        Role=ROLE,
        Handler="index.handler" if is_node(runtime) else "app.handler",
        Code={"ZipFile": function_zip(runtime)},
        Timeout=timeout_s,
        MemorySize=memory_mb,
    )
    client.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 120})


def request(conn: http.client.HTTPConnection, method: str, path: str, body: bytes = b"") -> tuple[int, dict, bytes]:
    headers = {"Content-Type": "application/json"} if body else {}
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data


def check_result(what: str, status: int, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """The handler's result, or BenchError unless it is a 200 without a function error."""
    err = headers.get("x-amz-function-error")
    try:
        result = json.loads(body)
    except ValueError:
        result = None
    if status != 200 or err or not isinstance(result, dict) or "calls" not in result:
        raise BenchError(
            f"{what}: unexpected response: HTTP {status}"
            + (f", X-Amz-Function-Error: {err}" if err else "")
            + f"\n  headers: {headers}\n  body: {body[:2000]!r}"
        )
    return result


def describe_failure(status: int, headers: dict[str, str], body: bytes) -> str:
    """An invoke's failure without its request id, so that alike failures count together."""
    try:
        doc = json.loads(body)
        text = f"{doc.get('errorType')}: {doc.get('errorMessage')}" if isinstance(doc, dict) else str(doc)
    except ValueError:
        text = body[:200].decode(errors="replace")
    text = re.sub(r"RequestId: [0-9a-f-]{36} (Error: )?", "", text)
    return f"HTTP {status} {headers.get('x-amz-function-error', '')} {text}"[:200]


def health(port: int) -> dict[str, Any]:
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        status, _, body = request(conn, "GET", "/lamina/v1/health")
    finally:
        conn.close()
    if status != 200:
        raise BenchError(f"health: HTTP {status}: {body[:500]!r}")
    return json.loads(body)


def recycle(conn: http.client.HTTPConnection, name: str) -> int:
    status, _, body = request(conn, "DELETE", f"/lamina/v1/functions/{name}/environments")
    if status != 200:
        raise BenchError(f"DELETE environments of {name}: HTTP {status}: {body[:500]!r}")
    return int(json.loads(body).get("stopped", 0))


def wait_environments(port: int, want: int, timeout: float) -> tuple[int, float]:
    """Poll health until environments == want; (last count, seconds waited)."""
    t0 = time.monotonic()
    count = -1
    while True:
        count = int(health(port).get("environments", -1))
        if count == want or time.monotonic() - t0 > timeout:
            return count, time.monotonic() - t0
        time.sleep(0.05)


def log_records(port: int, name: str) -> list[dict[str, Any]]:
    conn = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        status, _, body = request(conn, "GET", f"/lamina/v1/functions/{name}/logs")
    finally:
        conn.close()
    if status != 200:
        raise BenchError(f"logs of {name}: HTTP {status}: {body[:500]!r}")
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def durations(records: list[dict[str, Any]], pattern: str) -> list[float]:
    rx = re.compile(pattern)
    out = []
    for r in records:
        m = rx.search(str(r.get("message", "")))
        if m:
            out.append(float(m.group(1)))
    return out


def pct(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile, as Stats."""
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)] if s else float("nan")


def mem_available_kb() -> int:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    raise BenchError("no MemAvailable in /proc/meminfo")


def private_kb(pid: int) -> int | None:
    """Private_Clean + Private_Dirty of one process (kB), from smaps_rollup."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            text = fh.read()
    except OSError:
        return None
    total = 0
    for line in text.splitlines():
        if line.startswith(("Private_Clean:", "Private_Dirty:")):
            total += int(line.split()[1])
    return total


def raise_fd_limit(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        want = need if hard == resource.RLIM_INFINITY else min(need, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


# --------------------------------------------------------------------------- environments on the host

ZYGOTE_GROUP = re.compile(r"-z[0-9a-f]{10}$")


def cgroup_bases(server_pid: int) -> list[str]:
    """This server's subtree in every cgroup hierarchy (v1 controllers, cgroup2)."""
    found = glob.glob(f"/sys/fs/cgroup/*/lamina/{server_pid}") + glob.glob(f"/sys/fs/cgroup/lamina/{server_pid}")
    return sorted(p for p in found if os.path.isdir(p))


def _groups(server_pid: int, function: str, zygotes: bool) -> dict[str, dict[str, Any]]:
    """The function's environment (or zygote) groups, linux backend: pids and cgroup memory usage, by name."""
    groups: dict[str, dict[str, Any]] = {}
    for base in cgroup_bases(server_pid):
        for d in glob.glob(f"{base}/{function}-*"):
            name = os.path.basename(d)
            if bool(ZYGOTE_GROUP.search(name)) != zygotes:
                continue
            g = groups.setdefault(name, {"pids": set(), "cgroup_bytes": None})
            with contextlib.suppress(OSError):
                g["pids"].update(int(p) for p in Path(d, "cgroup.procs").read_text().split())
            for f in ("memory.usage_in_bytes", "memory.current"):  # v1, v2
                with contextlib.suppress(OSError, ValueError):
                    g["cgroup_bytes"] = int(Path(d, f).read_text())
                    break
    return groups


def environment_groups(server_pid: int, function: str) -> dict[str, dict[str, Any]]:
    return _groups(server_pid, function, zygotes=False)


def zygote_groups(server_pid: int, function: str) -> dict[str, dict[str, Any]]:
    return _groups(server_pid, function, zygotes=True)


def process_environments(server_pid: int) -> dict[str, dict[str, Any]]:
    """Process backend: every environment is a fork (with its own session) of a zygote, a server child."""
    parents: dict[int, int] = {}
    for pid in process_tree(server_pid):
        with contextlib.suppress(OSError, ValueError, IndexError):
            raw = Path(f"/proc/{pid}/stat").read_text()
            parents[pid] = int(raw[raw.rindex(")") + 2 :].split()[1])
    zygotes = {p for p, pp in parents.items() if pp == server_pid}
    envs = {p for p, pp in parents.items() if pp in zygotes}
    groups: dict[str, dict[str, Any]] = {}
    for env in envs:
        groups[str(env)] = {"pids": set(process_tree(env)), "cgroup_bytes": None}
    return groups


# --------------------------------------------------------------------------- phases


def cold_and_warm(port: int, n: int, warm: int, pause_s: float) -> dict[str, Any]:
    path = f"/2015-03-31/functions/{COLD_FUNCTION}/invocations"
    conn = http.client.HTTPConnection(HOST, port, timeout=120)
    try:
        check_result("first invoke", *request(conn, "POST", path, PAYLOAD))
        samples = [0] * n
        not_cold = 0
        clock = time.perf_counter_ns
        log(f"cold: {n} rounds of DELETE environments, {pause_s * 1000:.0f} ms pause, one timed invoke ...")
        gc.collect()
        gc.disable()
        try:
            start = clock()
            for i in range(n):
                recycle(conn, COLD_FUNCTION)
                time.sleep(pause_s)
                t0 = clock()
                result = check_result(f"cold invoke {i}", *request(conn, "POST", path, PAYLOAD))
                samples[i] = clock() - t0
                not_cold += result["calls"] != 1
            wall = clock() - start
        finally:
            gc.enable()
        if not_cold:
            raise BenchError(f"cold: {not_cold} of {n} invokes were served by an environment that was not new")
        cold = Stats.from_ns(samples, wall)

        log(f"warm: {warm} sequential invokes ...")
        check_result("warm-up", *request(conn, "POST", path, PAYLOAD))
        wsamples = [0] * warm
        gc.collect()
        gc.disable()
        try:
            start = clock()
            for i in range(warm):
                t0 = clock()
                result = check_result(f"warm invoke {i}", *request(conn, "POST", path, PAYLOAD))
                wsamples[i] = clock() - t0
                if result["calls"] < 2:
                    raise BenchError(f"warm invoke {i} ran in a new environment")
            wwall = clock() - start
        finally:
            gc.enable()
        warm_stats = Stats.from_ns(wsamples, wwall) if warm else None
    finally:
        conn.close()

    records = log_records(port, COLD_FUNCTION)
    # What each new environment took to start, as its first REPORT says: Restore Duration (a fork of the zygote),
    # or Init Duration (a Node.js environment: process start and module load, done before its first invocation).
    restore = durations(records, r"^REPORT .*?\t(?:Restore|Init) Duration: ([\d.]+) ms")[-n:]
    init = durations(records, r"^INIT_REPORT Init Duration: ([\d.]+) ms")
    out: dict[str, Any] = {"cold": cold.as_dict(), "pause_ms": pause_s * 1000}
    out["restore_duration_ms"] = {
        "n": len(restore),
        "p50": round(pct(restore, 50), 3) if restore else None,
        "p99": round(pct(restore, 99), 3) if restore else None,
    }
    out["zygote_init_duration_ms"] = init[0] if init else None
    out["warm"] = warm_stats.as_dict() if warm_stats else None
    return out


def baseline_interpreter(server: dict[str, Any], runtime: str) -> str:
    """The interpreter the server runs the runtime on (health's runtimes), else this host's python3."""
    found = (server.get("runtimes") or {}).get("available", {}).get(runtime)
    if found:
        return str(found["executable"])
    if is_node(runtime):
        raise BenchError(f"the server has no interpreter for {runtime}: {server.get('runtimes')}")
    return "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable


def baseline(k: int, runtime: str, interpreter: str, memory_mb: int) -> dict[str, Any]:
    """Spawn a fresh interpreter that imports the handler and calls it once; time spawn -> result."""
    tmp = Path(tempfile.mkdtemp(prefix="lamina-bench-code-"))
    try:
        code = tmp / "code"
        code.mkdir()
        if is_node(runtime):
            (code / "index.mjs").write_text(NODE_HANDLER_SRC)
            # With the runtime's flags (environment.py), and plain `node -e` as a person would run it.
            new_space = memory_mb // 10
            flags = ["--expose-gc", "--max-http-header-size", "81920", f"--max-semi-space-size={new_space // 2}",
                     f"--max-old-space-size={memory_mb - new_space}"]
            variants = [("isolated", flags), ("plain", [])]
            driver = ["--input-type=module", "-e", NODE_BASELINE_DRIVER]
        else:
            (code / "app.py").write_text(HANDLER_SRC)
            # `-I -S` is how the sandbox starts its runtime; plain `python3` is how a person would.
            variants = [("isolated", ["-I", "-S"]), ("plain", [])]
            driver = ["-c", BASELINE_DRIVER]
        out: dict[str, Any] = {"python": interpreter, "runtime": runtime}
        for key, flags in variants:
            cmd = [interpreter, *flags, *driver, str(code)]
            log(f"baseline: {k} runs of {' '.join(cmd[:-3] + [cmd[-3], '<driver>', str(code)])} ...")
            samples = []
            for i in range(k + 1):  # the first run warms the page cache and writes __pycache__; not timed
                t0 = time.perf_counter_ns()
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp, env={})
                line = proc.stdout.readline() if proc.stdout else b""
                dt = time.perf_counter_ns() - t0
                _, err = proc.communicate()
                try:
                    result = json.loads(line)
                except ValueError:
                    result = None
                if proc.returncode != 0 or not isinstance(result, dict) or result.get("calls") != 1:
                    raise BenchError(f"baseline run failed (exit {proc.returncode}): {line!r} {err[-2000:]!r}")
                if i:
                    samples.append(dt)
            out[key] = Stats.from_ns(samples, sum(samples)).as_dict()
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


async def _invoke_async(port: int, path: str, body: bytes, timeout: float) -> tuple[int, dict[str, str], bytes]:
    """One invoke on its own HTTP/1.1 connection (Connection: close)."""

    async def go() -> tuple[int, dict[str, str], bytes]:
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            writer.write(
                (
                    f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                ).encode()
                + body
            )
            await writer.drain()
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            status = int(head[0].split()[1])
            headers = {}
            for line in head[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            if "content-length" in headers:
                data = await reader.readexactly(int(headers["content-length"]))
            else:
                data = await reader.read()
            return status, headers, data
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    return await asyncio.wait_for(go(), timeout)


async def _burst(
    port: int, n: int, sleep_s: float, timeout: float
) -> list[tuple[int, dict[str, str], bytes] | BaseException]:
    path = f"/2015-03-31/functions/{IDLE_FUNCTION}/invocations"
    body = json.dumps({"sleep": sleep_s}).encode()
    return await asyncio.gather(*(_invoke_async(port, path, body, timeout) for _ in range(n)), return_exceptions=True)


def idle_environments(
    port: int, server_pid: int, sandbox: str, n: int, sleep_s: float, memory_mb: int, runtime: str
) -> dict[str, Any]:
    client = boto3_client(port)
    log(f"idle: deploying {IDLE_FUNCTION} ...")
    deploy(client, IDLE_FUNCTION, timeout_s=int(sleep_s) + 120, memory_mb=memory_mb, runtime=runtime)
    # Deploying pre-warms one environment; stop it too so all N come from the burst.
    conn = http.client.HTTPConnection(HOST, port, timeout=60)
    try:
        recycle(conn, IDLE_FUNCTION)
    finally:
        conn.close()
    wait_environments(port, 0, 30)
    time.sleep(0.5)
    avail_before = mem_available_kb()
    zygote_before = [z["cgroup_bytes"] for z in zygote_groups(server_pid, IDLE_FUNCTION).values()]
    zygote_before_kb = sum(b for b in zygote_before if b is not None) // 1024 if zygote_before else None

    log(f"idle: {n} concurrent invokes (each sleeps {sleep_s:g} s, one connection each) ...")
    raise_fd_limit(n + 256)
    peak = [0]
    done = threading.Event()

    def watch() -> None:  # the highest environment count health reports during the burst
        while not done.wait(0.25):
            with contextlib.suppress(BenchError, OSError, ValueError, http.client.HTTPException):
                peak[0] = max(peak[0], int(health(port).get("environments", 0)))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    t0 = time.monotonic()
    try:
        results = asyncio.run(_burst(port, n, sleep_s, timeout=sleep_s + 300))
    finally:
        done.set()
        watcher.join()
    burst_s = time.monotonic() - t0
    # A failed invoke here is a result (the target is not met), not a failure of the benchmark.
    failures: Counter[str] = Counter()
    first_calls = 0
    for r in results:
        if isinstance(r, BaseException):
            failures[f"{type(r).__name__}: {r}"[:200]] += 1
            continue
        try:
            first_calls += check_result("burst invoke", *r)["calls"] == 1
        except BenchError:
            failures[describe_failure(*r)] += 1
    if failures:
        log(f"idle: {sum(failures.values())} of {n} invokes failed: {dict(failures.most_common(3))}")
    log(f"idle: burst done in {burst_s:.1f} s; measuring the idle environments ...")
    time.sleep(1.0)
    count = int(health(port).get("environments", -1))
    avail_idle = mem_available_kb()

    groups = environment_groups(server_pid, IDLE_FUNCTION) if sandbox == "linux" else process_environments(server_pid)
    per_env_kb: list[int] = []
    cgroup_kb: list[int] = []
    procs_per_env: list[int] = []
    for g in groups.values():
        sizes = [kb for p in g["pids"] if (kb := private_kb(p)) is not None]
        if not sizes:
            continue
        per_env_kb.append(sum(sizes))
        procs_per_env.append(len(sizes))
        if g["cgroup_bytes"] is not None:
            cgroup_kb.append(g["cgroup_bytes"] // 1024)
    zygotes = list(zygote_groups(server_pid, IDLE_FUNCTION).values()) if sandbox == "linux" else []
    zygote = [private_kb(p) for z in zygotes for p in z["pids"]]
    zygote_cgroup = [z["cgroup_bytes"] for z in zygotes if z["cgroup_bytes"] is not None]
    drop_kb = avail_before - avail_idle
    out: dict[str, Any] = {
        "requested": n,
        "memory_mb": memory_mb,
        "failed": sum(failures.values()),
        "failures": dict(failures.most_common(5)),
        "sleep_s": sleep_s,
        "burst_s": round(burst_s, 2),
        "invokes_in_new_environments": first_calls,
        "peak_environments": peak[0],
        "environments": count,
        "measured_environments": len(per_env_kb),
        "processes_per_environment": round(statistics.mean(procs_per_env), 2) if procs_per_env else None,
        "mem_available_before_mb": round(avail_before / 1024, 1),
        "mem_available_idle_mb": round(avail_idle / 1024, 1),
        "mem_available_drop_mb": round(drop_kb / 1024, 1),
        "mem_available_drop_per_env_kb": round(drop_kb / count, 1) if count > 0 else None,
        "private_per_env_kb": {
            "mean": round(statistics.mean(per_env_kb), 1) if per_env_kb else None,
            "p50": pct(per_env_kb, 50) if per_env_kb else None,
            "max": max(per_env_kb) if per_env_kb else None,
        },
        "cgroup_usage_per_env_kb": {
            "mean": round(statistics.mean(cgroup_kb), 1) if cgroup_kb else None,
            "p50": pct(cgroup_kb, 50) if cgroup_kb else None,
        },
        "zygote_private_kb": sum(z for z in zygote if z is not None) if zygote else None,
        # Pages the zygote writes after a fork are copied for it; the originals, now only the
        # environments', stay charged to the zygote's group: this grows with the environment count.
        "zygote_cgroup_usage_kb": sum(zygote_cgroup) // 1024 if zygote_cgroup else None,
        "zygote_cgroup_before_kb": zygote_before_kb,
    }
    mean_private = out["private_per_env_kb"]["mean"]
    out["projected_fit_by_private"] = int(avail_before / mean_private) if mean_private else None
    per_drop = out["mem_available_drop_per_env_kb"]
    out["projected_fit_by_mem_available_drop"] = int(avail_before / per_drop) if per_drop and per_drop > 0 else None

    log("idle: stopping them (DELETE environments) ...")
    conn = http.client.HTTPConnection(HOST, port, timeout=60)
    try:
        t0 = time.monotonic()
        out["stopped"] = recycle(conn, IDLE_FUNCTION)
    finally:
        conn.close()
    left, _ = wait_environments(port, 0, 120)
    gone_s = time.monotonic() - t0
    groups_left = len(environment_groups(server_pid, IDLE_FUNCTION)) if sandbox == "linux" else 0
    deadline = time.monotonic() + 30
    while groups_left and time.monotonic() < deadline:
        time.sleep(0.1)
        groups_left = len(environment_groups(server_pid, IDLE_FUNCTION))
    out["after_stop"] = {
        "environments": left,
        "cgroups_left": groups_left,
        "seconds": round(time.monotonic() - t0 if groups_left else gone_s, 2),
        "mem_available_mb": round(mem_available_kb() / 1024, 1),
    }
    return out


@contextlib.contextmanager
def server_settings(settings: dict[str, str]) -> Iterator[None]:
    """LAMINA_* settings for the servers started inside (they inherit this process's environment)."""
    saved = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def measure(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with lamina_server(args.startup_timeout) as (proc, port, log_path), \
            server_failures(proc, lambda: read_log(log_path), BenchError):
        results["server"] = server_info(port)
        sandbox = results["server"].get("sandbox", "?")
        if sandbox != "linux":
            log(
                f"note: the server runs the {sandbox!r} sandbox backend (the linux sandbox needs root): "
                "the figures are for that backend, not the full sandbox"
            )
        client = boto3_client(port)
        log(f"deploying {COLD_FUNCTION} ...")
        t0 = time.perf_counter()
        deploy(client, COLD_FUNCTION, timeout_s=30, memory_mb=args.memory, runtime=args.runtime,
               per_environment=args.init_per_environment)
        log(f"function active after {time.perf_counter() - t0:.2f}s")
        results.update(cold_and_warm(port, args.n, args.warm, args.pause_ms / 1000))

    if is_node(args.runtime) and args.no_spare > 0:
        # What a Node.js cold start costs without a spare: the sandbox, node's start and the module's init.
        settings = {"LAMINA_NODE_SPARE_ENVIRONMENTS": "0"}
        log(f"cold without a spare: a second server with {settings}")
        with server_settings(settings), lamina_server(args.startup_timeout) as (proc, port, log_path), \
                server_failures(proc, lambda: read_log(log_path), BenchError):
            deploy(boto3_client(port), COLD_FUNCTION, timeout_s=30, memory_mb=args.memory, runtime=args.runtime)
            results["cold_no_spare"] = cold_and_warm(port, args.no_spare, 0, 0.1)

    if args.idle > 0:
        # A server of its own: Lambda's one-environment-per-waiting-invocation dispatch (the default
        # queue mode would rather let the burst wait for environments that free up), and an account
        # budget that holds the burst (an inherited larger setting wins).
        budget = max(IDLE_TARGET, args.idle, int(os.environ.get("LAMINA_ACCOUNT_CONCURRENCY") or 0))
        settings = {"LAMINA_DISPATCH_MODE": "per-request", "LAMINA_ACCOUNT_CONCURRENCY": str(budget)}
        sleep_s = args.idle_sleep if args.idle_sleep is not None else 3.0 + args.idle / 100
        log(f"idle: a second server with {settings}")
        with server_settings(settings), lamina_server(args.startup_timeout) as (proc, port, log_path), \
                server_failures(proc, lambda: read_log(log_path), BenchError):
            sandbox = server_info(port).get("sandbox", "?")
            results["idle"] = idle_environments(
                port, proc.pid, sandbox, args.idle, sleep_s, args.idle_memory or args.memory, args.runtime
            )
            results["idle"]["server_settings"] = settings
    interpreter = baseline_interpreter(results["server"], args.runtime)
    results["baseline"] = baseline(args.baseline, args.runtime, interpreter, args.memory)
    return results


# --------------------------------------------------------------------------- report


def summarize(results: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    cold_p50 = results["cold"]["p50_ms"]
    base_p50 = results["baseline"]["isolated"]["p50_ms"]
    speedup = base_p50 / cold_p50
    linux = results["server"].get("sandbox") == "linux"
    s: dict[str, Any] = {
        "params": {
            "n": args.n,
            "warm": args.warm,
            "baseline": args.baseline,
            "idle": args.idle,
            "pause_ms": args.pause_ms,
            "memory_mb": args.memory,
            "runtime": args.runtime,
            "init_per_environment": args.init_per_environment,
        },
        **results,
        "ratios": {
            "baseline_p50_over_cold_p50": round(speedup, 2),
            "plain_python_p50_over_cold_p50": round(results["baseline"]["plain"]["p50_ms"] / cold_p50, 2),
            "cold_p50_over_warm_p50": round(cold_p50 / results["warm"]["p50_ms"], 2) if results["warm"] else None,
        },
        "targets": {
            # Only the linux backend is the full sandbox the target is about.
            "speedup": {"limit": SPEEDUP_TARGET, "value": round(speedup, 2),
                        "pass": speedup >= SPEEDUP_TARGET and linux},
        } if not is_node(args.runtime) else {
            # Node.js: cold start p50 <= half a fresh `node -e` running the same handler.
            "node_fraction": {"limit": NODE_FRACTION_TARGET,
                              "value": round(cold_p50 / results["baseline"]["plain"]["p50_ms"], 3),
                              "pass": cold_p50 <= NODE_FRACTION_TARGET * results["baseline"]["plain"]["p50_ms"]
                              and linux},
        },
        "env": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "mem_total_mb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20),
        },
    }
    idle = results.get("idle")
    if idle:
        # Judged only when the run asked for the full 1,000 (a smaller --idle only gives the projection).
        fits = (
            not idle["failed"]
            and idle["environments"] >= IDLE_TARGET
            and (idle["projected_fit_by_private"] or 0) >= IDLE_TARGET
        )
        s["targets"]["idle"] = {
            "limit": IDLE_TARGET,
            "value": idle["environments"],
            "projected": idle["projected_fit_by_private"],
            "pass": fits if idle["requested"] >= IDLE_TARGET else None,
        }
    return s


def print_report(s: dict[str, Any], out: Any) -> None:
    def p(line: str = "") -> None:
        print(line, file=out)

    srv = s["server"]
    backend = srv.get("sandbox", "?")
    label = "" if backend == "linux" else f" [{backend} backend: NOT the full sandbox]"
    node = is_node(s["params"]["runtime"])
    what = "crypto/http/zlib" if node else "json/asyncio/email/http.client"
    p(f"Lamina cold start of a {s['params']['runtime']} function{label} — handler imports {what}, ~20 MB built "
      "at init")
    p(
        f"server: lamina {srv.get('version', '?')}, sandbox {backend} (isolated: {srv.get('isolated', '?')}); "
        f"host: {s['env']['cpus']} CPUs, {s['env']['mem_total_mb']} MB, Python {s['env']['python']}; "
        f"function memory {s['params']['memory_mb']} MB"
    )
    how = "a spare" if node else ("fork + init" if s["params"]["init_per_environment"] else "fork")
    rows = [(f"cold ({how} + sandbox)" if backend == "linux" else f"cold ({how}, {backend} backend)", s["cold"])]
    if s.get("cold_no_spare"):
        rows.append(("cold, no spare (sandbox + node + init)", s["cold_no_spare"]["cold"]))
    if s["warm"]:
        rows.append(("warm", s["warm"]))
    base = s["baseline"]
    if node:
        rows.append((f"fresh {base['python']} (the runtime's flags)", base["isolated"]))
        rows.append((f"fresh {base['python']} -e", base["plain"]))
    else:
        rows.append((f"fresh {base['python']} -I -S", base["isolated"]))
        rows.append((f"fresh {base['python']}", base["plain"]))
    cols = ["n", "p50", "p90", "p99", "min", "max"]
    w = max(len(r[0]) for r in rows)
    p(f"{'ms':<{w}}  " + "  ".join(f"{c:>8}" for c in cols))
    for name, r in rows:
        vals = [f"{r['n']:>8}"] + [f"{r[k + '_ms']:>8.2f}" for k in cols[1:]]
        p(f"{name:<{w}}  " + "  ".join(vals))
    rd = s["restore_duration_ms"]
    if node:
        p(f"server-reported Init Duration of the environments the cold rounds took (spares, initialised before "
          f"the request): p50 {rd['p50']} ms, p99 {rd['p99']} ms (n={rd['n']})")
    else:
        p(
            f"server-reported Restore Duration p50 {rd['p50']} ms, p99 {rd['p99']} ms (n={rd['n']}); "
            f"zygote INIT_REPORT Init Duration {s['zygote_init_duration_ms']} ms (once per function version)"
        )
    r = s["ratios"]
    p(
        f"baseline (-I -S) p50 / cold p50: {r['baseline_p50_over_cold_p50']:.1f}x  "
        f"(plain python3: {r['plain_python_p50_over_cold_p50']:.1f}x); "
        f"cold p50 / warm p50: {r['cold_p50_over_warm_p50']}x"
    )
    p(f"(cold rounds: DELETE environments, {s['params']['pause_ms']:g} ms pause, then the timed invoke)")
    idle = s.get("idle")
    if idle:
        pe, cg = idle["private_per_env_kb"], idle["cgroup_usage_per_env_kb"]
        p(
            f"idle: {idle['requested']} concurrent invokes (sleep {idle['sleep_s']:g} s) took {idle['burst_s']} s; "
            f"{idle['invokes_in_new_environments']} ran in new environments (peak {idle['peak_environments']}); "
            f"health: {idle['environments']} environments; function memory {idle['memory_mb']} MB"
        )
        p(f"  (a server of its own with {idle['server_settings']})")
        if idle["failed"]:
            p(f"  {idle['failed']} of {idle['requested']} invokes FAILED:")
            for text, count in idle["failures"].items():
                p(f"    {count} x {text}")
        p(
            f"  private memory per environment (Private_Clean+Private_Dirty over its "
            f"{idle['processes_per_environment']} processes, n={idle['measured_environments']}): "
            f"mean {pe['mean']} kB, p50 {pe['p50']} kB, max {pe['max']} kB"
        )
        if cg["mean"] is not None:
            p(f"  cgroup memory usage per environment: mean {cg['mean']} kB, p50 {cg['p50']} kB")
        if idle["zygote_private_kb"] is not None:
            p(
                f"  the zygote they share (once per function): {idle['zygote_private_kb']} kB private; "
                f"its cgroup's memory usage {idle['zygote_cgroup_before_kb']} kB before the burst, "
                f"{idle['zygote_cgroup_usage_kb']} kB with them idle"
            )
        p(
            f"  MemAvailable {idle['mem_available_before_mb']} MB -> {idle['mem_available_idle_mb']} MB "
            f"(drop {idle['mem_available_drop_mb']} MB, {idle['mem_available_drop_per_env_kb']} kB per environment)"
        )
        p(
            f"  projected environments that fit in MemAvailable: {idle['projected_fit_by_private']} by private memory, "
            f"{idle['projected_fit_by_mem_available_drop']} by the MemAvailable drop"
        )
        a = idle["after_stop"]
        p(
            f"  after DELETE environments ({idle['stopped']} stopped): {a['environments']} environments, "
            f"{a['cgroups_left']} cgroups left after {a['seconds']} s; MemAvailable {a['mem_available_mb']} MB"
        )
    t = s["targets"]

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    if node:
        tn = t["node_fraction"]
        p(
            f"target: cold start p50 <= {NODE_FRACTION_TARGET:g}x a fresh node -e, with the full sandbox — "
            f"{verdict(tn['pass'])} ({tn['value']:.3f}x: {s['cold']['p50_ms']:.2f} ms against "
            f"{s['baseline']['plain']['p50_ms']:.1f} ms{label})"
        )
    else:
        p(
            f"target: cold start p50 >= {SPEEDUP_TARGET:g}x faster than a fresh python3, with the full sandbox — "
            f"{verdict(t['speedup']['pass'])} ({t['speedup']['value']:.1f}x: {s['cold']['p50_ms']:.2f} ms against "
            f"{s['baseline']['isolated']['p50_ms']:.1f} ms{label})"
        )
    if "idle" in t:
        ti = t["idle"]
        judged = "not judged (--idle < 1000)" if ti["pass"] is None else verdict(ti["pass"])
        p(
            f"target: {IDLE_TARGET} concurrent idle environments fit — {judged} "
            f"({ti['value']} idle at once, {ti['projected']} projected{label})"
        )
    else:
        p("target: 1000 concurrent idle environments fit — not measured (--idle 0)")


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100, help="timed cold starts (default 100)")
    p.add_argument("--warm", type=int, default=1000, help="timed warm invokes (default 1000)")
    p.add_argument("--baseline", type=int, default=20, help="timed fresh-python3 runs per variant (default 20)")
    p.add_argument("--runtime", default=DEFAULT_RUNTIME,
                   help=f"the function's runtime: a python3.X or nodejsN.x this host has (default {DEFAULT_RUNTIME})")
    p.add_argument(
        "--idle", type=int, help="concurrent idle environments to measure; 0 skips (default 1000; 0 for Node.js)"
    )
    p.add_argument("--init-per-environment", action="store_true",
                   help="Python: deploy with LAMINA_INIT=per-environment (init in each environment, no snapshot)")
    p.add_argument("--no-spare", type=int, default=30,
                   help="Node.js: timed cold starts on a server that keeps no spare (default 30; 0 skips)")
    p.add_argument(
        "--idle-sleep", type=float, help="seconds each burst invoke sleeps (default 3 + N/100: all N must overlap)"
    )
    p.add_argument("--pause-ms", type=float,
                   help="pause between teardown and cold invoke (default 20; 1000 for Node.js: its spare is replaced)")
    p.add_argument("--memory", type=int, default=128, help="the functions' MemorySize in MB (default 128)")
    p.add_argument("--idle-memory", type=int, help="MemorySize of the idle-phase function (default: --memory)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON on stdout (the table goes to stderr)")
    p.add_argument("--startup-timeout", type=float, default=20.0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    node = is_node(args.runtime)
    if args.idle is None:
        args.idle = 0 if node else IDLE_TARGET
    if args.pause_ms is None:
        args.pause_ms = 1000.0 if node else 20.0
    if args.n < 1 or args.warm < 0 or args.baseline < 1 or args.idle < 0 or args.pause_ms < 0 or args.no_spare < 0:
        p.error("--n and --baseline must be >= 1; --warm, --idle, --no-spare and --pause-ms >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    results = run_guarded(lambda: measure(args), log, BenchError)
    if isinstance(results, int):
        return results
    summary = summarize(results, args)
    if args.json:
        print_report(summary, sys.stderr)
        print(json.dumps(summary, indent=2))
    else:
        print_report(summary, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
