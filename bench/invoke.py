#!/usr/bin/env python3
"""Sequential warm-invoke latency of Lamina, against a bare loopback HTTP baseline.

    .venv/bin/python bench/invoke.py [--runtime python3.11] [--n 2000] [--warmup 200] [--json]

Starts its own `lamina serve` on a free port with a temporary data dir, deploys an echo function
with boto3 (in --runtime: a python3.X or nodejsN.x this host has), then times N sequential
invokes (after a warm-up) three ways:

  lamina raw    one keep-alive http.client connection, POST .../invocations
  lamina boto3  client.invoke(...), Payload read
  baseline      the same http.client code against a minimal uvloop + httptools server
                (this file run with --baseline-server) that echoes the request body

With a --runtime other than python3.11, a python3.11 echo function is deployed beside it and the
two are timed in alternating blocks over raw HTTP (so both see the same moments of a noisy host):
the runtime's warm p50 against Python's.

Only prints figures: exit status is 0 whether the latency target is met or not,
1 if the server or an invoke fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import http.client
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

from _common import (
    Stats,
    cpu_seconds,
    free_port,
    run_and_report,
    server_failures,
    stop_process,
    tree_cpu_seconds,
    wait_http_ok,
)

HOST = "127.0.0.1"
FUNCTION = "bench-echo"
ROLE = "arn:aws:iam::000000000000:role/lamina"
PAYLOAD = b'{"n": 1}'
# Raw-HTTP p50 <= this multiple of the baseline's p50: the "<= 1 ms" where it was set, on a VM whose
# baseline p50 was 0.09-0.12 ms (bench/README.md).
TARGET_RATIO = 8.0
HANDLER_SRC = "def handler(event, context):\n    return event\n"
NODE_HANDLER_SRC = "export const handler = async (event) => event;\n"
REFERENCE_RUNTIME = "python3.11"
REFERENCE_FUNCTION = "bench-echo-python"
# Another runtime's warm p50 <= this multiple of Python's, measured in the same run (the Node.js runtimes' target).
RUNTIME_RATIO_TARGET = 1.2
BLOCKS = 10  # alternating blocks when two functions are compared


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class BenchError(Exception):
    """A failure worth reporting verbatim (server died, invoke returned an error, ...)."""


# --------------------------------------------------------------------------- baseline server


def run_baseline_server(port: int) -> None:
    """Minimal HTTP/1.1 keep-alive server: 200 + the request body echoed, for every request."""
    import httptools
    import uvloop

    class Echo(asyncio.Protocol):
        def __init__(self) -> None:
            self.parser = httptools.HttpRequestParser(self)
            self.body: list[bytes] = []
            self.transport: asyncio.Transport | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = cast(asyncio.Transport, transport)

        def data_received(self, data: bytes) -> None:
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserError:
                assert self.transport is not None
                self.transport.write(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
                self.transport.close()

        def on_message_begin(self) -> None:
            self.body = []

        def on_body(self, body: bytes) -> None:
            self.body.append(body)

        def on_message_complete(self) -> None:
            assert self.transport is not None
            body = b"".join(self.body)
            keep = self.parser.should_keep_alive()
            head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n" % (
                len(body),
                b"" if keep else b"Connection: close\r\n",
            )
            self.transport.write(head + body)
            if not keep:
                self.transport.close()

    async def serve() -> None:
        server = await asyncio.get_running_loop().create_server(Echo, HOST, port)
        print(server.sockets[0].getsockname()[1], flush=True)  # tells the parent we are ready
        await server.serve_forever()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve())


@contextlib.contextmanager
def baseline_server() -> Iterator[tuple[int, int]]:
    """Start `this file --baseline-server 0`; yield (pid, port); always stop it."""
    proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--baseline-server", "0"],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.isdigit():
            raise BenchError(f"baseline server did not start (exit {proc.wait(5)})")
        yield proc.pid, int(line)
    finally:
        stop_process(proc, grace=5)


# --------------------------------------------------------------------------- Lamina server


@contextlib.contextmanager
def lamina_server(startup_timeout: float) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    """Start `python -m lamina serve` on a free port with a temp data dir; yield (proc, port, log)."""
    tmp = Path(tempfile.mkdtemp(prefix="lamina-bench-"))
    log_path = tmp / "server.log"
    port = free_port(HOST)
    cmd = [
        sys.executable,
        "-m",
        "lamina",
        "serve",
        "--host",
        HOST,
        "--port",
        str(port),
        "--data-dir",
        str(tmp / "data"),
    ]
    proc: subprocess.Popen[bytes] | None = None
    try:
        with open(log_path, "wb") as out:  # a file, not a pipe: a chatty server must never block on us
            # cwd=tmp so that a lamina.toml in the current directory is not picked up.
            proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, cwd=tmp, start_new_session=True
            )
        log(f"started: {' '.join(cmd)} (pid {proc.pid})")
        if not wait_http_ok(proc, HOST, port, "/lamina/v1/health", startup_timeout):
            state = f"exited with {proc.returncode}" if proc.poll() is not None else "still running"
            raise BenchError(
                f"server not healthy within {startup_timeout:.0f}s ({state})\n"
                f"--- server output ---\n{read_log(log_path)}"
            )
        yield proc, port, log_path
    finally:
        if proc is not None:
            stop_process(proc, grace=20)
            log(f"server stopped (exit {proc.returncode})")
        shutil.rmtree(tmp, ignore_errors=True)


def read_log(path: Path, tail: int = 8000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        return f"(no output: {e})"
    return text if len(text) <= tail else "...\n" + text[-tail:]


def server_info(port: int) -> dict[str, Any]:
    """The health document (version, sandbox backend, ...), for the record."""
    conn = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        conn.request("GET", "/lamina/v1/health")
        info = json.loads(conn.getresponse().read())
        return info if isinstance(info, dict) else {"health": info}
    except (OSError, http.client.HTTPException, ValueError) as e:
        return {"health_error": str(e)}
    finally:
        conn.close()


def function_zip(runtime: str = REFERENCE_RUNTIME) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        if runtime.startswith("nodejs"):
            zf.writestr("index.mjs", NODE_HANDLER_SRC)
        else:
            zf.writestr("app.py", HANDLER_SRC)
    return buf.getvalue()


def boto3_client(port: int) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "lambda",
        endpoint_url=f"http://{HOST}:{port}",
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=120),
    )


def deploy(client: Any, runtime: str = REFERENCE_RUNTIME, name: str = FUNCTION, memory_mb: int = 128) -> None:
    client.create_function(
        FunctionName=name,
        Runtime=runtime,
        MemorySize=memory_mb,
        Role=ROLE,
        Handler="index.handler" if runtime.startswith("nodejs") else "app.handler",
        Code={"ZipFile": function_zip(runtime)},
    )
    client.get_waiter("function_active_v2").wait(
        FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 120}
    )


# --------------------------------------------------------------------------- measurement


def check_echo(what: str, status: int, headers: dict[str, str], body: bytes) -> None:
    """Fail loudly unless the response is a 200 whose JSON body equals the payload."""
    err = headers.get("x-amz-function-error")
    try:
        same = json.loads(body) == json.loads(PAYLOAD)
    except ValueError:
        same = False
    if status != 200 or err or not same:
        raise BenchError(
            f"{what}: unexpected response: HTTP {status}"
            + (f", X-Amz-Function-Error: {err}" if err else "")
            + f"\n  headers: {headers}\n  body: {body[:2000]!r}"
        )


def timed(n: int, once: Callable[[], object]) -> tuple[list[int], int]:
    """Call `once` n times; return the per-call durations and the wall time of the loop (ns)."""
    samples = [0] * n
    clock = time.perf_counter_ns
    gc.collect()
    gc.disable()
    try:
        start = clock()
        for i in range(n):
            t0 = clock()
            once()
            samples[i] = clock() - t0
        wall = clock() - start
    finally:
        gc.enable()
    return samples, wall


def raw_http(port: int, path: str, n: int, warmup: int, what: str) -> tuple[Stats, float | None]:
    """POST PAYLOAD to path over one keep-alive http.client connection; first call timed separately."""
    conn = http.client.HTTPConnection(HOST, port, timeout=120)
    headers = {"Content-Type": "application/json"}
    bad: list[int] = []
    closes = 0

    def once() -> None:
        nonlocal closes
        conn.request("POST", path, body=PAYLOAD, headers=headers)
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            bad.append(resp.status)
        if conn.sock is None:  # server closed the connection; http.client reconnects on the next request
            closes += 1

    try:
        t0 = time.perf_counter_ns()
        conn.request("POST", path, body=PAYLOAD, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        first_ms = (time.perf_counter_ns() - t0) / 1e6
        check_echo(what, resp.status, {k.lower(): v for k, v in resp.getheaders()}, body)
        for _ in range(warmup):
            once()
        samples, wall = timed(n, once)
    finally:
        conn.close()
    if bad:
        raise BenchError(f"{what}: {len(bad)} of {n + warmup} requests were not HTTP 200 (e.g. {bad[0]})")
    if closes:
        log(f"warning: {what}: the server closed the keep-alive connection {closes} times (reconnects timed)")
    return Stats.from_ns(samples, wall), first_ms


def interleaved(port: int, paths: dict[str, str], n: int, warmup: int) -> dict[str, Stats]:
    """Time n invokes of each path (one keep-alive connection each) in BLOCKS alternating blocks."""
    conns = {key: http.client.HTTPConnection(HOST, port, timeout=120) for key in paths}
    headers = {"Content-Type": "application/json"}
    samples: dict[str, list[int]] = {key: [] for key in paths}
    walls = dict.fromkeys(paths, 0)
    clock = time.perf_counter_ns

    def once(key: str) -> None:
        conns[key].request("POST", paths[key], body=PAYLOAD, headers=headers)
        resp = conns[key].getresponse()
        body = resp.read()
        if resp.status != 200:
            check_echo(key, resp.status, {k.lower(): v for k, v in resp.getheaders()}, body)

    try:
        for key in paths:
            for _ in range(warmup):
                once(key)
        per_block = max(1, n // BLOCKS)
        gc.collect()
        gc.disable()
        try:
            for _ in range(BLOCKS):
                for key in paths:
                    start = clock()
                    for _ in range(per_block):
                        t0 = clock()
                        once(key)
                        samples[key].append(clock() - t0)
                    walls[key] += clock() - start
        finally:
            gc.enable()
    finally:
        for conn in conns.values():
            conn.close()
    return {key: Stats.from_ns(samples[key], walls[key]) for key in paths}


def boto3_invokes(client: Any, n: int, warmup: int) -> Stats:
    resp = client.invoke(FunctionName=FUNCTION, Payload=PAYLOAD)
    body = resp["Payload"].read()
    headers = {"x-amz-function-error": resp.get("FunctionError", "")}
    check_echo("lamina boto3", resp["StatusCode"], headers, body)
    bad: list[dict[str, Any]] = []

    def once() -> None:
        r = client.invoke(FunctionName=FUNCTION, Payload=PAYLOAD)
        r["Payload"].read()
        if "FunctionError" in r:
            bad.append(r)

    for _ in range(warmup):
        once()
    samples, wall = timed(n, once)
    if bad:
        raise BenchError(f"lamina boto3: {len(bad)} invokes returned FunctionError={bad[0]['FunctionError']}")
    return Stats.from_ns(samples, wall)


def with_cpu(
    pid: int, fn: Callable[[], tuple[Stats, float | None]]
) -> tuple[Stats, float | None, dict[str, float]]:
    """Run fn and return the CPU µs per request of pid and of pid + descendants during it."""
    own0, tree0 = cpu_seconds(pid), tree_cpu_seconds(pid)
    stats, first = fn()
    own1, tree1 = cpu_seconds(pid), tree_cpu_seconds(pid)
    cpu = {
        "server_cpu_us_per_req": round((own1 - own0) / stats.n * 1e6, 1),
        "tree_cpu_us_per_req": round((tree1 - tree0) / stats.n * 1e6, 1),
    }
    return stats, first, cpu


def measure(n: int, warmup: int, startup_timeout: float, runtime: str = REFERENCE_RUNTIME,
            memory_mb: int = 128) -> dict[str, Any]:
    results: dict[str, Any] = {"runtime": runtime, "memory_mb": memory_mb}
    path = f"/2015-03-31/functions/{FUNCTION}/invocations"
    with lamina_server(startup_timeout) as (proc, port, log_path), \
            server_failures(proc, lambda: read_log(log_path), BenchError):
        client = boto3_client(port)
        log(f"deploying a {runtime} function ...")
        t0 = time.perf_counter()
        deploy(client, runtime, memory_mb=memory_mb)
        log(f"function active after {time.perf_counter() - t0:.2f}s")
        results["server"] = server_info(port)
        if runtime != REFERENCE_RUNTIME:
            deploy(client, REFERENCE_RUNTIME, REFERENCE_FUNCTION, memory_mb)
            log(f"{runtime} against {REFERENCE_RUNTIME}: {warmup} warm-up each, then {n} timed invokes each in "
                f"{BLOCKS} alternating blocks ...")
            pair = interleaved(port, {runtime: path, REFERENCE_RUNTIME:
                                      f"/2015-03-31/functions/{REFERENCE_FUNCTION}/invocations"}, n, warmup)
            results["compared"] = {key: stats.as_dict() for key, stats in pair.items()}

        log(f"lamina raw HTTP: 1 first + {warmup} warm-up + {n} timed invokes ...")
        stats, first, cpu = with_cpu(proc.pid, lambda: raw_http(port, path, n, warmup, "lamina raw"))
        results["lamina_raw"] = {**stats.as_dict(), **cpu, "first_invoke_ms": round(first or 0.0, 3)}

        log(f"lamina boto3: {warmup} warm-up + {n} timed invokes ...")
        stats, _, cpu = with_cpu(proc.pid, lambda: (boto3_invokes(client, n, warmup), None))
        results["lamina_boto3"] = {**stats.as_dict(), **cpu}

    log(f"baseline: {warmup} warm-up + {n} timed requests ...")
    with baseline_server() as (pid, bport):
        try:
            stats, _, cpu = with_cpu(pid, lambda: raw_http(bport, path, n, warmup, "baseline"))
        except (OSError, http.client.HTTPException) as e:
            raise BenchError(f"baseline: {type(e).__name__}: {e}") from e
        results["baseline"] = {**stats.as_dict(), **cpu}
    return results


# --------------------------------------------------------------------------- report


def summarize(results: dict[str, Any], n: int, warmup: int) -> dict[str, Any]:
    results = dict(results)
    server = results.pop("server", {})
    runtime = results.pop("runtime", REFERENCE_RUNTIME)
    memory_mb = results.pop("memory_mb", 128)
    compared = results.pop("compared", None)
    raw, b3, base = results["lamina_raw"], results["lamina_boto3"], results["baseline"]
    p50 = raw["p50_ms"]
    ratio = p50 / base["p50_ms"]
    out = {
        "n": n,
        "warmup": warmup,
        "runtime": runtime,
        "memory_mb": memory_mb,
        "server": server,
        "results": results,
        "ratios": {
            "lamina_raw_p50_over_baseline_p50": round(ratio, 3),
            "boto3_p50_over_raw_p50": round(b3["p50_ms"] / p50, 3),
        },
        "target": {
            "metric": "lamina_raw.p50_ms / baseline.p50_ms",
            "max_ratio": TARGET_RATIO,
            "value": round(ratio, 3),
            "pass": ratio <= TARGET_RATIO,
        },
        "env": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "clk_tck": os.sysconf("SC_CLK_TCK"),
        },
    }
    if compared is not None:
        against = compared[runtime]["p50_ms"] / compared[REFERENCE_RUNTIME]["p50_ms"]
        out["compared"] = compared
        out["runtime_target"] = {"metric": f"{runtime} p50 / {REFERENCE_RUNTIME} p50 (alternating blocks)",
                                 "max_ratio": RUNTIME_RATIO_TARGET, "value": round(against, 3),
                                 "pass": against <= RUNTIME_RATIO_TARGET}
    return out


ROWS = [
    ("baseline", "baseline HTTP"),
    ("lamina_raw", "lamina raw HTTP"),
    ("lamina_boto3", "lamina boto3"),
]
COLS = ["p50", "p90", "p99", "mean", "req/s", "srv CPU", "tree CPU"]


def table_rows(results: dict[str, Any]) -> list[list[str]]:
    rows = []
    for key, label in ROWS:
        r = results[key]
        cpu = [f"{r[k]:.0f}" if k in r else "-" for k in ("server_cpu_us_per_req", "tree_cpu_us_per_req")]
        rows.append(
            [
                label,
                *(f"{r[k]:.3f}" for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms")),
                f"{r['rps']:.0f}",
                *cpu,
            ]
        )
    return rows


def print_report(s: dict[str, Any]) -> None:
    title = (f"Lamina sequential warm invoke of a {s.get('runtime', REFERENCE_RUNTIME)} echo function "
             f"({s.get('memory_mb', 128)} MB) — n={s['n']}, warm-up={s['warmup']}, payload {PAYLOAD.decode()}")
    rows = table_rows(s["results"])
    try:
        from rich import box
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        table.add_column("path", no_wrap=True)
        for c in COLS:
            table.add_column(c, justify="right")
        for row in rows:
            table.add_row(*row)
        Console().print(table)
    except ImportError:
        widths = [max(len(x) for x in col) for col in zip(["path", *COLS], *rows, strict=True)]
        print(title)
        for row in [["path", *COLS], *rows]:
            print(
                "  ".join(
                    x.ljust(w) if i == 0 else x.rjust(w)
                    for i, (x, w) in enumerate(zip(row, widths, strict=True))
                )
            )
    raw, ratios, target = s["results"]["lamina_raw"], s["ratios"], s["target"]
    srv = s["server"]
    print(
        f"server: lamina {srv.get('version', '?')}, sandbox {srv.get('sandbox', '?')} "
        f"(isolated: {srv.get('isolated', '?')}); host: {s['env']['cpus']} CPUs, "
        f"Python {s['env']['python']}"
    )
    print(f"first invoke after Active, raw HTTP (may be cold or pre-warmed): {raw['first_invoke_ms']:.1f} ms")
    print(f"lamina raw p50 / baseline p50: {ratios['lamina_raw_p50_over_baseline_p50']:.2f}x")
    print(f"boto3 p50 / lamina raw p50:    {ratios['boto3_p50_over_raw_p50']:.2f}x")
    print("latencies in ms; CPU = µs of utime+stime per request (/proc), tree = server + descendants")
    verdict = "PASS" if target["pass"] else "FAIL"
    print(f"target: p50 warm invoke over raw HTTP <= {TARGET_RATIO:g}x the baseline's p50 — {verdict} "
          f"({target['value']:.2f}x: {raw['p50_ms']:.3f} ms against {s['results']['baseline']['p50_ms']:.3f} ms)")
    if "compared" in s:
        rt, cmp = s["runtime_target"], s["compared"]
        for key, r in cmp.items():
            print(f"  alternating blocks, raw HTTP, {key}: p50 {r['p50_ms']:.3f} ms, p90 {r['p90_ms']:.3f} ms, "
                  f"p99 {r['p99_ms']:.3f} ms (n={r['n']})")
        verdict = "PASS" if rt["pass"] else "FAIL"
        print(f"target: {s['runtime']} warm p50 <= {RUNTIME_RATIO_TARGET:g}x {REFERENCE_RUNTIME}'s — {verdict} "
              f"({rt['value']:.2f}x)")


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=2000, help="timed invokes per path (default 2000)")
    p.add_argument("--warmup", type=int, default=200, help="untimed invokes before each run (default 200)")
    p.add_argument("--runtime", default=REFERENCE_RUNTIME,
                   help=f"the echo function's runtime: a python3.X or nodejsN.x this host has "
                        f"(default {REFERENCE_RUNTIME}; another one is also compared with {REFERENCE_RUNTIME})")
    p.add_argument("--memory", type=int, default=128,
                   help="the functions' MemorySize in MB (default 128: 7%% of a CPU, which back-to-back invokes "
                        "exceed; 1769 gives one vCPU)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON instead of a table")
    p.add_argument("--startup-timeout", type=float, default=20.0, help=argparse.SUPPRESS)
    p.add_argument("--baseline-server", type=int, metavar="PORT", help="internal: run the baseline server")
    args = p.parse_args(argv)
    if args.n < 1 or args.warmup < 0:
        p.error("--n must be >= 1 and --warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.baseline_server is not None:
        run_baseline_server(args.baseline_server)
        return 0

    return run_and_report(lambda: measure(args.n, args.warmup, args.startup_timeout, args.runtime, args.memory),
                          lambda results: summarize(results, args.n, args.warmup), print_report, args.json, log,
                          BenchError)


if __name__ == "__main__":
    sys.exit(main())
