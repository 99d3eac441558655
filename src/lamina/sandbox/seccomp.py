"""seccomp filters for sandboxes, compiled once with libseccomp and shipped as raw BPF bytes.

Why a deny-list (default ALLOW) rather than an allow-list: the code we run is arbitrary user code —
native wheels, web servers, numerical libraries, subprocesses of whatever the deployment package
brings — and an allow-list either breaks some of it in ways users can't debug (EPERM from a syscall
they never heard of) or grows until it allows nearly everything anyway. What matters is to close the
syscalls that attack the shared kernel or escape the sandbox's namespaces: module loading, kexec, bpf,
perf, userfaultfd, io_uring, keyrings, ptrace-class access, clocks, the new and old mount APIs and
namespace creation/joining. The rest of the isolation (namespaces, cgroups, no_new_privs, dropped
capabilities, rlimits) doesn't depend on the filter. The cost of the choice: a syscall added to a
future kernel is allowed until it's added here. Numbers that libseccomp 2.5 doesn't know by name are
given as numbers; every syscall since 424 has the same number on all architectures but alpha.

Two filters:
- `environment_filter()` for the function's processes;
- `zygote_filter()` for a zygote that still has to build each child's namespaces (unshare, mount,
  pivot_root, sethostname, clone with namespace flags) before the child loads `environment_filter()`
  on top (seccomp filters stack; the strictest answer wins).

clone's flags are its first argument (x86_64, arm64 and most others; not s390), so clone is filtered by
mask. clone3 passes its flags in memory a filter can't read: it gets ENOSYS, on which glibc (2.34+)
falls back to clone for threads and posix_spawn. A syscall from a non-native ABI (i386 via int 0x80,
x32) kills the process: the filter only understands the native syscall table.

The programs are exported as BPF bytes so a process with only the standard library (the sandboxed
runtime) can install them; `load_filter` is the reference loader for that, kept self-contained.
"""

from __future__ import annotations

import errno
import functools
import os

from lamina.runtime.sandbox_setup import (
    CLONE_NEWCGROUP,
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWUSER,
    CLONE_NEWUTS,
)

__all__ = ["environment_filter", "load_filter", "zygote_filter", "DENIED", "ZYGOTE_ALLOWED"]

# CLONE_NEWTIME (0x80) is only meaningful to unshare/clone3; for clone, 0x80 is part of the exit signal.
CLONE_NAMESPACE_FLAGS = (CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER,
                         CLONE_NEWPID, CLONE_NEWNET)

# Syscalls libseccomp 2.5.4 can't name, by their (all-architecture) number.
_BY_NUMBER = {"open_tree_attr": 467}

DENIED: tuple[str, ...] = (
    # other processes' memory and state
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    # the kernel itself
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "reboot",
    "bpf", "perf_event_open", "userfaultfd", "iopl", "ioperm", "uselib", "lookup_dcookie", "syslog",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    # keyrings (not namespaced)
    "keyctl", "add_key", "request_key",
    # host-wide state
    "swapon", "swapoff", "acct", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
    "quotactl", "quotactl_fd", "vhangup", "sethostname", "setdomainname",
    # filesystems and namespaces
    "open_by_handle_at", "name_to_handle_at",
    "mount", "umount2", "pivot_root", "chroot", "unshare", "setns",
    "fsopen", "fsmount", "fsconfig", "fspick", "move_mount", "open_tree", "mount_setattr", "open_tree_attr",
)

# What a zygote must still do to build each child's environment. setns only into a network or user namespace (see
# _build; net/plumbing.py, runtime/netns_maker.py); the new mount API stays denied: the classic one is enough.
ZYGOTE_ALLOWED: frozenset[str] = frozenset({"unshare", "mount", "umount2", "pivot_root", "sethostname",
                                            "setdomainname"})


def _build(zygote: bool) -> bytes:
    import pyseccomp as sc  # only the builder needs libseccomp; the loader doesn't

    eperm = sc.ERRNO(errno.EPERM)
    f = sc.SyscallFilter(sc.ALLOW)
    # Foreign ABIs (i386, x32) would be matched against the wrong syscall table: kill the whole process.
    f.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)
    for name in DENIED:
        if zygote and name in ZYGOTE_ALLOWED:
            continue
        if zygote and name == "setns":
            # Only into a network namespace (a fork joining its pre-wired one) or a user namespace (the zygote
            # joining its namespace maker's after init): nstype must be exactly one of those two bits.
            allowed = CLONE_NEWNET | CLONE_NEWUSER
            f.add_rule(eperm, "setns", sc.Arg(1, sc.EQ, 0))
            f.add_rule(eperm, "setns", sc.Arg(1, sc.MASKED_EQ, allowed, allowed))
            for bit in range(32):
                if not (1 << bit) & allowed:
                    f.add_rule(eperm, "setns", sc.Arg(1, sc.MASKED_EQ, 1 << bit, 1 << bit))
            continue
        nr = sc.resolve_syscall(sc.Arch.NATIVE, name)
        if nr < 0:  # libseccomp doesn't know it (new kernel syscall) or this arch doesn't have it
            if name not in _BY_NUMBER:
                continue
            nr = _BY_NUMBER[name]
        f.add_rule(eperm, nr)
    if not zygote:
        # One rule per flag: the rules are OR-ed, so any namespace bit makes clone fail.
        for flag in CLONE_NAMESPACE_FLAGS:
            f.add_rule(eperm, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
        f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    # personality: only PER_LINUX (0) and the 0xffffffff query. libseccomp can't put two comparisons on one
    # argument, so say "neither all-zero nor all-one" in single-mask rules: a 32-bit value that is neither
    # has, going round cyclically, some 1 bit followed by a 0 bit. The kernel only looks at the low 32 bits.
    for i in range(32):
        one, zero = 1 << i, 1 << ((i + 1) % 32)
        f.add_rule(eperm, "personality", sc.Arg(0, sc.MASKED_EQ, one | zero, one))
    fd = os.memfd_create("lamina-seccomp", os.MFD_CLOEXEC)
    with os.fdopen(fd, "w+b") as fh:
        f.export_bpf(fh)
        fh.seek(0)
        return fh.read()


@functools.cache
def environment_filter() -> bytes:
    """BPF for the function's processes (struct sock_filter array, native byte order)."""
    return _build(zygote=False)


@functools.cache
def zygote_filter() -> bytes:
    """BPF for a zygote: environment_filter() minus what building a child's namespaces needs."""
    return _build(zygote=True)


def load_filter(program: bytes) -> None:
    """Install `program` on the calling thread (and its future children/threads): no_new_privs, then
    PR_SET_SECCOMP. Stdlib only, so the sandboxed runtime can carry a copy. Threads that already exist
    keep running unfiltered: load before starting any."""
    import ctypes
    import os

    if not program or len(program) % 8:
        raise ValueError("a BPF program is a non-empty array of 8-byte instructions")

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    libc = ctypes.CDLL(None, use_errno=True)
    prctl = libc.prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    buf = ctypes.create_string_buffer(program, len(program))
    fprog = SockFprog(len(program) // 8, ctypes.addressof(buf))
    # PR_SET_NO_NEW_PRIVS = 38: required to install a filter without CAP_SYS_ADMIN, and wanted anyway.
    if prctl(38, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_NO_NEW_PRIVS): {os.strerror(err)}")
    # PR_SET_SECCOMP = 22, SECCOMP_MODE_FILTER = 2; the kernel copies the program, buf may go afterwards.
    if prctl(22, 2, ctypes.addressof(fprog), 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_SECCOMP): {os.strerror(err)}")
