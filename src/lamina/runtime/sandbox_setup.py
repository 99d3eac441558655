"""Linux primitives for entering a sandbox, stdlib + ctypes only.

Used on the way in by launcher.py (as root on the host, before pivot_root) and inside the sandbox
by a zygote preparing each forked environment, so it cannot import anything of Lamina. Python 3.11
has no os.unshare / os.setns, hence ctypes.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import resource  # imported now: after pivot_root the launcher's own stdlib may be out of reach
import socket
import struct

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2

PR_SET_PDEATHSIG = 1
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4

SYS_pivot_root = 155  # x86_64
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


def setns(fd: int, nstype: int) -> None:
    _check(_libc.setns(fd, nstype), "setns")


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    _check(_libc.mount(source.encode() if source else None, target.encode(), fstype.encode() if fstype else None,
                       flags, data.encode() if data else None), f"mount {target}")


def umount(target: str, flags: int = MNT_DETACH) -> None:
    _check(_libc.umount2(target.encode(), flags), f"umount {target}")


def bind(source: str, target: str, readonly: bool = True) -> None:
    mount(source, target, None, MS_BIND | MS_REC)
    if readonly:
        # A bind mount ignores MS_RDONLY on the first call: read-only takes a remount.
        mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def pivot_root(new_root: str) -> None:
    """Make new_root the root and detach the old one (the pivot_root(".", ".") idiom)."""
    os.chdir(new_root)
    _check(_libc.syscall(SYS_pivot_root, b".", b"."), "pivot_root")
    umount(".", MNT_DETACH)
    os.chdir("/")


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(_libc.sethostname(raw, len(raw)), "sethostname")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _check(_libc.prctl(option, arg2, arg3, arg4, arg5), f"prctl({option})")


def die_with_parent(sig: int = 9) -> None:
    prctl(PR_SET_PDEATHSIG, sig)


def loopback_up() -> None:
    """A new network namespace has `lo` down; bring it up without the `ip` command."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        ifreq = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, ifreq))[1]
        fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def drop_privileges(uid: int, gid: int) -> None:
    """Become uid/gid with no capabilities left anywhere (bounding, ambient, effective)."""
    for cap in range(64):
        try:
            prctl(PR_CAPBSET_DROP, cap)
        except OSError:
            break  # past the last capability the kernel knows
    with contextlib.suppress(OSError):
        prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    # Leaving uid 0 clears the permitted and effective sets (no SECBIT_KEEP_CAPS).
    os.setresuid(uid, uid, uid)


# Docker's default capability set (by number): what a container's root may still do, over its own
# namespaces only when it is the root of a user namespace.
CONTAINER_CAPABILITIES = frozenset({0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31})


def limit_capabilities(keep: frozenset[int]) -> None:
    """Drop every capability but `keep` from the bounding set (so a root exec gets no more) and the
    ambient set; the current uid is unchanged."""
    for cap in range(64):
        if cap in keep:
            continue
        try:
            prctl(PR_CAPBSET_DROP, cap)
        except OSError:
            break
    with contextlib.suppress(OSError):
        prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def drop_capabilities() -> None:
    """Clear every capability set without changing uid (a new user namespace grants a full set)."""
    limit_capabilities(frozenset())
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (_CapData * 2)()
    _check(_libc.capset(ctypes.byref(header), data), "capset")


SYS_clone = 56  # x86_64
SIGCHLD = 17
_pyapi = ctypes.pythonapi
_libc_gil = ctypes.PyDLL(None, use_errno=True)  # keeps the GIL across the call, as os.fork does
_libc_gil.syscall.restype = ctypes.c_long


def fork_into_namespaces(flags: int) -> int:
    """os.fork(), but the child starts in new namespaces (raw clone(2) with CLONE_NEW* flags).

    One fork instead of fork + unshare + fork: with CLONE_NEWPID the child is at once pid 1 of its
    own pid namespace. CPython's before/after-fork hooks run exactly as in os.fork()."""
    _pyapi.PyOS_BeforeFork()
    pid = _libc_gil.syscall(SYS_clone, ctypes.c_ulong(flags | SIGCHLD), None, None, None, ctypes.c_ulong(0))
    err = ctypes.get_errno()
    if pid == 0:
        _pyapi.PyOS_AfterFork_Child()
        return 0
    _pyapi.PyOS_AfterFork_Parent()
    if pid < 0:
        raise OSError(err, f"clone: {os.strerror(err)}")
    return pid


def map_own_ids(uid: int, gid: int) -> None:
    """In a user namespace just made without privileges: map our own uid/gid to themselves."""
    write_file("/proc/self/uid_map", f"{uid} {uid} 1\n")
    write_file("/proc/self/setgroups", "deny")
    write_file("/proc/self/gid_map", f"{gid} {gid} 1\n")


def no_new_privs() -> None:
    prctl(PR_SET_NO_NEW_PRIVS, 1)


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def load_seccomp(program: bytes) -> None:
    """Install a classic-BPF seccomp program (raw sock_filter array, as libseccomp exports it)."""
    if not program or len(program) % 8:
        raise ValueError("seccomp program must be a non-empty array of 8-byte instructions")
    count = len(program) // 8
    buf = (_SockFilter * count).from_buffer_copy(program)
    prog = _SockFprog(count, ctypes.cast(buf, ctypes.POINTER(_SockFilter)))
    _check(_libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog), 0, 0), "seccomp")


def set_rlimits(limits: dict[str, int]) -> None:
    for name, value in limits.items():
        res = getattr(resource, name)
        resource.setrlimit(res, (value, value))


def write_file(path: str, data: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, data.encode())
    finally:
        os.close(fd)
