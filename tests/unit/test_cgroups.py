"""lamina.sandbox.cgroups against the host's real cgroups (root only), plus a simulated cgroup v2 tree."""

from __future__ import annotations

import asyncio
import ctypes
import dataclasses
import mmap
import os
import signal
import struct
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lamina.sandbox import cgroups
from lamina.sandbox.cgroups import Cgroup, CgroupLayout, CgroupTree

IS_ROOT = sys.platform.startswith("linux") and os.geteuid() == 0
LAYOUT = CgroupLayout.detect() if IS_ROOT else None
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root on Linux to manage cgroups")
needs_cgroups = pytest.mark.skipif(LAYOUT is None, reason="needs root and writable cgroup hierarchies")


def _fork(body: Callable[[], int | None]) -> int:
    """Run body() in a forked child that never returns into pytest."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = body() or 0
        except BaseException:
            code = 99
        finally:
            os._exit(code)
    return pid


def _sleeper() -> int:
    return _fork(lambda: time.sleep(60))


def _reap(pid: int, timeout: float = 5.0) -> int:
    """Exit code as subprocess reports it (-9 for SIGKILL)."""
    deadline = time.monotonic() + timeout
    while True:
        got, status = os.waitpid(pid, os.WNOHANG)
        if got:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        time.sleep(0.005)


def _wait_empty(group: Cgroup) -> bool:
    return asyncio.run(group.wait_empty(5.0))


def _tree_dirs(tree: CgroupTree) -> list[str]:
    assert tree.layout is not None
    mounts = {*tree.layout.v1.values(), tree.layout.unified} - {None}
    return [f"{m}/lamina/{tree.instance}" for m in mounts if os.path.exists(f"{m}/lamina/{tree.instance}")]


def _v1_only(layout: CgroupLayout) -> CgroupLayout:
    """A hybrid host seen as if it had no cgroup2: exercises the v1 freezer / kill fallback for real."""
    return dataclasses.replace(layout, mode="v1", unified=None, v2_controllers=frozenset())


@pytest.fixture(params=["host", "v1-only"])
def tree(request: pytest.FixtureRequest) -> Iterator[CgroupTree]:
    assert LAYOUT is not None
    layout = LAYOUT
    if request.param == "v1-only":
        if LAYOUT.mode != "hybrid" or "freezer" not in LAYOUT.v1:
            pytest.skip("the v1-only variant needs a hybrid host with a v1 freezer")
        layout = _v1_only(LAYOUT)
    t = CgroupTree(layout, f"test-{uuid.uuid4().hex[:10]}")
    try:
        yield t
    finally:
        t.close()
    assert _tree_dirs(t) == []


def _file(group: Cgroup, name: str) -> str:
    for d in group.dirs:
        if os.path.exists(f"{d}/{name}"):
            return Path(d, name).read_text().strip()
    raise AssertionError(f"{name} not found in {group.dirs}")


def _has(group: Cgroup, name: str) -> bool:
    return any(os.path.exists(f"{d}/{name}") for d in group.dirs)


@needs_root
def test_detect_matches_the_host() -> None:
    assert LAYOUT is not None
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        assert LAYOUT.mode == "v2" and LAYOUT.unified == "/sys/fs/cgroup"
    elif os.path.isdir("/sys/fs/cgroup/unified") and os.path.isdir("/sys/fs/cgroup/memory"):
        assert LAYOUT.mode == "hybrid" and LAYOUT.unified == "/sys/fs/cgroup/unified"
        assert LAYOUT.v1["memory"] == "/sys/fs/cgroup/memory"
    else:
        assert LAYOUT.mode in ("v1", "hybrid", "v2")


@needs_cgroups
def test_create_writes_limits(tree: CgroupTree) -> None:
    g = tree.create("limits", memory_mb=256, pids_max=77)
    assert g.name == "limits" and all(os.path.isdir(d) for d in g.dirs)
    assert len(g.procs_files()) == len(g.dirs)
    mib256 = str(256 * 1024 * 1024)
    quota = round(256 / 1769 * 100_000)
    if _has(g, "memory.limit_in_bytes"):  # v1
        assert _file(g, "memory.limit_in_bytes") == mib256
        if _has(g, "memory.memsw.limit_in_bytes"):
            assert _file(g, "memory.memsw.limit_in_bytes") == mib256
        assert _file(g, "cpu.cfs_period_us") == "100000"
        assert _file(g, "cpu.cfs_quota_us") == str(quota)
        assert _file(g, "cpu.shares") == str(round(1024 * 256 / 1769))
    else:  # v2
        assert _file(g, "memory.max") == mib256
        if _has(g, "memory.swap.max"):
            assert _file(g, "memory.swap.max") == "0"
        assert _file(g, "cpu.max") == f"{quota} 100000"
        assert _file(g, "cpu.weight") == str(round(100 * 256 / 1769))
    assert _file(g, "pids.max") == "77"
    if tree.layout.unified is None and "freezer" in tree.layout.v1:  # v1 freezes (and kills) via freezer.state
        assert any(d.startswith(tree.layout.v1["freezer"] + "/") for d in g.dirs)
    assert g.pids() == [] and not g.oom_killed()

    tiny = tree.create("tiny-cpu", memory_mb=128, cpu_vcpus=0.0001)
    big = tree.create("two-cpus", memory_mb=128, cpu_vcpus=2)
    if _has(tiny, "cpu.cfs_quota_us"):
        assert _file(tiny, "cpu.cfs_quota_us") == "1000"  # the 1 ms floor
        assert _file(big, "cpu.cfs_quota_us") == "200000"
    else:
        assert _file(tiny, "cpu.max") == "1000 100000"
        assert _file(big, "cpu.max") == "200000 100000"

    with pytest.raises(FileExistsError):
        tree.create("limits", memory_mb=128)
    with pytest.raises(ValueError):
        tree.create("../escape", memory_mb=128)
    g.remove()
    g.remove()  # idempotent
    assert not any(os.path.exists(d) for d in g.dirs)


@needs_cgroups
def test_oom_kill_is_detected(tree: CgroupTree) -> None:
    g = tree.create("oom", memory_mb=32)
    go_r, go_w = os.pipe()

    def hog() -> int:
        os.read(go_r, 1)
        data = b"\x01" * (64 * 1024 * 1024)  # touched pages: twice the limit
        return len(data) and 0

    pid = _fork(hog)
    try:
        g.attach(pid)
        assert g.pids() == [pid] and not g.oom_killed()
        os.write(go_w, b"x")
        assert _reap(pid) == -signal.SIGKILL
    finally:
        os.close(go_r)
        os.close(go_w)
    assert g.oom_killed()
    peak = g.memory_peak_bytes()
    assert peak is not None and 16 * 1024 * 1024 < peak <= 33 * 1024 * 1024
    assert _wait_empty(g)
    g.remove()


@needs_cgroups
def test_pids_limit_stops_a_fork_loop(tree: CgroupTree) -> None:
    g = tree.create("forkloop", memory_mb=128, pids_max=6)
    go_r, go_w = os.pipe()
    res_r, res_w = os.pipe()

    def forker() -> int:
        os.read(go_r, 1)
        made = 0
        err = 0
        for _ in range(50):
            try:
                child = os.fork()
            except OSError as exc:
                err = exc.errno or 0
                break
            if child == 0:
                time.sleep(60)
                os._exit(0)
            made += 1
        os.write(res_w, f"{made} {err}".encode())
        time.sleep(60)
        return 0

    pid = _fork(forker)
    try:
        g.attach(pid)
        os.write(go_w, b"x")
        made, err = map(int, os.read(res_r, 100).split())
        assert made == 5 and err == 11  # EAGAIN once 6 tasks are in the group
        assert len(g.pids()) == 6
        g.kill()
        assert _wait_empty(g)
    finally:
        for fd in (go_r, go_w, res_r, res_w):
            os.close(fd)
        assert _reap(pid) == -signal.SIGKILL
    g.remove()


@needs_cgroups
def test_kill_wait_remove_leaves_nothing(tree: CgroupTree) -> None:
    g = tree.create("killme", memory_mb=64)
    go_r, go_w = os.pipe()
    res_r, res_w = os.pipe()

    def family() -> int:
        os.read(go_r, 1)
        for _ in range(3):
            if os.fork() == 0:
                time.sleep(60)
                os._exit(0)
        os.write(res_w, b"forked")
        time.sleep(60)
        return 0

    pid = _fork(family)
    try:
        g.attach(pid)
        os.write(go_w, b"x")
        assert os.read(res_r, 10) == b"forked"
        assert len(g.pids()) == 4
        g.kill()  # one call: nothing signals the family again (bench/cgroup_kill.py times it)
        assert _wait_empty(g)
        assert g.pids() == []
    finally:
        for fd in (go_r, go_w, res_r, res_w):
            os.close(fd)
        assert _reap(pid) == -signal.SIGKILL
    g.remove()
    assert not any(os.path.exists(d) for d in g.dirs)
    assert tree.get("killme") is None


@needs_cgroups
def test_freeze_and_thaw_a_busy_process(tree: CgroupTree) -> None:
    g = tree.create("busy", memory_mb=64)
    counter = mmap.mmap(-1, 8)  # shared with the child

    def spin() -> int:
        n = 0
        while True:
            n += 1
            counter[:8] = struct.pack("Q", n)

    def value() -> int:
        return struct.unpack("Q", counter[:8])[0]

    def counts_past(n: int) -> bool:
        """Whether the child gets past n (polled: on a busy host it may wait a while for a CPU)."""
        deadline = time.monotonic() + 10
        while value() <= n and time.monotonic() < deadline:
            time.sleep(0.005)
        return value() > n

    pid = _fork(spin)
    try:
        g.attach(pid)
        assert counts_past(0)
        g.freeze()
        a = value()
        time.sleep(0.05)
        assert value() == a  # frozen: not a single step more
        g.thaw()
        assert counts_past(a)
        g.freeze()  # kill must work on a frozen group
        g.kill()
        assert _wait_empty(g)
    finally:
        assert _reap(pid) == -signal.SIGKILL
        counter.close()
    g.remove()


@needs_cgroups
def test_remove_stale_trees(tree: CgroupTree) -> None:
    dead = _fork(lambda: 0)
    _reap(dead)
    stale = CgroupTree(tree.layout, str(dead))  # as if a server with that pid had crashed
    try:
        g = stale.create("orphan", memory_mb=64)
        victim = _sleeper()
        g.attach(victim)
        assert tree.remove_stale() >= 1
        assert _reap(victim) == -signal.SIGKILL
        assert _tree_dirs(stale) == []
        assert _tree_dirs(tree) != []  # ours is not numeric, and alive anyway
    finally:
        stale.close()


@needs_cgroups
def test_close_kills_and_removes_everything() -> None:
    assert LAYOUT is not None
    t = CgroupTree(LAYOUT, f"test-close-{uuid.uuid4().hex[:8]}")
    try:
        victims = [_sleeper(), _sleeper()]
        t.create("a", memory_mb=64).attach(victims[0])
        t.create("b", memory_mb=64).attach(victims[1])
    finally:
        t.close()
    assert [_reap(v) for v in victims] == [-signal.SIGKILL, -signal.SIGKILL]
    assert _tree_dirs(t) == []


@needs_cgroups
def test_child_joins_through_inherited_procs_fds(tree: CgroupTree) -> None:
    g = tree.create("joiner", memory_mb=64)
    fds = g.open_procs_fds()
    res_r, res_w = os.pipe()

    def join() -> int:
        for fd in fds:
            os.write(fd, b"0")
        os.write(res_w, b"joined")
        time.sleep(60)
        return 0

    try:
        pid = _fork(join)
        assert os.read(res_r, 10) == b"joined"
    finally:
        for fd in (*fds, res_r, res_w):
            os.close(fd)
    for d in g.dirs:
        assert pid in [int(p) for p in Path(d, "cgroup.procs").read_text().split()]
    g.kill()
    assert _wait_empty(g)
    assert _reap(pid) == -signal.SIGKILL
    g.remove()


@needs_cgroups
def test_join_from_a_user_namespace_as_an_unprivileged_uid(tree: CgroupTree) -> None:
    """OpenLambda's trick: fds opened by root still work after the child became nobody in new user+pid ns."""
    g = tree.create("userns", memory_mb=64)
    fds = g.open_procs_fds()
    res_r, res_w = os.pipe()
    libc = ctypes.CDLL(None, use_errno=True)
    clone_newuser, clone_newpid = 0x10000000, 0x20000000

    def outer() -> int:
        os.setgroups([])
        os.setresgid(65534, 65534, 65534)
        os.setresuid(65534, 65534, 65534)
        try:
            os.open(g.procs_files()[0], os.O_WRONLY)
            os.write(res_w, b"bad: nobody could open cgroup.procs itself\n")
        except PermissionError:
            pass
        if libc.unshare(clone_newuser | clone_newpid) != 0:
            os.write(res_w, f"skip: unshare errno {ctypes.get_errno()}\n".encode())
            return 0

        def inner() -> int:
            for fd in fds:
                os.write(fd, b"0")
            os.write(res_w, f"ok {os.getpid()} {os.getuid()}\n".encode())
            time.sleep(60)
            return 0

        host_pid = _fork(inner)  # pid 1 of the new pid namespace; fork() reports its host pid to us
        os.write(res_w, f"pid {host_pid}\n".encode())
        os.waitpid(host_pid, 0)
        return 0

    try:
        pid = _fork(outer)
        lines: list[str] = []
        while len(lines) < 2:
            chunk = os.read(res_r, 1000).decode()
            assert chunk, f"child ended early: {lines}"
            lines += chunk.splitlines()
            if any(line.startswith(("skip", "bad")) for line in lines):
                break
    finally:
        for fd in (*fds, res_r, res_w):
            os.close(fd)
    try:
        if any(line.startswith("skip") for line in lines):
            pytest.skip(f"user namespaces unavailable: {lines}")
        assert not any(line.startswith("bad") for line in lines), lines
        ok = next(line for line in lines if line.startswith("ok")).split()
        host_pid = int(next(line for line in lines if line.startswith("pid")).split()[1])
        assert ok[1] == "1"  # pid 1 in its namespace
        assert ok[2] == "65534"  # overflow uid: nothing mapped into the user namespace
        for d in g.dirs:
            assert host_pid in [int(p) for p in Path(d, "cgroup.procs").read_text().split()]
        status = Path(f"/proc/{host_pid}/status").read_text()
        assert "\nUid:\t65534\t65534\t65534\t65534" in status
    finally:
        g.kill()
        assert _wait_empty(g)
        _reap(pid)
    g.remove()


