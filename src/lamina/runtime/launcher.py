"""Enter a Linux sandbox, then exec the runtime or bootstrap (run by `lamina serve` as root).

    python -I -S launcher.py fd:N      (N: a memfd with the JSON config; or the JSON itself)

A fresh single-threaded process (never a preexec_fn of the multi-threaded server) does, in order:
join the sandbox's cgroups (before anything runs, so nothing runs unconfined) -> new mount namespace
and a minimal read-only root (host /usr, /lib*, /bin, a few /etc files; code at /var/task, runtime at
/var/runtime) -> pivot_root -> new user, pid, net, ipc, uts and cgroup namespaces, in-namespace root
mapped to an unprivileged host uid range -> fork (the child is pid 1 of the new pid namespace) ->
/proc, loopback, hostname -> optionally a Runtime API socket bound inside the namespace and a handle
on the namespace (to reach a web server in it), sent to the server -> either drop every privilege,
load the environment seccomp filter and exec the bootstrap ("exec" mode), or do the same with the
zygote filter and exec the Python zygote, whose forks each enter a new, unprivileged user namespace
to get namespaces of their own ("zygote" mode).

A MicroVM sandbox (config key "mounts", lamina/microvm/rootfs.py) differs in three places: its root
is built from overlay and bind mounts and stays writable; its app runs as the root of its user
namespace with a container's default capabilities (or as the image's USER) and argv[0] is looked up
in PATH; an image build's RUN step ("share_net") keeps the host's network.

This launcher stays as the sandbox's outermost process and exits with pid 1's status, so the server
watches one child per sandbox. Stdlib only.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import sandbox_setup as ss

SANDBOX_UID = 1000  # inside the namespace; the host sees uid_base + 1000


def _fail(msg: str) -> None:
    os.write(2, f"lamina sandbox: {msg}\n".encode())
    os._exit(126)


def _build_root(cfg: dict) -> None:
    root = cfg["root"]
    ss.unshare(ss.CLONE_NEWNS)
    ss.mount(None, "/", None, ss.MS_REC | ss.MS_PRIVATE)
    ss.mount("tmpfs", root, "tmpfs", ss.MS_NOSUID | ss.MS_NODEV, "size=4m,mode=755")
    for name in ("usr", "lib", "lib32", "lib64", "bin", "sbin"):
        host = "/" + name
        if os.path.islink(host):
            os.symlink(os.readlink(host), f"{root}/{name}")
        elif os.path.isdir(host):
            os.mkdir(f"{root}/{name}")
            ss.bind(host, f"{root}/{name}")
    for d in ("etc", "var", "var/task", "var/runtime", "tmp", "proc", "dev", "opt", "dev/shm"):
        os.mkdir(f"{root}/{d}")
    os.chmod(f"{root}/tmp", 0o1777)
    for name, text in cfg["etc_files"].items():
        with open(f"{root}/etc/{name}", "w") as fh:
            fh.write(text)
    for name in cfg["etc_binds"]:
        host = f"/etc/{name}"
        if os.path.isdir(host):
            os.mkdir(f"{root}/etc/{name}")
            ss.bind(host, f"{root}/etc/{name}")
        elif os.path.exists(host):
            open(f"{root}/etc/{name}", "w").close()
            ss.bind(host, f"{root}/etc/{name}")
    for dev in ("null", "zero", "full", "random", "urandom", "tty"):
        open(f"{root}/dev/{dev}", "w").close()
        ss.mount(f"/dev/{dev}", f"{root}/dev/{dev}", None, ss.MS_BIND)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{root}/dev/{name}")
    ss.bind(cfg["code_dir"], f"{root}/var/task")
    if cfg.get("opt_dir"):
        ss.bind(cfg["opt_dir"], f"{root}/opt")  # the function's layers, read-only as on AWS
    ss.bind(cfg["runtime_dir"], f"{root}/var/runtime")
    if cfg.get("lang_home"):
        # The function's interpreter (pyenv, uv, nvm...): its installation read-only at the same path, where its
        # absolute RUNPATH and compiled-in prefix point.
        os.makedirs(f"{root}{cfg['lang_home']}")
        ss.bind(cfg["lang_home"], f"{root}{cfg['lang_home']}")
    # Its usual names where AWS's runtimes have them: python, python3, python3.X or node in /var/lang/bin.
    os.makedirs(f"{root}/var/lang/bin")
    if cfg.get("sdk_dir"):
        os.mkdir(f"{root}/var/lang/sdk")  # the AWS SDKs Lamina ships (sandbox/base.py: sdk_root)
        ss.bind(cfg["sdk_dir"], f"{root}/var/lang/sdk")
    for name, target in cfg.get("lang_bin", {}).items():
        os.symlink(target, f"{root}/var/lang/bin/{name}")
    tmp_opts = f"size={int(cfg['tmp_mb'])}m,mode=1777"
    ss.mount("tmpfs", f"{root}/tmp", "tmpfs", ss.MS_NOSUID | ss.MS_NODEV, tmp_opts)
    ss.mount("tmpfs", f"{root}/dev/shm", "tmpfs", ss.MS_NOSUID | ss.MS_NODEV, "size=64m,mode=1777")
    ss.pivot_root(root)
    ss.mount(None, "/", None, ss.MS_REMOUNT | ss.MS_BIND | ss.MS_RDONLY | ss.MS_NOSUID | ss.MS_NODEV)


def _overlay_escape(path: str) -> str:
    """overlayfs splits its options on ',' and lower dirs on ':'; a backslash escapes both."""
    return path.replace("\\", "\\\\").replace(":", "\\:").replace(",", "\\,")


def _build_layered_root(cfg: dict) -> None:
    """A MicroVM's root ("mounts" mode): overlay and bind mounts from the server's plan (see
    lamina/microvm/rootfs.py), a private /dev, and a root that stays writable (its upper dirs are
    the instance's private disk)."""
    root = cfg["root"]
    ss.unshare(ss.CLONE_NEWNS)
    ss.mount(None, "/", None, ss.MS_REC | ss.MS_PRIVATE)
    for op in cfg["mounts"]:
        target = root + op["target"].rstrip("/") if op["target"] != "/" else root
        if op["op"] == "overlay":
            lower = ":".join(_overlay_escape(p) for p in op["lower"])
            ss.mount("overlay", target, "overlay", 0, f"lowerdir={lower},upperdir={_overlay_escape(op['upper'])},"
                     f"workdir={_overlay_escape(op['work'])}")
        else:
            ss.bind(op["source"], target, readonly=bool(op.get("ro", True)))
    ss.mount("tmpfs", f"{root}/dev", "tmpfs", ss.MS_NOSUID | ss.MS_NOEXEC, "size=64k,mode=755")
    for dev in ("null", "zero", "full", "random", "urandom", "tty"):
        open(f"{root}/dev/{dev}", "w").close()
        ss.mount(f"/dev/{dev}", f"{root}/dev/{dev}", None, ss.MS_BIND)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2"), ("ptmx", "pts/ptmx")):
        os.symlink(target, f"{root}/dev/{name}")
    for d in ("shm", "pts", "mqueue"):
        os.mkdir(f"{root}/dev/{d}")
    ss.mount("tmpfs", f"{root}/dev/shm", "tmpfs", ss.MS_NOSUID | ss.MS_NODEV, "size=64m,mode=1777")
    ss.pivot_root(root)


class _IdMapper:
    """A helper that stays in the host's namespaces (and sees the host's /proc) and writes the
    sandbox's id maps once it has a new user namespace: only a root of the parent namespace may
    map a range of ids."""

    def __init__(self, base: int) -> None:
        self.pid_r, self.pid_w = os.pipe()
        self.ready_r, self.ready_w = os.pipe()
        self.done_r, self.done_w = os.pipe()
        self.helper = os.fork()
        if self.helper == 0:
            self._run(base)

    def _run(self, base: int) -> None:
        try:
            target = int(os.read(self.pid_r, 32) or b"0")
            if target and os.read(self.ready_r, 1) == b"1":
                for kind in ("uid_map", "gid_map"):
                    ss.write_file(f"/proc/{target}/{kind}", f"0 {base} 65536\n")
                os.write(self.done_w, b"1")
        except OSError as exc:
            os.write(2, f"lamina sandbox: id maps: {exc}\n".encode())
        finally:
            os._exit(0)

    def target(self, pid: int) -> None:
        """In the launcher: the process whose maps to write (host pid)."""
        os.write(self.pid_w, str(pid).encode())

    def enter(self, share_net: bool = False) -> None:
        """In that process: new user (+mount, net, ipc, uts, cgroup) namespaces, mapped, as their root.
        share_net keeps the host's network (a MicroVM image build, whose RUN lines may download)."""
        net = 0 if share_net else ss.CLONE_NEWNET
        try:
            ss.unshare(ss.CLONE_NEWUSER | ss.CLONE_NEWNS | net | ss.CLONE_NEWIPC | ss.CLONE_NEWUTS
                       | ss.CLONE_NEWCGROUP)
        except OSError:
            os.write(self.ready_w, b"0")
            raise
        os.write(self.ready_w, b"1")
        if os.read(self.done_r, 1) != b"1":
            _fail("could not write the user namespace's id maps")
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
        os.setgroups([])


def _send_handles(channel_fd: int, runtime_api: bool, netns: bool) -> None:
    """Give the server, in this order: a listening socket on 127.0.0.1:9001 inside this network
    namespace (the Runtime API), and a handle on the namespace itself (to reach servers in it)."""
    fds = []
    if runtime_api:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 9001))
        listener.listen(64)
        fds.append(listener.detach())
    if netns:
        fds.append(os.open("/proc/self/ns/net", os.O_RDONLY))
    channel = socket.socket(fileno=os.dup(channel_fd))
    socket.send_fds(channel, [b"A"], fds)
    channel.detach()
    for fd in fds:
        os.close(fd)


