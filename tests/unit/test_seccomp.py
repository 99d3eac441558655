"""lamina.sandbox.seccomp: filters are loaded in forked children, which report what worked."""

from __future__ import annotations

import ctypes
import errno
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="seccomp is Linux-only")

seccomp = pytest.importorskip("lamina.sandbox.seccomp")
pytest.importorskip("pyseccomp", reason="pyseccomp (and libseccomp.so.2) needed to build filters")

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWUSER = 0x20000, 0x4000000, 0x10000000
PTRACE_ATTACH = 16
X86_64 = platform.machine() == "x86_64"


def _in_child(body: Callable[[], object]) -> tuple[object, int]:
    """Run body() in a forked child; returns (its JSON-able result, exit code as subprocess reports it)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            out = json.dumps(body())
        except BaseException as exc:
            out, code = json.dumps(f"raised {exc!r}"), 99
        try:
            os.write(w, out.encode())
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    return (json.loads(b"".join(chunks)) if chunks else None), status


def _errno_of(fn: Callable[[], int]) -> int:
    """0 if a libc call succeeded, else its errno."""
    ctypes.set_errno(0)
    return 0 if fn() != -1 else ctypes.get_errno()


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def test_programs_are_cached_bpf() -> None:
    env, zyg = seccomp.environment_filter(), seccomp.zygote_filter()
    assert env is seccomp.environment_filter() and zyg is seccomp.zygote_filter()
    for prog in (env, zyg):
        assert isinstance(prog, bytes) and len(prog) % 8 == 0 and 0 < len(prog) // 8 < 4096
    assert env != zyg
    with pytest.raises(ValueError):
        seccomp.load_filter(b"\x00" * 7)


def test_environment_filter_denies_dangerous_calls_and_allows_normal_work(tmp_path) -> None:
    probe = tmp_path / "probe.txt"
    probe.write_text("hello")

    def body() -> dict:
        seccomp.load_filter(seccomp.environment_filter())
        res: dict[str, object] = {}
        res["unshare"] = _errno_of(lambda: _libc.unshare(CLONE_NEWNS))
        res["unshare_user"] = _errno_of(lambda: _libc.unshare(CLONE_NEWUSER))
        res["mount"] = _errno_of(lambda: _libc.mount(b"none", str(tmp_path).encode(), b"tmpfs", 0, None))
        res["umount2"] = _errno_of(lambda: _libc.umount2(b"/proc", 2))
        res["ptrace"] = _errno_of(lambda: _libc.ptrace(PTRACE_ATTACH, os.getppid(), None, None))
        res["setns"] = _errno_of(lambda: _libc.setns(os.open("/proc/self/ns/uts", os.O_RDONLY), 0))
        res["sethostname"] = _errno_of(lambda: _libc.sethostname(b"x", 1))
        res["personality_query"] = _libc.personality(0xFFFFFFFF) != -1
        res["personality_linux"] = _errno_of(lambda: _libc.personality(0))
        res["personality_norandom"] = _errno_of(lambda: _libc.personality(0x0040000))
        if X86_64:
            res["bpf"] = _errno_of(lambda: _libc.syscall(321, 0, 0, 0))
            res["io_uring_setup"] = _errno_of(lambda: _libc.syscall(425, 1, 0))
            res["clone3"] = _errno_of(lambda: _libc.syscall(435, 0, 0))
            ret = _libc.syscall(56, CLONE_NEWUTS | signal.SIGCHLD, 0, 0, 0, 0)  # raw clone with a ns flag
            if ret == 0:
                os._exit(0)
            res["clone_newuts"] = ctypes.get_errno() if ret == -1 else 0
        # normal work
        with open(probe) as fh:
            res["read"] = fh.read()
        a, b = socket.socketpair(socket.AF_UNIX)
        a.sendall(b"ping")
        res["unix_socket"] = b.recv(4).decode()
        box: list[int] = []
        t = threading.Thread(target=lambda: box.append(1))  # pthread_create: clone3 -> ENOSYS -> clone
        t.start()
        t.join()
        res["thread"] = box == [1]
        res["subprocess"] = subprocess.run(["/bin/true"]).returncode
        spawned = os.posix_spawn("/bin/true", ["true"], dict(os.environ))
        res["posix_spawn"] = os.waitstatus_to_exitcode(os.waitpid(spawned, 0)[1])
        pid = os.fork()
        if pid == 0:
            os._exit(7)
        res["fork"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        return res

    res, code = _in_child(body)
    assert code == 0, res
    assert isinstance(res, dict), res
    for name in ("unshare", "unshare_user", "mount", "umount2", "ptrace", "setns", "sethostname",
                 "personality_norandom"):
        assert res[name] == errno.EPERM, (name, res)
    assert res["personality_query"] is True and res["personality_linux"] == 0
    if X86_64:
        assert res["bpf"] == errno.EPERM and res["io_uring_setup"] == errno.EPERM
        assert res["clone3"] == errno.ENOSYS and res["clone_newuts"] == errno.EPERM
    assert res["read"] == "hello" and res["unix_socket"] == "ping" and res["thread"] is True
    assert res["subprocess"] == 0 and res["posix_spawn"] == 0 and res["fork"] == 7


@pytest.mark.skipif(not X86_64, reason="x32 syscall numbers exist only on x86_64")
def test_foreign_abi_syscall_kills_the_process() -> None:
    def body() -> str:
        seccomp.load_filter(seccomp.environment_filter())
        _libc.syscall(0x40000000 | 39)  # x32 getpid
        return "survived"

    res, code = _in_child(body)
    assert res is None and code == -signal.SIGSYS


@pytest.mark.skipif(os.geteuid() != 0, reason="unshare(CLONE_NEWNS) needs root")
def test_zygote_filter_allows_namespace_setup_but_not_ptrace() -> None:
    def body() -> dict:
        seccomp.load_filter(seccomp.zygote_filter())
        res = {
            "unshare_ns": _errno_of(lambda: _libc.unshare(CLONE_NEWNS | CLONE_NEWUTS)),
            "sethostname": _errno_of(lambda: _libc.sethostname(b"sandbox", 7)),
            "ptrace": _errno_of(lambda: _libc.ptrace(PTRACE_ATTACH, os.getppid(), None, None)),
            "setns": _errno_of(lambda: _libc.setns(os.open("/proc/self/ns/uts", os.O_RDONLY), 0)),
        }
        # A child then stacks the environment filter: namespace calls are closed again.
        seccomp.load_filter(seccomp.environment_filter())
        res["unshare_after_env"] = _errno_of(lambda: _libc.unshare(CLONE_NEWNS))
        return res

    res, code = _in_child(body)
    assert code == 0, res
    assert res == {"unshare_ns": 0, "sethostname": 0, "ptrace": errno.EPERM, "setns": errno.EPERM,
                   "unshare_after_env": errno.EPERM}


def test_loader_needs_only_the_standard_library() -> None:
    """The exported bytes load in a fresh interpreter that can't import pyseccomp (or lamina)."""
    prog = seccomp.environment_filter()
    import inspect
    import textwrap

    loader = textwrap.dedent(inspect.getsource(seccomp.load_filter))
    script = (
        "import sys, os, ctypes\n"
        "sys.modules['pyseccomp'] = None\n"  # make sure nothing could use it
        f"{loader}\n"
        "load_filter(sys.stdin.buffer.read())\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print(libc.unshare(0x20000), ctypes.get_errno())\n"
    )
    out = subprocess.run([sys.executable, "-I", "-S", "-c", script], input=prog, capture_output=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [b"-1", str(errno.EPERM).encode()]
