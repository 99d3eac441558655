#!/usr/bin/env python3
"""Killing an environment's processes through its cgroup, against signalling each process directly.

    sudo .venv/bin/python bench/cgroup_kill.py [--rounds 200] [--procs 4] [--json]

Needs root (it makes cgroups with lamina.sandbox.cgroups, under /sys/fs/cgroup/*/lamina/bench-...).
Each round forks a family of --procs processes (a parent and its sleeping children, as an environment's
runtime and what it started), lets it sleep --idle seconds (an idle environment), then times, from the
kill to the moment no process of the family is left:

  cgroup    the family in a cgroup of its own: Cgroup.kill() (cgroup.kill on cgroup v2, else freeze,
            SIGKILL each member, thaw) and Cgroup.wait_empty(), as Lamina stops an environment.
  baseline  the same family, not in a cgroup: SIGKILL to each of its pids (known in advance) and
            waitpid for each: the floor under any way of stopping these processes.

The script is the families' subreaper and reaps them at once in both cases (on a cgroup v1 hierarchy
a killed process leaves the group only once it is reaped).

Rounds alternate between the two so that both see the same machine load. Only prints figures: the
exit status is 0 whether the target is met or not, 1 if the benchmark cannot run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import platform
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from _common import Stats, run_and_report

# cgroup kill p50 <= this multiple of the direct-signal p50 (see bench/README.md).
TARGET_RATIO = 3.0
WAIT_S = 5.0
PR_SET_CHILD_SUBREAPER = 36


class BenchError(Exception):
    pass


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def fork_family(procs: int, before_children: Callable[[int], None]) -> list[int]:
    """Fork a parent that forks procs - 1 sleeping children; before_children(parent) runs first (to put
    the parent in a cgroup, which its children then inherit). Returns every pid of the family."""
    go_r, go_w = os.pipe()
    res_r, res_w = os.pipe()
    parent = os.fork()
    if parent == 0:
        try:
            os.close(go_w)
            os.close(res_r)
            os.read(go_r, 1)
            kids = []
            for _ in range(procs - 1):
                kid = os.fork()
                if kid == 0:
                    time.sleep(600)
                    os._exit(0)
                kids.append(kid)
            os.write(res_w, " ".join(map(str, kids)).encode() + b"\n")
            time.sleep(600)
        finally:
            os._exit(0)
    os.close(go_r)
    os.close(res_w)
    try:
        before_children(parent)
        os.write(go_w, b"x")
        data = b""
        while not data.endswith(b"\n"):
            chunk = os.read(res_r, 4096)
            if not chunk:
                raise BenchError("the family's parent died before forking its children")
            data += chunk
    finally:
        os.close(go_w)
        os.close(res_r)
    return [parent, *map(int, data.split())]


def become_subreaper() -> None:
    """Orphans of the families become this process's children (not the host's pid 1's), so that this process
    reaps them at once: a killed process is gone from its cgroup once it is reaped."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise BenchError(f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}")


def reap_family(family: list[int]) -> None:
    """Wait for (and reap) the parent, then its children, which were ours as soon as it exited."""
    for pid in family:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from lamina.sandbox.cgroups import CgroupLayout, CgroupTree

    if os.geteuid() != 0:
        raise BenchError("needs root (it makes cgroups)")
    layout = CgroupLayout.detect()
    if layout is None:
        raise BenchError("no writable cgroup hierarchies found")
    become_subreaper()
    tree = CgroupTree(layout, f"bench-{uuid.uuid4().hex[:8]}")
    loop = asyncio.new_event_loop()
    cgroup_ns: list[int] = []
    direct_ns: list[int] = []
    try:
        for i in range(args.rounds):
            group = tree.create(f"kill{i}", memory_mb=args.memory)
            family = fork_family(args.procs, group.attach)
            if len(group.pids()) != args.procs:
                raise BenchError(f"{len(group.pids())} processes in the cgroup, expected {args.procs}")
            time.sleep(args.idle)
            reaper = threading.Thread(target=reap_family, args=(family,))
            t0 = time.perf_counter_ns()
            group.kill()
            reaper.start()
            empty = loop.run_until_complete(group.wait_empty(WAIT_S))
            cgroup_ns.append(time.perf_counter_ns() - t0)
            reaper.join()
            if not empty:
                raise BenchError(f"the cgroup was not empty {WAIT_S:g} s after kill()")
            group.remove()

            family = fork_family(args.procs, lambda pid: None)
            time.sleep(args.idle)
            t0 = time.perf_counter_ns()
            for pid in family:
                os.kill(pid, signal.SIGKILL)
            reap_family(family)
            direct_ns.append(time.perf_counter_ns() - t0)
    finally:
        loop.close()
        tree.close()
    return {"cgroup": cgroup_ns, "direct": direct_ns, "mode": layout.mode}


def summarize(results: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    cg = Stats.from_ns(results["cgroup"], sum(results["cgroup"]))
    direct = Stats.from_ns(results["direct"], sum(results["direct"]))
    ratio = cg.p50_ms / direct.p50_ms
    return {
        "settings": {"rounds": args.rounds, "procs": args.procs, "memory_mb": args.memory, "idle_s": args.idle,
                     "cgroup_mode": results["mode"]},
        "cgroup": cg.as_dict(),
        "baseline": direct.as_dict(),
        "ratio_p50": round(ratio, 3),
        "target": {"max_ratio": TARGET_RATIO, "value": round(ratio, 3), "pass": ratio <= TARGET_RATIO},
        "env": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()},
    }


def print_report(s: dict[str, Any]) -> None:
    st = s["settings"]
    print(f"Kill a family of {st['procs']} processes, idle {st['idle_s']:g} s, until none is left — {st['rounds']} "
          f"rounds each; cgroup of a {st['memory_mb']} MB function, cgroups {st['cgroup_mode']}; host: "
          f"{s['env']['cpus']} CPUs")
    for key, label in (("cgroup", "cgroup kill"), ("baseline", "SIGKILL each")):
        r = s[key]
        print(f"  {label:13} p50 {r['p50_ms']:7.3f} ms  p90 {r['p90_ms']:7.3f}  p99 {r['p99_ms']:7.3f}  "
              f"max {r['max_ms']:7.3f}")
    t = s["target"]
    print(f"target: cgroup kill p50 <= {TARGET_RATIO:g}x SIGKILL-each p50 — {'PASS' if t['pass'] else 'FAIL'} "
          f"({t['value']:.2f}x)")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=200, help="rounds of each kind (default 200)")
    p.add_argument("--procs", type=int, default=4, help="processes in a family (default 4)")
    p.add_argument("--memory", type=int, default=128,
                   help="the cgroup's MemorySize in MB, which sets its CPU quota as for a function (default 128)")
    p.add_argument("--idle", type=float, default=0.15,
                   help="seconds a family sleeps before the kill (default 0.15: more than one 100 ms CPU "
                        "period, so that forking it left no CPU throttling behind; 0 kills it at once)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.procs < 1 or args.memory < 1 or args.idle < 0:
        p.error("--rounds, --procs and --memory must be >= 1, --idle >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_and_report(lambda: measure(args), lambda results: summarize(results, args), print_report,
                          args.json, log, BenchError)


if __name__ == "__main__":
    sys.exit(main())
