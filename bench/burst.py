#!/usr/bin/env python3
"""Burst latency of Lamina: queue dispatch against one new environment per waiting request.

    .venv/bin/python bench/burst.py [--n 200] [--init-s 1.0] [--handler-ms 100] [--json]

For each dispatch mode (`queue`, Lamina's default, and `per-request`, Lambda's built-in behaviour of
giving every waiting invocation its own new environment) a fresh `lamina serve` of its own (free port,
temporary data dir, LAMINA_DISPATCH_MODE set for it) gets one function, deployed with boto3, with exactly
one warm environment; then N concurrent invokes (asyncio, one HTTP/1.1 connection each, raw POST
.../invocations) hit it at once. Reported per mode: p50 / p99 / max latency, failures, and how many
environments the server started (the highest count /lamina/v1/health showed during the burst).

Two functions, each in both modes:

  custom    provided.al2023, a stdlib-Python `bootstrap` talking to the Runtime API that sleeps
            --init-s before its first /next (every new environment pays the init) and --handler-ms
            per invoke. This is the comparison the target is judged on.
  python    python3.11 handler with the same sleeps; Lamina forks Python environments from a
            per-version zygote, so its module-level init is paid once per version, not per
            environment (shown for reference).

Only prints figures: exit status is 0 whether the target is met or not, 1 if a server fails or the
function cannot be deployed (failed burst invokes are counted and shown).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import platform
import sys
import threading
import time
import zipfile
from collections import Counter
from typing import Any

from _common import Stats, run_and_report, server_failures
from coldstart import _invoke_async, describe_failure, health, raise_fd_limit, server_settings, wait_environments
from invoke import ROLE, BenchError, boto3_client, lamina_server, log, read_log, server_info

HOST = "127.0.0.1"
FUNCTION = "bench-burst"
TARGET_RATIO = 0.5
MODES = ("queue", "per-request")

BOOTSTRAP = """\
#!/usr/bin/python3
import http.client, os, time
time.sleep({init_s})  # the init every new environment pays
host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
conn = http.client.HTTPConnection(host, int(port))
while True:
    conn.request("GET", "/2018-06-01/runtime/invocation/next")
    resp = conn.getresponse()
    resp.read()
    rid = resp.getheader("Lambda-Runtime-Aws-Request-Id")
    time.sleep({handler_s})
    conn.request("POST", f"/2018-06-01/runtime/invocation/{{rid}}/response", b'{{"ok": true}}')
    conn.getresponse().read()
"""

PYTHON_APP = """\
import time
time.sleep({init_s})  # module-level init: paid once by the zygote


def handler(event, context):
    time.sleep({handler_s})
    return {{"ok": True}}