def test_v2_writes_on_a_simulated_hierarchy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cgroup v2 code path, on plain directories that mimic cgroupfs (this host may not be v2)."""
    files = ["cgroup.procs", "cgroup.subtree_control", "cgroup.events", "cgroup.kill", "cgroup.freeze",
             "memory.max", "memory.swap.max", "memory.peak", "memory.events", "cpu.max", "cpu.weight", "pids.max"]
    real_mkdir = os.mkdir

    def fake_mkdir(path: str, mode: int = 0o777) -> None:
        real_mkdir(path, mode)
        for name in files:
            Path(path, name).write_text("")

    root = tmp_path / "cg"
    real_mkdir(root)
    for name in files:
        (root / name).write_text("")
    monkeypatch.setattr(os, "mkdir", fake_mkdir)
    layout = CgroupLayout(mode="v2", v1={}, unified=str(root), v2_controllers=frozenset({"memory", "cpu", "pids"}))
    tree = CgroupTree(layout, "1234")
    for d in (root, root / "lamina", root / "lamina" / "1234"):
        assert (d / "cgroup.subtree_control").read_text() == "+memory +cpu +pids"
    g = tree.create("fn", memory_mb=3538)  # two vCPUs' worth
    d = root / "lamina" / "1234" / "fn"
    assert g.dirs == [str(d)]
    assert (d / "memory.max").read_text() == str(3538 * 1024 * 1024)
    assert (d / "memory.swap.max").read_text() == "0"
    assert (d / "cpu.max").read_text() == "200000 100000"
    assert (d / "cpu.weight").read_text() == "200"
    assert (d / "pids.max").read_text() == "1024"
    (d / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    (d / "memory.peak").write_text("12345\n")
    assert g.oom_killed() and g.memory_peak_bytes() == 12345
    g.kill()
    assert (d / "cgroup.kill").read_text() == "1"
    (d / "cgroup.events").write_text("populated 0\nfrozen 1\n")
    g.freeze()
    assert (d / "cgroup.freeze").read_text() == "1"
    assert cgroups.TOP == "lamina"
