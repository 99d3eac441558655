"""A zygote's fork under the linux backend confines itself before it serves: namespaces of its own, its
environment's cgroups, a private /tmp, /dev/shm and /proc, then no privilege left and the environment's seccomp
filter.

The zygote runs unprivileged inside the sandbox the launcher made (launcher.py); each fork is born in a new user
namespace (its own, so unprivileged) together with new mount, pid, net, ipc and uts namespaces, which that user
namespace is what allows. Stdlib + ctypes only (sandbox_setup.py).
"""

from __future__ import annotations

import os

from . import sandbox_setup as setup

# The child is pid 1 of a pid namespace of its own, with its own network (loopback only), mounts and hostname.
NAMESPACES = (setup.CLONE_NEWUSER | setup.CLONE_NEWNS | setup.CLONE_NEWPID | setup.CLONE_NEWNET
              | setup.CLONE_NEWIPC | setup.CLONE_NEWUTS)


def fork() -> int:
    """os.fork(), the child in new namespaces (NAMESPACES), straight away and without privileges."""
    return setup.fork_into_namespaces(NAMESPACES)


def confine(procs: list[int], ids: tuple[int, int], tmp_mb: int, seccomp: bytes) -> None:
    """In a fresh fork: join the environment's cgroups (`procs`: its cgroup.procs files, open for writing), map our
    own ids (the zygote's, `ids`), mount a private /tmp (with a copy of the zygote's), /dev/shm and /proc, bring
    the loopback up, then drop every capability and load the seccomp filter. OSError if any step fails."""
    for fd in procs:  # join the environment's cgroups before anything else runs
        os.write(fd, b"0")
        os.close(fd)
    # Our uid is the zygote's, mapped to itself in the user namespace we were born in (until then getuid()
    # reports the overflow uid, so the zygote's ids come from before the clone).
    uid, gid = ids
    setup.map_own_ids(uid, gid)
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
