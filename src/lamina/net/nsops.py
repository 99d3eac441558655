"""Network namespaces from the server, on one thread of their own.

setns(CLONE_NEWNET) moves only the calling thread, and a netlink socket belongs to the namespace of the thread that
made it. So every namespace operation runs on one worker thread ("lamina-net"), which enters a namespace, makes what
it needs there (a netlink socket for pyroute2, a new namespace, a sysctl write) and goes home again; the event loop
thread never changes namespace. Python 3.11 has no os.setns / os.unshare, hence ctypes (needs root).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from pyroute2 import IPRoute

CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MNT_DETACH = 2
NETNS_DIR = "/run/netns"   # where `ip netns` keeps named namespaces: named ones show up there too

_libc = ctypes.CDLL(None, use_errno=True)
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
PR_SET_NAME = 15


def _name_os_thread() -> None:
    # The kernel's name for the thread too (top -H, /proc/<pid>/task/*/comm: bench/vpc.py reads its CPU there).
    _libc.prctl(PR_SET_NAME, b"lamina-net", 0, 0, 0)


_executor = ThreadPoolExecutor(1, thread_name_prefix="lamina-net", initializer=_name_os_thread)
_home = threading.local()
T = TypeVar("T")


async def run(fn: Callable[..., T], *args: Any) -> T:
    """fn(*args) on the namespace thread."""
    return await asyncio.get_running_loop().run_in_executor(_executor, fn, *args)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _home_fd() -> int:
    fd = getattr(_home, "fd", None)
    if fd is None:
        fd = _home.fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    return fd


def setns(fd: int) -> None:
    _check(_libc.setns(fd, CLONE_NEWNET), "setns")


@contextlib.contextmanager
def inside(netns_fd: int) -> Iterator[None]:
    """This thread in another network namespace for the block (namespace thread only)."""
    home = _home_fd()
    setns(netns_fd)
    try:
        yield
    finally:
        setns(home)


def new_netns() -> int:
    """A new, empty network namespace owned by the host's user namespace, as an fd (it lives while the fd does)."""
    home = _home_fd()
    _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
    try:
        return os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        setns(home)


def named_netns(name: str) -> int:
    """new_netns(), also bound at /run/netns/NAME (so `ip netns` shows it and a later server finds what a dead one
    left); returns the fd."""
    fd = new_netns()
    os.makedirs(NETNS_DIR, exist_ok=True)
    path = f"{NETNS_DIR}/{name}"
    with open(path, "w"):
        pass
    try:
        _check(_libc.mount(f"/proc/self/fd/{fd}".encode(), path.encode(), None, MS_BIND, None), f"bind {path}")
    except OSError:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    return fd


def remove_named(name: str) -> None:
    """Unbind /run/netns/NAME (the namespace goes once nothing else holds it)."""
    path = f"{NETNS_DIR}/{name}"
    _libc.umount2(path.encode(), MNT_DETACH)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def netlink_socket(netns_fd: int) -> socket.socket:
    """An rtnetlink socket on the namespace: made inside it (a netlink socket acts on the namespace it was made in)."""
    with inside(netns_fd):
        return socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, socket.NETLINK_ROUTE)


def ipr(netns_fd: int | None = None) -> IPRoute:
    """A pyroute2 handle on the namespace (None: the host's). The socket is made inside it: pyroute2's own IPRoute()
    made on a thread after setns is not bound to that namespace."""
    if netns_fd is None:
        return IPRoute()
    return IPRoute(use_socket=netlink_socket(netns_fd))


def sysctl(netns_fd: int | None, key: str, value: str) -> str:
    """Write net.* sysctl `key` (dotted) inside the namespace; returns the old value."""
    path = "/proc/sys/" + key.replace(".", "/")

    def write() -> str:
        with open(path, "r+") as fh:
            old = fh.read().strip()
            fh.seek(0)
            fh.write(value)
        return old

    if netns_fd is None:
        return write()
    with inside(netns_fd):
        return write()


def nft(netns_name: str | None, commands: list[dict]) -> None:
    """Run nftables JSON commands (`nft -j -f -`), inside /run/netns/NAME or on the host; one atomic batch."""
    argv = ["nft", "-j", "-f", "-"]
    if netns_name is not None:
        argv = ["nsenter", f"--net={NETNS_DIR}/{netns_name}", *argv]
    proc = subprocess.run(argv, input=json.dumps({"nftables": commands}).encode(), capture_output=True, check=False)
    if proc.returncode != 0:
        raise OSError(f"nft failed in {netns_name or 'the host'}: {proc.stderr.decode(errors='replace').strip()}")