def _relay_exit(pid: int) -> None:
    """Outermost process: mirror pid 1's fate so the server sees one exit status."""

    def relay(signum: int, _frame: object) -> None:
        os.kill(pid, signal.SIGKILL if signum != signal.SIGTERM else signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, relay)
    while True:
        try:
            # Any child: the id-map helper exits early and must be reaped, or it stays a zombie as long
            # as the sandbox lives.
            done, status = os.waitpid(-1, 0)
        except ChildProcessError:
            os._exit(1)
        if done == pid:
            break
    if os.WIFSIGNALED(status):
        killed_by = os.WTERMSIG(status)
        if killed_by != signal.SIGKILL:  # SIGKILL (the OOM killer's, a kill -9) has no handler to reset: EINVAL
            signal.signal(killed_by, signal.SIG_DFL)
        os.kill(os.getpid(), killed_by)
        os._exit(128 + killed_by)
    os._exit(os.WEXITSTATUS(status))


def _exec_in_path(argv: list[str], env: dict[str, str]) -> None:
    """execvpe without os.execvpe (which imports modules the pivoted root may not have): argv[0] is
    looked up in the PATH of the environment it runs with."""
    error: OSError = FileNotFoundError(2, "not found in PATH", argv[0])
    for directory in env.get("PATH", "/usr/local/bin:/usr/bin:/bin").split(":"):
        try:
            os.execve(f"{directory or '.'}/{argv[0]}", argv, env)
        except (FileNotFoundError, NotADirectoryError) as exc:
            error = exc if not isinstance(error, PermissionError) else error
        except PermissionError as exc:
            error = exc
    raise error


