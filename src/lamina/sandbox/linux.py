"""The `linux` backend: namespaces, a minimal read-only root, cgroups and seccomp (needs root).

Every sandbox starts as `python -I -S lamina/runtime/launcher.py fd:N` (its JSON config in a memfd,
never in argv, which every user can read), a fresh single-threaded process that joins the sandbox's
cgroups, builds and pivots into its root, enters new user / pid / net / ipc / uts / cgroup
namespaces and execs the runtime (see launcher.py for the order). A Python
function's zygote is started that way too, and each environment forked from it joins cgroups of its
own and enters its own namespaces (runtime/zygote_server.py). Kill and clean-up go
through the cgroup, so nothing a function starts can outlive its environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from lamina.runtime.python_handler import SECCOMP_ENV
from lamina.sandbox import hostguard, netns, seccomp
from lamina.sandbox.base import (
    UID_BASE,
    ExitCallback,
    ExitProtocol,
    ForkedSandbox,
    Sandbox,
    SandboxBackend,
    SandboxError,
    SandboxSpec,
)
from lamina.sandbox.cgroups import MB_PER_VCPU, Cgroup, CgroupLayout, CgroupTree
from lamina.sandbox.interpreters import Interpreter

log = logging.getLogger("lamina.sandbox")

RUNTIME_DIR = Path(__file__).resolve().parent.parent / "runtime"
RUNTIME_API_TIMEOUT_S = 10.0
FORK_CHARGE_MB = 3  # kernel memory a live fork leaves charged to its zygote (measured ~1.7 MB)

# The few /etc files a runtime needs; nothing else of the host's /etc is visible.
_ETC_FILES = {
    "passwd": "root:x:0:0:root:/root:/usr/sbin/nologin\nsbx_user1051:x:1000:1000::/tmp:/usr/sbin/nologin\n"
              "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
    "group": "root:x:0:\nsbx_user1051:x:1000:\nnogroup:x:65534:\n",
    "hosts": "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    "resolv.conf": "",
    "nsswitch.conf": "passwd: files\ngroup: files\nhosts: files dns\nservices: files\nprotocols: files\n",
    "hostname": "lamina\n",
}
_ETC_BINDS = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "ssl", "ca-certificates", "alternatives", "localtime",
              "mime.types", "protocols", "services", "python3", "python3.11", "os-release")


class _Freezable:
    cgroup: Cgroup

    def freeze(self) -> bool:
        try:
            self.cgroup.freeze(wait=False)
        except OSError:
            return False
        return True

    def thaw(self) -> None:
        with contextlib.suppress(OSError):
            self.cgroup.thaw()


class LinuxSandbox(_Freezable, Sandbox):
    def __init__(self, transport: asyncio.SubprocessTransport, cgroup: Cgroup,
                 api_socket: socket.socket | None = None, netns_fd: int | None = None,
                 vcpus_after_init: float | None = None) -> None:
        self.transport = transport
        self.pid: int = transport.get_pid()
        self.cgroup = cgroup
        self.runtime_api_socket = api_socket
        self.netns_fd = netns_fd
        self._vcpus_after_init = vcpus_after_init  # an init boost: the CPU share end_init() sets

    def end_init(self) -> None:
        if self._vcpus_after_init is not None:
            with contextlib.suppress(OSError):
                self.cgroup.set_cpu(self._vcpus_after_init)
            self._vcpus_after_init = None

    async def _tcp_socket(self) -> socket.socket:
        if self.netns_fd is None:
            raise OSError("the sandbox handed over no network handle")
        return await netns.socket_in(self.netns_fd)

    def kill(self) -> None:
        self.cgroup.kill()

    def terminate(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)

    async def cleanup(self) -> None:
        await _destroy(self.cgroup)
        self.transport.close()
        if self.netns_fd is not None:
            os.close(self.netns_fd)  # the last reference: the namespace goes with it
            self.netns_fd = None

    def max_memory_bytes(self) -> int | None:
        return self.cgroup.memory_peak_bytes()

    def oom_killed(self) -> bool:
        return self.cgroup.oom_killed()

    def settle(self, memory_mb: int, max_forks: int) -> None:
        # Init had the host's CPUs; from now on one vCPU, enough to fork at full speed (forks run on
        # the zygote's CPU share until they join their own cgroups) while whatever init left running
        # gets no more. Memory: each live fork leaves kernel memory (page tables, task structs)
        # charged to the zygote's cgroup, about 2 MB measured, so the limit grows by that per fork.
        self.cgroup.set_cpu(1.0)
        self.cgroup.set_memory(memory_mb + FORK_CHARGE_MB * max_forks)


class LinuxForked(_Freezable, ForkedSandbox):
    """An environment forked from a zygote: it joins `cgroup` itself through the fds it is sent."""

    def __init__(self, cgroup: Cgroup, vcpus_after_init: float | None = None) -> None:
        self.cgroup = cgroup
        self.fds = tuple(cgroup.open_procs_fds())
        self._vcpus_after_init = vcpus_after_init  # an init boost (init in each environment): see end_init

    def end_init(self) -> None:
        if self._vcpus_after_init is not None:
            with contextlib.suppress(OSError):
                self.cgroup.set_cpu(self._vcpus_after_init)
            self._vcpus_after_init = None

    def kill(self) -> None:
        self.cgroup.kill()

    def terminate(self) -> None:
        self.cgroup.kill()  # pid 1 of its namespace ignores SIGTERM; the runtime exits on EOF anyway

    async def cleanup(self) -> None:
        self.close_fds()
        await _destroy(self.cgroup)

    def max_memory_bytes(self) -> int | None:
        return self.cgroup.memory_peak_bytes()

    def oom_killed(self) -> bool:
        return self.cgroup.oom_killed()

    def confined(self) -> bool:
        # Every hierarchy: a fork that joined only some would escape the others' limits.
        try:
            return all(_has_members(path) for path in self.cgroup.procs_files())
        except OSError:
            return False


def _has_members(procs_file: str) -> bool:
    with open(procs_file) as fh:
        return bool(fh.read().strip())


# Host directories every sandbox shows already (launcher.py binds them); an interpreter installed under one needs
# no mount of its own.
_VISIBLE_DIRS = ("/usr", "/lib", "/lib32", "/lib64", "/bin", "/sbin")
# Paths the sandbox's root makes for itself: an interpreter cannot be shown there.
_SANDBOX_DIRS = ("/var/task", "/var/runtime", "/var/lang", "/tmp", "/proc", "/dev", "/etc")


def _under(path: str, dirs: tuple[str, ...]) -> bool:
    return any(path == d or path.startswith(d + "/") for d in dirs)


def _lang_home(lang: Interpreter | None) -> str | None:
    """The interpreter's installation root to bind read-only at the same path (where its absolute RUNPATH and
    sys.prefix point), or None when the sandbox shows it already. SandboxError for a root that would show more
    of the host than one installation."""
    if lang is None or _under(lang.home, _VISIBLE_DIRS):
        return None
    home = os.path.normpath(lang.home)
    if home.count("/") < 2 or _under(home, _SANDBOX_DIRS):
        raise SandboxError(f"{lang.runtime}'s interpreter {lang.executable} is installed in {home}, which the "
                           "sandbox cannot show on its own: install it in a directory of its own (such as "
                           "/opt/python3.12 or ~/.pyenv/versions/3.12.1)")
    return home


def _root_mountpoint(parent: str) -> str:
    """An empty directory each sandbox mounts its root on (in its own mount namespace), named after
    this server's pid; those of servers that died without cleaning up are removed here."""
    for path in glob.glob(f"{parent}/lamina-root-*"):
        pid = path.rsplit("-", 1)[-1]
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            shutil.rmtree(path, ignore_errors=True)
    path = f"{parent}/lamina-root-{os.getpid()}"
    os.makedirs(path, mode=0o755, exist_ok=True)
    os.chmod(path, 0o755)
    return path


