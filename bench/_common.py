"""Small helpers shared by the benchmarks in bench/ (not part of the lamina package)."""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

CLK_TCK = os.sysconf("SC_CLK_TCK")
REPO = Path(__file__).resolve().parent.parent


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (bind to port 0, read it back, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def start_lamina(tmp: Path, error: type[Exception], host: str = "127.0.0.1",
                 ) -> tuple[subprocess.Popen[bytes], str, Path]:
    """`lamina serve` from this checkout on a free port with its data under tmp, output to tmp/lamina.log; once its
    health answers: (the process, its endpoint URL, the log's path). A server that does not come up is stopped and
    reported with `error` and the log's end."""
    port = free_port(host)
    out = tmp / "lamina.log"
    with open(out, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "lamina", "serve", "--host", host, "--port", str(port),
                                 "--data-dir", str(tmp / "data")], stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True,
                                env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    if not wait_http_ok(proc, host, port, "/lamina/v1/health", 30):
        stop_process(proc)
        raise error(f"lamina serve did not start:\n{out.read_text()[-3000:]}")
    return proc, f"http://{host}:{port}", out


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (index 0 is field 3, the state)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read().decode()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, in seconds (resolution 1/CLK_TCK)."""
    f = _stat_fields(pid)
    return 0.0 if f is None else (int(f[11]) + int(f[12])) / CLK_TCK


def process_tree(pid: int) -> list[int]:
    """pid and all of its live descendants."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            f = _stat_fields(int(name))
            if f is not None:
                children.setdefault(int(f[1]), []).append(int(name))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, ()))
    return tree


def tree_cpu_seconds(pid: int) -> float:
    """utime + stime summed over pid and its live descendants (e.g. function runtimes)."""
    return sum(cpu_seconds(p) for p in process_tree(pid))


@dataclass
class Stats:
    n: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    rps: float

    @classmethod
    def from_ns(cls, samples_ns: list[int], wall_ns: int) -> Stats:
        s = sorted(samples_ns)

        def pct(p: float) -> float:  # nearest-rank percentile
            return s[max(0, math.ceil(p / 100 * len(s)) - 1)] / 1e6

        return cls(
            n=len(s),
            p50_ms=pct(50),
            p90_ms=pct(90),
            p99_ms=pct(99),
            mean_ms=sum(s) / len(s) / 1e6,
            min_ms=s[0] / 1e6,
            max_ms=s[-1] / 1e6,
            rps=len(s) / (wall_ns / 1e9),
        )

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in asdict(self).items()}


def wait_http_ok(proc: subprocess.Popen[bytes], host: str, port: int, path: str, timeout: float) -> bool:
    """Poll GET path until it answers 200; False if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        conn = http.client.HTTPConnection(host, port, timeout=2)
        try:
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return True
        except (OSError, http.client.HTTPException):
            pass
        finally:
            conn.close()
        time.sleep(0.05)
    return False


def stop_process(proc: subprocess.Popen[bytes], grace: float = 20.0) -> None:
    """SIGTERM, then SIGKILL (to its whole session/process group) after `grace` seconds."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
        return
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # started with start_new_session=True
    except OSError:
        proc.kill()
    proc.wait()


def run_guarded(measure: Callable[[], T], log: Callable[[str], None], errors: type[BaseException]) -> T | int:
    """Run measure() with SIGTERM unwinding through the finally blocks that stop the servers it
    started; on failure log why and return the exit status (1, or 130 when interrupted)."""

    def on_sigterm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        return measure()
    except errors as e:
        log(f"benchmark failed: {e}")
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130


def run_and_report(
    measure: Callable[[], T],
    summarize: Callable[[T], dict],
    print_report: Callable[[dict], None],
    as_json: bool,
    log: Callable[[str], None],
    errors: type[BaseException],
) -> int:
    """A benchmark's main after its arguments: measure (guarded, see run_guarded), then print the summary
    as JSON or as the report; the exit status."""
    results = run_guarded(measure, log, errors)
    if isinstance(results, int):
        return results
    print_summary(summarize(results), as_json, print_report)
    return 0


def print_summary(summary: dict, as_json: bool, print_report: Callable[[dict], None]) -> None:
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        print_report(summary)


def missing_cpus(*cpus: int) -> str | None:
    """Why the benchmark cannot pin to all of `cpus` (for "benchmark failed: ..."), or None when it can."""
    allowed = os.sched_getaffinity(0)
    if set(cpus) <= allowed:
        return None
    return f"needs CPUs {' and '.join(map(str, cpus))}, this process may use {sorted(allowed)}"


@contextlib.contextmanager
def pinned(cpu: int) -> Iterator[None]:
    """This thread on {cpu} for the block; processes started inside inherit that affinity."""
    saved = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, saved)


def pin_tree(pid: int, cpu: int, children_cpu: int | None = None) -> int:
    """Pin every thread of pid to cpu and of its descendants to children_cpu (default: cpu too), for
    processes started before; how many. New zygote forks inherit their zygote's affinity."""
    n = 0
    for p in process_tree(pid):
        try:
            tids = [int(t) for t in os.listdir(f"/proc/{p}/task")]
        except OSError:
            continue
        target = cpu if p == pid or children_cpu is None else children_cpu
        for tid in tids:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(tid, {target})
                n += 1
    return n


@contextlib.contextmanager
def server_failures(
    proc: subprocess.Popen[bytes], server_output: Callable[[], str], error: type[Exception]
) -> Iterator[None]:
    """Around the work against a `lamina serve`: an unexpected exception becomes `error` with the tail of
    the server's output, and so does the server having exited by the end of the block."""
    try:
        yield
    except error:
        raise
    except Exception as e:
        raise error(f"{type(e).__name__}: {e}\n--- server output (tail) ---\n{server_output()}") from e
    if proc.poll() is not None:
        raise error(f"server exited ({proc.returncode})\n{server_output()}")