def _load_config(arg: str) -> dict:
    # "fd:N": the server hands the config over in a memfd, as argv is readable by every user of the
    # host (and the config holds the function's environment variables). Closed here: the app never
    # inherits it.
    if not arg.startswith("fd:"):
        return json.loads(arg)
    fd = int(arg[3:])
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    os.close(fd)
    return json.loads(b"".join(chunks))


def main() -> None:
    cfg = _load_config(sys.argv[1])
    ss.die_with_parent()
    if cfg.get("sched_batch") and cfg.get("mode") != "zygote":
        # Inherited by everything the sandbox runs (fork and exec keep the policy). A zygote keeps the ordinary
        # policy, as it forks environments on the server's request (a cold start waits for it); each fork sets
        # SCHED_BATCH for itself (zygote_server._become_environment).
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    for path in cfg.get("cgroup_procs", ()):
        ss.write_file(path, "0")
    mapper = _IdMapper(int(cfg["uid_base"]))
    try:
        if cfg.get("mounts") is not None:
            _build_layered_root(cfg)
        else:
            _build_root(cfg)
        ss.unshare(ss.CLONE_NEWPID)
    except OSError as exc:
        _fail(f"cannot set up the sandbox: {exc}")
    pid = os.fork()
    if pid:
        mapper.target(pid)
        _relay_exit(pid)
    # pid 1 of the sandbox's pid namespace. /proc is mounted while still root of the host's user
    # namespace (a user namespace may only mount a proc when one is already fully visible).
    try:
        ss.die_with_parent()
        ss.mount("proc", "/proc", "proc", ss.MS_NOSUID | ss.MS_NODEV | ss.MS_NOEXEC)
        share_net = bool(cfg.get("share_net"))
        join = cfg.get("join_netns")
        if join is not None:
            # The function's pre-wired network namespace (eth0, routes and loopback already up), joined while
            # still root of the host's user namespace: it stays owned by that, out of the function's reach.
            ss.setns(int(join), ss.CLONE_NEWNET)
            os.close(int(join))
        mapper.enter(share_net or join is not None)
        ss.sethostname(cfg.get("hostname", "lamina"))
        if not share_net and join is None:
            ss.loopback_up()
        if cfg.get("runtime_api") or cfg.get("netns"):
            _send_handles(int(cfg["channel_fd"]), bool(cfg.get("runtime_api")), bool(cfg.get("netns")))
        hard = ss.resource.getrlimit(ss.resource.RLIMIT_NOFILE)[1]
        nofile = int(cfg.get("nofile", 1024))
        ss.set_rlimits({"RLIMIT_CORE": 0, "RLIMIT_NOFILE": nofile if hard < 0 else min(nofile, hard)})
        # The function's code (a zygote's init included) never runs with privileges. A zygote's
        # filter still allows unshare and mount: each fork makes a user namespace of its own, without
        # privileges, to get new pid/net/mount namespaces and a private /tmp.
        user = cfg.get("user")
        if user is not None and user[0] == 0:
            # A MicroVM's app runs as its image's root, as in a container: root of its own user
            # namespace, with only a container's default capabilities (valid over its namespaces only).
            ss.limit_capabilities(ss.CONTAINER_CAPABILITIES)
            os.setgroups([])
            if user[1]:
                os.setresgid(user[1], user[1], user[1])
        else:
            uid, gid = user if user is not None else (SANDBOX_UID, SANDBOX_UID)
            ss.drop_privileges(uid, gid)
        ss.no_new_privs()
        ss.load_seccomp(bytes.fromhex(cfg["seccomp"]))
        os.chdir(cfg.get("cwd", "/var/task"))
    except OSError as exc:
        _fail(f"cannot set up the sandbox: {exc}")
    argv = cfg["argv"]
    try:
        if cfg.get("search_path") and "/" not in argv[0]:
            _exec_in_path(argv, cfg["env"])
        os.execve(argv[0], argv, cfg["env"])
    except OSError as exc:
        _fail(f"cannot start {argv[0]}: {exc.strerror or exc}")


if __name__ == "__main__":
    main()