def _favor_dynamic_cgroups() -> None:
    """Make moving a process between cgroups cheap (favordynmods on the cgroup2 mount).

    Every environment joins its cgroups on the cold-start path. Without this, each join waits for
    an RCU grace period (the kernel's cgroup_threadgroup_rwsem favours readers): measured 4-20 ms
    for four joins here, against ~0.1 ms with it. The flag is host-wide and only makes fork/exit
    slightly dearer; it needs a cgroup2 mount (kernel >= 6.0; hybrid hosts have one too).
    """
    try:
        with open("/proc/self/mountinfo") as fh:
            mounts = [line.split() for line in fh]
    except OSError:
        return
    for fields in mounts:
        sep = fields.index("-")
        if fields[sep + 1] == "cgroup2":
            if "favordynmods" in fields[sep + 3].split(","):
                return
            result = subprocess.run(["mount", "-o", "remount,favordynmods", fields[4]], capture_output=True)
            if result.returncode != 0:
                log.info("cgroup2 favordynmods unavailable (%s): cgroup joins stay slow on this kernel",
                         result.stderr.decode().strip())
            else:
                log.info("remounted %s with favordynmods: cheaper cgroup joins on the cold-start path", fields[4])
            return


async def _destroy(cgroup: Cgroup) -> None:
    cgroup.kill()
    await cgroup.wait_empty()
    cgroup.remove()


