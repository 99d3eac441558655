"""Sockets inside another network namespace, made from the server (python-stack.md §3.3).

A socket belongs to the network namespace of the thread that created it, for its whole life, and
setns(CLONE_NEWNET) changes the namespace of the calling thread only. So one helper thread enters a
sandbox's namespace, creates a socket and comes back; the event loop then connects and uses the
socket as usual, and it reaches the sandbox's own 127.0.0.1. No veth, no addresses, no routing.

Python 3.11 has no os.setns, hence ctypes. Needs CAP_SYS_ADMIN over the namespace (the server is root).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

CLONE_NEWNET = 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_executor: ThreadPoolExecutor | None = None
_home = threading.local()
_lock = threading.Lock()


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns(CLONE_NEWNET): {os.strerror(err)}")


def _create(netns_fd: int, family: int, kind: int) -> socket.socket:
    home = getattr(_home, "fd", None)
    if home is None:
        home = _home.fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    _setns(netns_fd)
    try:
        return socket.socket(family, kind)
    finally:
        # Back home, so the thread does not keep a finished sandbox's namespace alive.
        with contextlib.suppress(OSError):
            _setns(home)


def _pool() -> ThreadPoolExecutor:
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(1, thread_name_prefix="lamina-netns")
        return _executor


async def socket_in(netns_fd: int, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM) -> socket.socket:
    """A new socket that lives in the network namespace netns_fd refers to."""
    return await asyncio.get_running_loop().run_in_executor(_pool(), _create, netns_fd, family, kind)


def _read_net(netns_fd: int | None, name: str) -> str:
    if netns_fd is None:
        with open(f"/proc/self/net/{name}") as fh:
            return fh.read()
    home = getattr(_home, "fd", None)
    if home is None:
        home = _home.fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    _setns(netns_fd)
    try:
        # /proc/thread-self/net shows the calling thread's network namespace: now the sandbox's.
        with open(f"/proc/thread-self/net/{name}") as fh:
            return fh.read()
    finally:
        with contextlib.suppress(OSError):
            _setns(home)


async def read_net(netns_fd: int | None, name: str) -> str:
    """A /proc/net table (`udp`, `udp6`, `tcp`, ...) as the namespace netns_fd refers to sees it (None: the
    server's own namespace)."""
    return await asyncio.get_running_loop().run_in_executor(_pool(), _read_net, netns_fd, name)


def bound_ports(table: str) -> set[int]:
    """The local ports in a /proc/net/udp or udp6 table (`local_address` is ADDRESS:PORT, the port in hex)."""
    ports: set[int] = set()
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 1 and ":" in fields[1]:
            ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports
