"""A zygote's network namespace maker: a small process forked from the zygote before its init (so it runs no
function code). It makes a user namespace of its own (unprivileged: it maps only its own ids), which the zygote
joins once its init is done (the owner of a user namespace may: the init itself runs without any capability), and
for each byte the server sends on its socket it makes a network namespace owned by that user namespace and sends
back a handle on it (SCM_RIGHTS). The zygote's forks, born in the zygote's user namespace, may join those (setns);
the server wires each one (a veth, an address, routes) before a fork joins it. Stdlib + ctypes only.
"""

from __future__ import annotations

import os
import socket

from . import sandbox_setup as setup

MAKER_FD_ENV = "_LAMINA_NETNS_MAKER_FD"
COMM = "lamina-netns"


def start(sock_fd: int) -> int:
    """Fork the maker on sock_fd (closed here); returns an fd of its user namespace for the zygote to join."""
    uid, gid = os.getuid(), os.getgid()
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid:
        os.close(sock_fd)
        os.close(ready_w)
        made = os.read(ready_r, 1)
        os.close(ready_r)
        if made != b"1":
            raise OSError("the network namespace maker could not make its user namespace")
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    try:
        setup.unshare(setup.CLONE_NEWUSER)
        setup.map_own_ids(uid, gid)
        os.write(ready_w, b"1")
        setup.die_with_parent()
        with open("/proc/self/comm", "w") as fh:
            fh.write(COMM)  # how tests and people tell it from the function's processes
        # Nothing of the zygote's but the maker's socket and the standard streams: the zygote's channel must
        # close when the zygote does.
        os.closerange(3, sock_fd)  # (ready_w among them)
        os.closerange(sock_fd + 1, 1 << 16)
        sock = socket.socket(fileno=sock_fd)
        while True:
            asked = sock.recv(64)
            if not asked:
                os._exit(0)
            for _ in asked:
                setup.unshare(setup.CLONE_NEWNET)
                fd = os.open("/proc/self/ns/net", os.O_RDONLY)
                socket.send_fds(sock, [b"N"], [fd])
                os.close(fd)
    except BaseException:
        os._exit(1)