def _config_fd(config: str) -> int:
    """A memfd holding the launcher's JSON config, at offset 0 (close-on-exec here; pass_fds hands it on)."""
    fd = os.memfd_create("lamina-sandbox-config", os.MFD_CLOEXEC)
    try:
        view = memoryview(config.encode())
        while view:
            view = view[os.write(fd, view):]
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


class LinuxBackend(SandboxBackend):
    name = "linux"
    isolated = True
    private_network = True

    def __init__(self) -> None:
        if os.geteuid() != 0:
            raise SandboxError("the linux sandbox needs root; run as root or use --sandbox process")
        layout = CgroupLayout.detect()
        if layout is None:
            raise SandboxError("the linux sandbox needs cgroups (none are mounted); use --sandbox process")
        self.layout = layout
        self.cgroups = CgroupTree(layout)
        self.cgroups.remove_stale()
        _favor_dynamic_cgroups()
        base = "/run" if os.path.isdir("/run") else None
        self.root_dir = _root_mountpoint(base or tempfile.gettempdir())
        # The launcher runs on the host (it builds the sandbox): the server's own interpreter, outside its venv.
        self.host_python = getattr(sys, "_base_executable", None) or sys.executable
        self._guard_warned = False
        self._env_filter = seccomp.environment_filter().hex()
        self._zygote_filter = seccomp.zygote_filter().hex()

    def describe(self) -> str:
        return f"linux (isolated: namespaces, seccomp, cgroups {self.layout.mode})"

    def task_root(self, spec: SandboxSpec) -> str:
        return "/var/task"

    def runtime_dir(self) -> str:
        return "/var/runtime"

    def lang_bin_dir(self, lang: Interpreter) -> str:
        return "/var/lang/bin"

    def zygote_env(self) -> dict[str, str]:
        return {SECCOMP_ENV: self._env_filter}

    def _config(self, spec: SandboxSpec, cgroup: Cgroup, env: dict[str, str], channel_fd: int | None,
                join_netns: int | None = None) -> str:
        config = {
            "root": self.root_dir,
            "code_dir": str(spec.code_dir),
            "opt_dir": str(spec.opt_dir) if spec.opt_dir is not None else None,
            "runtime_dir": str(RUNTIME_DIR),
            "lang_home": _lang_home(spec.lang),
            "sdk_dir": str(spec.sdk_dir) if spec.sdk_dir is not None else None,
            "lang_bin": {name: spec.lang.executable for name in spec.lang.command_names} if spec.lang else {},
            "tmp_mb": spec.ephemeral_mb,
            "uid_base": UID_BASE,
            "cgroup_procs": cgroup.procs_files(),
            "etc_files": _ETC_FILES,
            "etc_binds": _ETC_BINDS,
            "mode": "zygote" if spec.zygote else "exec",
            "sched_batch": self.scheduling == "batch",
            "seccomp": self._zygote_filter if spec.zygote else self._env_filter,
            "runtime_api": spec.runtime_api,
            "netns": spec.network_handle,
            "join_netns": join_netns,
            "channel_fd": channel_fd,
            "argv": spec.argv,
            "env": env,
            "cwd": "/var/task",
        }
        if spec.layered is not None:
            config.update(spec.layered, search_path=True)
        return json.dumps(config)

    async def start(self, spec: SandboxSpec, on_exit: ExitCallback) -> Sandbox:
        loop = asyncio.get_running_loop()
        try:
            # A zygote's init runs once for every environment after it, so it is not held to the
            # memory-proportional CPU share (Lambda, too, is generous with CPU during init).
            vcpus = float(os.cpu_count() or 1) if spec.zygote or spec.init_boost else spec.cpu_vcpus
            cgroup = self.cgroups.create(spec.name, spec.memory_mb, pids_max=spec.pids_max, cpu_vcpus=vcpus)
        except OSError as exc:
            raise SandboxError(f"cannot create the sandbox's cgroups: {exc}") from exc
        if spec.guard_host:
            self._guard_host(cgroup)
        env = dict(spec.env)
        pass_fds = list(spec.pass_fds)
        ours = theirs = None
        join = None
        if spec.network is not None and spec.network != "none" and self.networks is not None:
            # A pre-wired namespace of the function's network (lamina/net/), joined before the sandbox makes its
            # user namespace: the namespace stays the host's, so the function cannot reconfigure it.
            try:
                join = await self.networks.host_netns(spec.network)
            except Exception as exc:
                await _destroy(cgroup)
                raise SandboxError(f"cannot give the sandbox its network: {exc}") from exc
            if join is not None:
                pass_fds.append(join)
        if spec.runtime_api:
            env["AWS_LAMBDA_RUNTIME_API"] = "127.0.0.1:9001"
        if spec.runtime_api or spec.network_handle:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            pass_fds.append(theirs.fileno())
        # The config (the function's environment variables among it) goes in a memfd, not in argv:
        # every user of the host can read /proc/PID/cmdline, for as long as the launcher lives.
        config_fd = _config_fd(self._config(spec, cgroup, env, theirs.fileno() if theirs else None, join))
        pass_fds.append(config_fd)
        out = spec.log_fd if spec.log_fd is not None else asyncio.subprocess.DEVNULL
        try:
            transport, _ = await loop.subprocess_exec(
                lambda: ExitProtocol(on_exit), self.host_python, "-I", "-S", str(RUNTIME_DIR / "launcher.py"),
                f"fd:{config_fd}", stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out, env={}, cwd="/",
                pass_fds=tuple(pass_fds), start_new_session=True)
        except OSError as exc:
            if ours is not None:
                ours.close()
            await _destroy(cgroup)
            raise SandboxError(f"cannot start the sandbox: {exc.strerror or exc}") from exc
        finally:
            os.close(config_fd)
            if join is not None:
                os.close(join)  # the sandbox holds it now (it goes with the sandbox's last process)
            if theirs is not None:
                theirs.close()
        api_socket = netns_fd = None
        if ours is not None:
            want = int(spec.runtime_api) + int(spec.network_handle)
            try:
                fds = await asyncio.wait_for(_receive_fds(ours, want), RUNTIME_API_TIMEOUT_S)
            except (OSError, TimeoutError, EOFError) as exc:
                await _destroy(cgroup)
                transport.close()
                raise SandboxError("the sandbox failed before its Runtime API was ready (see the function's log)") \
                    from exc
            finally:
                ours.close()
            if spec.runtime_api:
                api_socket = socket.socket(fileno=fds.pop(0))
                api_socket.setblocking(False)
            if spec.network_handle:
                netns_fd = fds.pop(0)
        after_init = (spec.cpu_vcpus or spec.memory_mb / MB_PER_VCPU) if spec.init_boost else None
        return LinuxSandbox(transport, cgroup, api_socket, netns_fd, after_init)

    def _guard_host(self, cgroup: Cgroup) -> None:
        """Before anything runs in it: the cgroup's sockets may not reach the host's own addresses
        (sandbox/hostguard.py). Without cgroup BPF on this kernel, say so once and go on."""
        unified = self.layout.unified
        target = next((d for d in cgroup.dirs if unified and d.startswith(unified.rstrip("/") + "/")), None)
        try:
            if target is None:
                raise OSError("no cgroup v2 hierarchy")
            hostguard.guard(target)
        except OSError as exc:
            if not self._guard_warned:
                self._guard_warned = True
                log.warning("cannot keep sandboxes that share the host's network away from the host's own "
                            "addresses (%s): image builds can reach services listening on this host", exc)

    def prepare_fork(self, spec: SandboxSpec) -> ForkedSandbox:
        try:
            if spec.init_boost:  # its init runs in it (LAMINA_INIT=per-environment): the host's CPUs until READY
                cgroup = self.cgroups.create(spec.name, spec.memory_mb, cpu_vcpus=float(os.cpu_count() or 1))
                return LinuxForked(cgroup, spec.cpu_vcpus or spec.memory_mb / MB_PER_VCPU)
            return LinuxForked(self.cgroups.create(spec.name, spec.memory_mb))
        except OSError as exc:
            raise SandboxError(f"cannot create the environment's cgroups: {exc}") from exc

    def close(self) -> None:
        self.cgroups.close()
        shutil.rmtree(self.root_dir, ignore_errors=True)


async def _receive_fds(sock: socket.socket, count: int) -> list[int]:
    """The handles the sandbox sent (SCM_RIGHTS): its Runtime API listener bound inside its network
    namespace and/or a handle on that namespace, in that order."""
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    fut: asyncio.Future = loop.create_future()

    def readable() -> None:
        try:
            _data, fds, _flags, _addr = socket.recv_fds(sock, 16, count)
        except BlockingIOError:
            return
        except OSError as exc:
            if not fut.done():
                fut.set_exception(exc)
            return
        if fut.done():
            for fd in fds:
                os.close(fd)
        elif len(fds) == count:
            fut.set_result(list(fds))
        else:
            for fd in fds:
                os.close(fd)
            fut.set_exception(EOFError("the sandbox closed its channel"))

    loop.add_reader(sock.fileno(), readable)
    try:
        return await fut
    finally:
        loop.remove_reader(sock.fileno())
