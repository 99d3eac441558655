#!/usr/bin/env python3
"""MicroVM latencies and proxy throughput, with baselines measured in the same run.

    .venv/bin/python bench/microvm.py [--rounds 20] [--requests 2000] [--json]

Starts its own `lamina serve` (needs root for the linux sandbox) on a free port with a temporary
data dir, builds an image of a small Python web app (stdlib http.server, port 8080) and measures,
over plain HTTP/1.1 on loopback (http.client, no boto3 on the timed path):

  run        RunMicrovm -> CreateMicrovmAuthToken -> the first proxied GET answered (the proxy holds
             requests until /run returned, so this is "Run to first response"). Launches come from
             the image's pre-initialized standby; between rounds the bench terminates the instance
             and pauses so the standby is refilled (off the timed path).
             Baseline: spawning `python3 app.py` on the host and polling until it answers.
  suspend    SuspendMicrovm (answered once the instance is SUSPENDED) and ResumeMicrovm.
             Baseline: GetMicrovm, the cost of one control-plane call.
  autoresume an instance with autoResumeEnabled is suspended, then one proxied GET is timed (it waits
             for the resume); the figure is that minus a proxied GET to the running instance.
  throughput N sequential keep-alive GETs through the proxy, and the same to the same app run directly
             on the host (the baseline), rps and ratio; also to a bare uvicorn hello world (the ASGI
             server lamina serve runs on), so the proxy's own share of a request shows.

Only prints figures, each target with PASS/FAIL; the exit status is 1 only when the benchmark itself
fails (no root, the server or the build fails, a request gets a wrong answer).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _common import Stats, free_port, run_guarded, stop_process, wait_http_ok

HOST = "127.0.0.1"
# The targets (Run -> first response <= 50 ms, suspend <= 5 ms, auto-resume adds <= 5 ms) as ratios to the
# baselines this run measures; where they were set, spawning the app took 42.9 ms and a proxied request to a
# running instance 0.4 ms, and a GetMicrovm call about as long as a ResumeMicrovm (0.42 ms) (bench/README.md).
TARGETS = {"run_over_spawn": 1.15, "suspend_over_get": 12.0, "autoresume_over_running": 13.0}
BASE = "arn:aws:lambda:us-east-1:aws:microvm-image:al2023-1"
ROLE = "arn:aws:iam::000000000000:role/bench"
REFILL_PAUSE_S = 1.5

APP = r'''
import socket, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def setup(self):
        super().setup()
        # Headers and body are two writes: without this, Nagle + delayed ACK cost 40 ms a request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    def log_message(self, *a): pass
    def do_GET(self):
        body = b"hello"
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1]) if len(sys.argv) > 1 else 8080), H).serve_forever()
'''
DOCKERFILE = """FROM public.ecr.aws/lambda/microvms:al2023-minimal
WORKDIR /app
COPY app.py .
CMD ["python3", "app.py"]
"""


class BenchError(Exception):
    pass


def log(msg: str) -> None:
    print(f"[microvm-bench] {msg}", file=sys.stderr, flush=True)


class Api:
    """One keep-alive connection to the server for API calls and proxied requests."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection(HOST, port, timeout=60)

    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None,
             ok: bool = True) -> tuple[int, bytes]:
        data = json.dumps(body).encode() if body is not None else None
        hdrs = {"content-type": "application/json"} if data is not None else {}
        hdrs.update(headers or {})
        for attempt in range(2):
            try:
                self.conn.request(method, path, body=data, headers=hdrs)
                resp = self.conn.getresponse()
                raw = resp.read()
                break
            except (ConnectionError, http.client.HTTPException):
                self.conn.close()
                self.conn = http.client.HTTPConnection(HOST, self.port, timeout=60)
                if attempt:
                    raise
        if ok and resp.status >= 300:
            raise BenchError(f"{method} {path}: HTTP {resp.status} {raw[:300]!r}")
        return resp.status, raw

    def json(self, method: str, path: str, body: Any = None) -> dict:
        return json.loads(self.call(method, path, body)[1] or b"{}")

    def run(self, image: str, **extra: Any) -> str:
        return self.json("POST", "/2025-09-09/microvms", {"imageIdentifier": image, **extra})["microvmId"]

    def token(self, mid: str) -> str:
        body = {"allowedPorts": [{"port": 8080}], "expirationInMinutes": 60}
        return self.json("POST", f"/2025-09-09/microvms/{mid}/auth-token", body)["authToken"]["X-aws-proxy-auth"]

    def get(self, mid: str, auth: str) -> None:
        status, body = self.call("GET", f"/lamina/v1/microvm/{mid}/", headers={"X-aws-proxy-auth": auth})
        if body != b"hello":
            raise BenchError(f"unexpected answer from {mid}: {status} {body[:200]!r}")

    def state(self, mid: str) -> str:
        return self.json("GET", f"/2025-09-09/microvms/{mid}")["state"]

    def wait(self, mid: str, state: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.state(mid) != state:
            if time.monotonic() > deadline:
                raise BenchError(f"{mid} never became {state}")
            time.sleep(0.02)

    def terminate(self, mid: str) -> None:
        self.call("DELETE", f"/2025-09-09/microvms/{mid}")


@contextlib.contextmanager
def lamina_server(tmp: Path) -> Iterator[int]:
    port = free_port(HOST)
    cmd = [sys.executable, "-m", "lamina", "serve", "--host", HOST, "--port", str(port), "--data-dir",
           str(tmp / "data")]
    log_path = tmp / "server.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=tmp, start_new_session=True)
    try:
        if not wait_http_ok(proc, HOST, port, "/lamina/v1/health", 30):
            raise BenchError(f"server did not start:\n{log_path.read_text(errors='replace')[-4000:]}")
        yield port
    finally:
        stop_process(proc, grace=20)


BARE_UVICORN = """
import sys, uvicorn
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
    await send({"type": "http.response.body", "body": b"hello"})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), http="httptools", loop="uvloop", log_level="warning",
            access_log=False)
"""


@contextlib.contextmanager
def serving(argv: list[str], what: str) -> Iterator[int]:
    """`argv` with a free port appended, in a session of its own; the port, once GET / answers 200."""
    port = free_port(HOST)
    proc = subprocess.Popen([*argv, str(port)], start_new_session=True)
    try:
        if not wait_http_ok(proc, HOST, port, "/", 10):
            raise BenchError(f"{what} did not start")
        yield port
    finally:
        stop_process(proc, grace=5)


def bare_uvicorn() -> contextlib.AbstractContextManager[int]:
    """A hello-world ASGI app on uvicorn, as lamina serve runs it: the floor any proxied request sits on."""
    return serving([sys.executable, "-c", BARE_UVICORN], "the bare uvicorn app")


def keep_alive_get(port: int):
    conn = http.client.HTTPConnection(HOST, port, timeout=10)

    def get() -> None:
        conn.request("GET", "/")
        if conn.getresponse().read() != b"hello":
            raise BenchError("a baseline server answered wrongly")

    return get


def host_app(folder: Path) -> contextlib.AbstractContextManager[int]:
    """The same app, run directly on the host (the baseline)."""
    return serving([sys.executable, str(folder / "app.py")], "the baseline app")


def spawn_to_first_response(folder: Path) -> float:
    """Seconds from spawning `python3 app.py` to its first answer."""
    port = free_port(HOST)
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(folder / "app.py"), str(port)], start_new_session=True)
    try:
        while True:
            try:
                with socket.create_connection((HOST, port), timeout=1):
                    pass
                break
            except OSError:
                time.sleep(0.001)
        conn = http.client.HTTPConnection(HOST, port, timeout=5)
        conn.request("GET", "/")
        conn.getresponse().read()
        conn.close()
        return time.perf_counter() - started
    finally:
        stop_process(proc, grace=5)


def ms(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    return {"p50_ms": round(statistics.median(s) * 1000, 3), "min_ms": round(s[0] * 1000, 3),
            "p90_ms": round(s[max(0, int(len(s) * 0.9) - 1)] * 1000, 3), "n": len(s)}


def throughput(fn, n: int) -> Stats:
    samples: list[int] = []
    start = time.perf_counter_ns()
    for _ in range(n):
        t = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - t)
    return Stats.from_ns(samples, time.perf_counter_ns() - start)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    if os.geteuid() != 0:
        raise BenchError("run as root: MicroVM instances need the linux sandbox backend")
    tmp = Path(tempfile.mkdtemp(prefix="lamina-mvm-bench-"))
    results: dict[str, Any] = {}
    try:
        folder = tmp / "app"
        folder.mkdir()
        (folder / "app.py").write_text(APP)
        (folder / "Dockerfile").write_text(DOCKERFILE)
        with lamina_server(tmp) as port:
            api = Api(port)
            api.json("POST", "/2025-09-09/microvm-images", {"name": "bench", "baseImageArn": BASE,
                                                           "buildRoleArn": ROLE,
                                                           "codeArtifact": {"uri": folder.as_uri()}})
            t = time.monotonic()
            while (state := api.json("GET", "/2025-09-09/microvm-images/bench")["state"]) == "CREATING":
                time.sleep(0.1)
            if state != "CREATED":
                raise BenchError(f"image build {state}")
            log(f"image built in {time.monotonic() - t:.2f}s")
            time.sleep(REFILL_PAUSE_S)

            # Run -> first response, from the standby.
            total, run_call, first_get = [], [], []
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                mid = api.run("bench")
                t1 = time.perf_counter()
                auth = api.token(mid)
                t2 = time.perf_counter()
                api.get(mid, auth)
                t3 = time.perf_counter()
                total.append(t3 - t0)
                run_call.append(t1 - t0)
                first_get.append(t3 - t2)
                api.terminate(mid)
                time.sleep(REFILL_PAUSE_S)
            baseline = [spawn_to_first_response(folder) for _ in range(max(3, args.rounds // 2))]
            results["run_to_first_response"] = {**ms(total), "run_call": ms(run_call), "first_get": ms(first_get),
                                                "baseline_spawn_python": ms(baseline)}

            # Suspend / resume, and auto-resume.
            policy = {"maxIdleDurationSeconds": 28800, "suspendedDurationSeconds": 28800, "autoResumeEnabled": True}
            mid = api.run("bench", idlePolicy=policy)
            auth = api.token(mid)
            api.get(mid, auth)
            suspend, resume, get_state, auto, warm = [], [], [], [], []
            for _ in range(args.rounds):
                t = time.perf_counter()
                api.state(mid)
                get_state.append(time.perf_counter() - t)
                t = time.perf_counter()
                api.call("POST", f"/2025-09-09/microvms/{mid}/suspend")
                suspend.append(time.perf_counter() - t)
                t = time.perf_counter()
                api.call("POST", f"/2025-09-09/microvms/{mid}/resume")
                resume.append(time.perf_counter() - t)
                api.get(mid, auth)
                t = time.perf_counter()
                api.get(mid, auth)
                warm.append(time.perf_counter() - t)
                api.call("POST", f"/2025-09-09/microvms/{mid}/suspend")
                t = time.perf_counter()
                api.get(mid, auth)
                auto.append(time.perf_counter() - t)
            if api.state(mid) != "RUNNING":
                raise BenchError("auto-resume did not leave the instance RUNNING")
            results["suspend"] = {**ms(suspend), "resume": ms(resume), "baseline_get_microvm": ms(get_state)}
            added = statistics.median(auto) - statistics.median(warm)
            results["autoresume"] = {"first_request": ms(auto), "running_request": ms(warm),
                                     "added_ms": round(added * 1000, 3)}

            # Throughput: through the proxy vs straight to the same app on the host.
            proxied = throughput(lambda: api.get(mid, auth), args.requests)
            with host_app(folder) as app_port:
                direct_stats = throughput(keep_alive_get(app_port), args.requests)
            with bare_uvicorn() as uv_port:
                uvicorn_stats = throughput(keep_alive_get(uv_port), args.requests)
            results["throughput"] = {"proxied": proxied.as_dict(), "direct": direct_stats.as_dict(),
                                     "bare_uvicorn": uvicorn_stats.as_dict(),
                                     "ratio": round(proxied.rps / direct_stats.rps, 3)}
            api.terminate(mid)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return results


def judge(r: dict[str, Any]) -> dict[str, Any]:
    """Each target's ratio to its same-run baseline, and whether it is met."""
    run, sus, auto = r["run_to_first_response"], r["suspend"], r["autoresume"]
    ratios = {"run_over_spawn": run["p50_ms"] / run["baseline_spawn_python"]["p50_ms"],
              "suspend_over_get": sus["p50_ms"] / sus["baseline_get_microvm"]["p50_ms"],
              "autoresume_over_running": auto["first_request"]["p50_ms"] / auto["running_request"]["p50_ms"]}
    return {key: {"max_ratio": TARGETS[key], "value": round(value, 3), "pass": value <= TARGETS[key]}
            for key, value in ratios.items()}


def verdict(target: dict[str, Any]) -> str:
    return f"{'PASS' if target['pass'] else 'FAIL'} ({target['value']:.2f}x)"


def report(r: dict[str, Any]) -> None:
    run = r["run_to_first_response"]
    sus = r["suspend"]
    auto = r["autoresume"]
    thr = r["throughput"]
    t = r["targets"]
    base = run["baseline_spawn_python"]["p50_ms"]
    print(f"Run -> first proxied response   p50 {run['p50_ms']:8.2f} ms (min {run['min_ms']:.2f}, "
          f"p90 {run['p90_ms']:.2f})")
    print(f"    of which RunMicrovm call    p50 {run['run_call']['p50_ms']:8.2f} ms; first GET "
          f"{run['first_get']['p50_ms']:.2f} ms")
    print(f"    baseline: spawn python3 app p50 {base:8.2f} ms  -> ratio {run['p50_ms'] / base:.2f}x")
    print(f"SuspendMicrovm (until SUSPENDED) p50 {sus['p50_ms']:8.2f} ms (p90 {sus['p90_ms']:.2f})")
    print(f"ResumeMicrovm (until RUNNING)   p50 {sus['resume']['p50_ms']:8.2f} ms")
    print(f"    baseline: GetMicrovm        p50 {sus['baseline_get_microvm']['p50_ms']:8.2f} ms  -> suspend is "
          f"{sus['p50_ms'] / sus['baseline_get_microvm']['p50_ms']:.2f}x one API call")
    print(f"Auto-resume adds                    {auto['added_ms']:8.2f} ms (first request p50 "
          f"{auto['first_request']['p50_ms']:.2f} vs running {auto['running_request']['p50_ms']:.2f})")
    print(f"Throughput (sequential keep-alive) proxied {thr['proxied']['rps']:8.0f} rps (p50 "
          f"{thr['proxied']['p50_ms']:.3f} ms) vs direct {thr['direct']['rps']:.0f} rps (p50 "
          f"{thr['direct']['p50_ms']:.3f} ms)  -> ratio {thr['ratio']:.2f}")
    floor = thr["bare_uvicorn"]["p50_ms"] + thr["direct"]["p50_ms"]
    print(f"    bare uvicorn hello world {thr['bare_uvicorn']['rps']:.0f} rps (p50 {thr['bare_uvicorn']['p50_ms']:.3f} "
          f"ms): the proxy's own cost is about {thr['proxied']['p50_ms'] - floor:.3f} ms a request over "
          f"uvicorn + the app")
    print(f"target: Run -> first proxied response p50 <= {TARGETS['run_over_spawn']:g}x spawning the app on the host — "
          f"{verdict(t['run_over_spawn'])}")
    print(f"target: SuspendMicrovm p50 <= {TARGETS['suspend_over_get']:g}x a GetMicrovm call — "
          f"{verdict(t['suspend_over_get'])}")
    print(f"target: an auto-resumed request p50 <= {TARGETS['autoresume_over_running']:g}x a request to the running "
          f"instance — {verdict(t['autoresume_over_running'])}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results = run_guarded(lambda: measure(args), log, BenchError)
    if isinstance(results, int):
        return results
    results["targets"] = judge(results)
    report(results)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
