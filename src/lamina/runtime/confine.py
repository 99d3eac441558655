"""A zygote's fork under the linux backend confines itself before it serves: namespaces of its own, its
environment's cgroups, a private /tmp, /dev/shm and /proc, then no privilege left and the environment's seccomp
filter.

The zygote runs unprivileged inside the sandbox the launcher made (launcher.py), its init too. Each fork is born in
new mount, pid, ipc and uts namespaces and a new user namespace of its own (unprivileged; it maps the zygote's ids),
with a new network namespace (loopback only). A zygote whose environments have a network joins, once its init is
done, the user namespace its namespace maker made (netns_maker.py: unprivileged, only its own ids mapped); there it
holds the capabilities that building its forks' namespaces takes, which reach only namespaces made inside that user
namespace (not the sandbox's mounts or network). Its forks are then born in it, without a new network namespace, and
join the pre-wired one the server made from the maker's (setns takes capabilities over the namespace's owner).
Stdlib + ctypes only (sandbox_setup.py).
"""

from __future__ import annotations

import os

from . import sandbox_setup as setup

# The child is pid 1 of a pid namespace of its own, with its own mounts and hostname (and its own network: a new
# one, or a pre-wired one it joins).
NAMESPACES = setup.CLONE_NEWNS | setup.CLONE_NEWPID | setup.CLONE_NEWIPC | setup.CLONE_NEWUTS
# The zygote's uid and gid (read at import, in the zygote, before any fork: a fork in a new user namespace sees the
# overflow ids until it maps them).
ZYGOTE_IDS = (os.getuid(), os.getgid())


def join_user_namespace(fd: int) -> None:
    """In the zygote, after its init: into the maker's user namespace (the zygote's uid owns it). EINVAL if the
    init left threads running (a process with threads cannot change user namespace)."""
    setup.setns(fd, setup.CLONE_NEWUSER)
    os.close(fd)


def fork(new_network: bool = True, new_userns: bool = True) -> int:
    """os.fork(), the child in new namespaces (NAMESPACES, a new network namespace unless it will join one, a new
    user namespace unless the zygote has joined its maker's)."""
    flags = NAMESPACES | (setup.CLONE_NEWNET if new_network else 0) | (setup.CLONE_NEWUSER if new_userns else 0)
    return setup.fork_into_namespaces(flags)


def confine(procs: list[int], tmp_mb: int, seccomp: bytes, netns: int | None = None, map_ids: bool = True) -> None:
    """In a fresh fork: join the environment's cgroups (`procs`: its cgroup.procs files, open for writing), join
    the pre-wired network namespace `netns` if given, mount a private /tmp (with a copy of the zygote's), /dev/shm
    and /proc, bring the loopback up, then drop every capability and load the seccomp filter. OSError if any step
    fails."""
    for fd in procs:  # join the environment's cgroups before anything else runs
        os.write(fd, b"0")
        os.close(fd)
    if map_ids:
        # Our uid is the zygote's, mapped to itself in the user namespace we were born in (the zygote gave it
        # before the clone: until mapped, getuid() reports the overflow uid).
        uid, gid = ZYGOTE_IDS
        setup.map_own_ids(uid, gid)
    if netns is not None:
        setup.setns(netns, setup.CLONE_NEWNET)
        os.close(netns)
    uid = os.getuid()
    # pid 1 of the environment's own pid namespace, with its own /tmp, /proc and loopback.
    setup.die_with_parent()
    zygote_tmp = os.open("/tmp", os.O_RDONLY | os.O_DIRECTORY)
    setup.mount("tmpfs", "/tmp", "tmpfs", setup.MS_NOSUID | setup.MS_NODEV, f"size={tmp_mb}m,mode=1777")
    # What the function's init wrote to /tmp is part of the snapshot, as with SnapStart.
    if os.listdir(zygote_tmp):
        _copy_tree(zygote_tmp, "/tmp", uid)
    os.close(zygote_tmp)
    setup.mount("tmpfs", "/dev/shm", "tmpfs", setup.MS_NOSUID | setup.MS_NODEV, "size=64m,mode=1777")
    setup.mount("proc", "/proc", "proc", setup.MS_NOSUID | setup.MS_NODEV | setup.MS_NOEXEC)
    setup.sethostname("lamina")
    setup.loopback_up()
    setup.drop_capabilities()
    setup.no_new_privs()
    setup.load_seccomp(seccomp)


def _copy_tree(src_fd: int, dst: str, uid: int) -> None:
    """Copy a directory (given as an fd: its path is covered by a new mount) and hand it to uid."""
    for entry in os.scandir(src_fd):
        target = f"{dst}/{entry.name}"
        st = entry.stat(follow_symlinks=False)
        if entry.is_symlink():
            os.symlink(os.readlink(entry.name, dir_fd=src_fd), target)
        elif entry.is_dir(follow_symlinks=False):
            os.mkdir(target, st.st_mode & 0o7777)
            sub = os.open(entry.name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=src_fd)
            try:
                _copy_tree(sub, target, uid)
            finally:
                os.close(sub)
        elif entry.is_file(follow_symlinks=False):
            fin = os.open(entry.name, os.O_RDONLY, dir_fd=src_fd)
            fout = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, st.st_mode & 0o7777)
            try:
                while os.sendfile(fout, fin, None, 1 << 24):
                    pass
            finally:
                os.close(fin)
                os.close(fout)
        else:
            continue
        os.chown(target, uid, uid, follow_symlinks=False)