"""

KINDS = {
    "custom": "custom runtime (provided.al2023 bootstrap; every new environment pays the init)",
    "python": "Python handler (python3.11; environments forked from a zygote that paid the init once)",
}


def function_zip(kind: str, init_s: float, handler_s: float) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        if kind == "custom":
            info = zipfile.ZipInfo("bootstrap", date_time=(2024, 1, 1, 0, 0, 0))
            info.external_attr = 0o100755 << 16
            zf.writestr(info, BOOTSTRAP.format(init_s=init_s, handler_s=handler_s))
        else:
            zf.writestr("app.py", PYTHON_APP.format(init_s=init_s, handler_s=handler_s))
    return buf.getvalue()


def deploy(client: Any, kind: str, init_s: float, handler_s: float) -> None:
    runtime = {"Runtime": "provided.al2023", "Handler": "unused"}
    if kind == "python":
        runtime = {"Runtime": "python3.11", "Handler": "app.handler"}
    client.create_function(
        FunctionName=FUNCTION,
        Role=ROLE,
        Code={"ZipFile": function_zip(kind, init_s, handler_s)},
        Timeout=60,
        MemorySize=128,
        **runtime,
    )
    client.get_waiter("function_active_v2").wait(FunctionName=FUNCTION, WaiterConfig={"Delay": 1, "MaxAttempts": 120})


async def _timed_invoke(port: int, path: str, timeout: float) -> tuple[int, Any]:
    t0 = time.perf_counter_ns()
    try:
        result: Any = await _invoke_async(port, path, b"{}", timeout)
    except Exception as e:
        result = e
    return time.perf_counter_ns() - t0, result


async def _burst(port: int, n: int, timeout: float) -> tuple[list[tuple[int, Any]], int]:
    path = f"/2015-03-31/functions/{FUNCTION}/invocations"
    t0 = time.perf_counter_ns()
    results = await asyncio.gather(*(_timed_invoke(port, path, timeout) for _ in range(n)))
    return list(results), time.perf_counter_ns() - t0


def one_run(kind: str, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    """A fresh server in this dispatch mode, the function with one warm environment, one burst."""
    settings = {"LAMINA_DISPATCH_MODE": mode}
    with server_settings(settings), lamina_server(args.startup_timeout) as (proc, port, log_path), \
            server_failures(proc, lambda: read_log(log_path), BenchError):
        info = server_info(port)
        client = boto3_client(port)
        log(f"{kind} / {mode}: deploying {FUNCTION} ...")
        deploy(client, kind, args.init_s, args.handler_ms / 1000)
        count, _ = wait_environments(port, 1, 30)  # deploying activates one environment
        if count != 1:
            raise BenchError(f"{kind} / {mode}: expected 1 warm environment before the burst, health says {count}")
        time.sleep(0.2)
        peak = [1]
        done = threading.Event()

        def watch() -> None:  # the highest environment count health reports during the burst
            while not done.wait(0.05):
                with contextlib.suppress(Exception):  # a missed sample only
                    peak[0] = max(peak[0], int(health(port).get("environments", 0)))

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        log(f"{kind} / {mode}: {args.n} concurrent invokes ...")
        try:
            results, wall = asyncio.run(_burst(port, args.n, args.timeout))
        finally:
            done.set()
            watcher.join(5)
        after = int(health(port).get("environments", 0))

    ok: list[int] = []
    failures: Counter[str] = Counter()
    for ns, r in results:
        if isinstance(r, BaseException):
            failures[f"{type(r).__name__}: {r}"[:200]] += 1
        elif r[0] != 200 or "x-amz-function-error" in r[1]:
            failures[describe_failure(*r)] += 1
        else:
            ok.append(ns)
    out: dict[str, Any] = {
        "mode": mode,
        "ok": len(ok),
        "failed": sum(failures.values()),
        "failures": dict(failures.most_common(5)),
        "environments_peak": max(peak[0], after),
        "environments_after": after,
        "new_environments": max(peak[0], after) - 1,
        "wall_s": round(wall / 1e9, 3),
        "server": {k: info.get(k) for k in ("version", "sandbox", "isolated")},
    }
    if ok:
        out.update(Stats.from_ns(ok, wall).as_dict())
    return out


def measure(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for kind in args.kinds:
        results[kind] = {mode: one_run(kind, mode, args) for mode in MODES}
    return results


# --------------------------------------------------------------------------- report


def summarize(results: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    ratios: dict[str, float | None] = {}
    for kind, by_mode in results.items():
        q, p = by_mode["queue"].get("p99_ms"), by_mode["per-request"].get("p99_ms")
        ratios[kind] = round(q / p, 3) if q and p else None
    judged = ratios.get("custom")
    custom = results.get("custom", {})
    all_ok = all(r["failed"] == 0 for r in custom.values())
    return {
        "n": args.n,
        "init_s": args.init_s,
        "handler_ms": args.handler_ms,
        "results": results,
        "queue_p99_over_per_request_p99": ratios,
        "target": {
            "metric": "custom: queue p99 / per-request p99",
            "limit": TARGET_RATIO,
            "value": judged,
            "pass": judged is not None and judged <= TARGET_RATIO and all_ok,
        },
        "env": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()},
    }


def print_report(s: dict[str, Any]) -> None:
    cols = ["mode", "ok", "failed", "p50 ms", "p99 ms", "max ms", "new envs", "wall s"]
    for kind, by_mode in s["results"].items():
        rows = []
        for mode in MODES:
            r = by_mode[mode]
            lat = [f"{r[k]:.0f}" if k in r else "-" for k in ("p50_ms", "p99_ms", "max_ms")]
            rows.append([mode, str(r["ok"]), str(r["failed"]), *lat, str(r["new_environments"]), f"{r['wall_s']:.2f}"])
        widths = [max(len(x) for x in col) for col in zip(cols, *rows, strict=True)]
        print(f"{KINDS[kind]}")
        print(
            f"  burst of {s['n']} concurrent invokes, 1 warm environment, "
            f"init {s['init_s']:g} s, handler {s['handler_ms']:g} ms"
        )
        for row in [cols, *rows]:
            cells = (x.ljust(w) if i == 0 else x.rjust(w) for i, (x, w) in enumerate(zip(row, widths, strict=True)))
            print("  " + "  ".join(cells))
        for mode in MODES:
            for what, count in by_mode[mode]["failures"].items():
                print(f"  {mode} failure x{count}: {what}")
        ratio = s["queue_p99_over_per_request_p99"][kind]
        print(f"  queue p99 / per-request p99: {'-' if ratio is None else f'{ratio:.2f}x'}")
        print()
    srv = next(iter(next(iter(s["results"].values())).values()))["server"]
    print(
        f"server: lamina {srv.get('version', '?')}, sandbox {srv.get('sandbox', '?')} "
        f"(isolated: {srv.get('isolated', '?')}); host: {s['env']['cpus']} CPUs, Python {s['env']['python']}"
    )
    print("new envs = highest environment count /lamina/v1/health showed during the burst, minus the warm one")
    t = s["target"]
    if t["value"] is None:
        print("target: custom-runtime queue-dispatch p99 <= 0.5x per-request p99 — not measured")
        return
    verdict = "PASS" if t["pass"] else "FAIL"
    print(f"target: custom-runtime queue-dispatch p99 <= 0.5x per-request p99 — {verdict} ({t['value']:.2f}x)")


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=200, help="concurrent invokes in the burst (default 200)")
    p.add_argument("--init-s", type=float, default=1.0, help="init time of a new environment (default 1.0)")
    p.add_argument("--handler-ms", type=float, default=100.0, help="handler time per invoke (default 100)")
    p.add_argument("--kinds", default="custom,python", help="functions to run: custom,python (default both)")
    p.add_argument("--timeout", type=float, default=120.0, help="per-invoke client timeout in s (default 120)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON instead of tables")
    p.add_argument("--startup-timeout", type=float, default=20.0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if args.n < 1 or args.init_s < 0 or args.handler_ms < 0 or not args.kinds or set(args.kinds) - set(KINDS):
        p.error("--n must be >= 1, times >= 0, --kinds a subset of custom,python")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    raise_fd_limit(args.n + 256)
    return run_and_report(lambda: measure(args), lambda r: summarize(r, args), print_report, args.json, log, BenchError)


if __name__ == "__main__":
    sys.exit(main())
