"""One running MicroVM instance: its sandbox, private disk, log, hooks, freezer (engine.Instance).

On the linux backend an instance is a sandbox with its own pid / mount / net / ipc / uts / user /
cgroup namespaces; its network namespace has only a loopback, which the server reaches through
`open_connection` (a socket made inside that namespace, sandbox/netns.py) — no veth, no address, and
the app cannot reach the host's ports. Its root is rootfs.instance_mounts(): the image's layer over
the host's read-only base, with a private writable disk layer. The app runs as the image's root (a
user-namespace root with a container's default capabilities, no_new_privs, the environment seccomp
filter) or its USER, with the image's ENV and WORKDIR; stdout and stderr go to `log_path`.

Sizes, following AWS's model (baseline memory = the image's memory; peak = 4 x baseline; 2 GB of
baseline per vCPU): the cgroup's memory limit is the peak (4 x memory_mib), its CPU quota the peak's
vCPUs (4 x memory_mib / 2048, at most the host's CPUs) and its CPU weight follows the same number;
at most 4096 processes.

suspend() freezes the cgroup (memory, disk and processes stay as they are; a frozen app accepts no
work: connections queue in the kernel until resume), resume() thaws it, terminate() kills the
cgroup, waits until it is empty and removes the private disk layer and the log (idempotent; the log
of an app that died by itself is kept until the next server start). The mounts live only in the
instance's mount namespace, so they vanish with its last process.

The process backend (no root) runs the app as a plain process in its own session, in a private copy
of the image's layer, with the host's network and filesystem: NOT isolated; suspend is SIGSTOP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import time
from pathlib import Path

from lamina.microvm import rootfs
from lamina.microvm.engine import DEFAULT_PORT, HOOK_PATH, BuiltImage
from lamina.sandbox import netns
from lamina.sandbox.base import Sandbox, SandboxBackend, SandboxError, SandboxSpec

log = logging.getLogger("lamina.microvm")

PEAK_FACTOR = 4            # AWS: a MicroVM may burst to 4x its baseline memory and vCPUs
MB_PER_VCPU = 2048         # AWS: 2 GB of memory per vCPU
PIDS_MAX = 4096
NOFILE = 65536
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def sizes(memory_mib: int) -> tuple[int, float]:
    """(memory limit in MB, CPU quota in vCPUs) for a baseline memory size."""
    vcpus = min(float(os.cpu_count() or 1), PEAK_FACTOR * memory_mib / MB_PER_VCPU)
    return PEAK_FACTOR * memory_mib, max(vcpus, 0.05)


def app_env(image: BuiltImage, home: str = "/root") -> dict[str, str]:
    # PIP_BREAK_SYSTEM_PACKAGES: the base is Debian's, whose pip refuses to install as root otherwise.
    env = {"PATH": DEFAULT_PATH, "HOME": home, "HOSTNAME": "microvm", "LANG": "C.UTF-8",
           "PIP_BREAK_SYSTEM_PACKAGES": "1"}
    env.update(image.config.env)
    return env


def ready_port(image: BuiltImage) -> tuple[int, str]:
    """The port that says the app is up, and its protocol: the first EXPOSEd TCP port (ready when it accepts a
    connection); for an app that EXPOSEs only UDP ports, the first of those (ready when a socket is bound to it:
    UDP has no handshake, the kernel's socket table tells); else 8080/tcp."""
    if image.config.expose:
        return image.config.expose[0], "tcp"
    if image.config.expose_udp:
        return image.config.expose_udp[0], "udp"
    return DEFAULT_PORT, "tcp"


def describe_readiness(image: BuiltImage) -> str:
    """What wait_ready waits for, in the build log's words."""
    if "ready" in image.hooks.enabled:
        return "the /ready hook answered 200"
    port, protocol = ready_port(image)
    return f"UDP port {port} is bound" if protocol == "udp" else f"port {port} accepts connections"


async def udp_port_bound(netns_fd: int | None, port: int) -> bool:
    """Whether a UDP socket (IPv4 or IPv6) is bound to port in that network namespace (None: the host's)."""
    for table in ("udp", "udp6"):
        try:
            if port in netns.bound_ports(await netns.read_net(netns_fd, table)):
                return True
        except FileNotFoundError:  # no IPv6 in this kernel
            continue
    return False


class SandboxInstance:
    """An instance (engine.Instance) over a started sandbox."""

    def __init__(self, microvm_id: str, image: BuiltImage, backend: SandboxBackend, disk_dir: Path,
                 log_path: Path) -> None:
        self.microvm_id = microvm_id
        self.image = image
        self.backend = backend
        self.disk_dir = disk_dir
        self.log_path = log_path
        self.sandbox: Sandbox | None = None
        self.exited: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.frozen = False
        self._terminating = False
        self._terminated = False
        self._lock = asyncio.Lock()
        self._reaped = asyncio.Event()  # the sandbox's outermost process has exited and been reaped

    @property
    def pid(self) -> int | None:
        return self.sandbox.pid if self.sandbox else None

    @property
    def isolated(self) -> bool:
        return self.backend.isolated

    @property
    def terminated(self) -> bool:
        """terminate() has begun: the instance takes no more traffic."""
        return self._terminated

    def _on_exit(self, code: int) -> None:
        self._reaped.set()
        if self._terminating or self.exited.done():
            return
        how = f"killed by signal {-code}" if code < 0 else f"exited with status {code}"
        if self.sandbox is not None and self.sandbox.oom_killed():
            how = "was killed for exceeding its memory limit"
        self.exited.set_result(f"the MicroVM's application {how} (see {self.log_path})")

    # -- traffic --

    async def open_connection(self, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.sandbox is None or self._terminated:
            raise ConnectionRefusedError(f"MicroVM {self.microvm_id} is not running")
        sock = await self.sandbox.connect_tcp(port)
        return await asyncio.open_connection(sock=sock, limit=2 ** 20)

    async def open_datagram(self, port: int) -> socket.socket:
        """A non-blocking UDP socket in the instance's network namespace (the host's on the process backend),
        connected to 127.0.0.1:port there: the UDP gateway's MicroVM destination sends through it."""
        if self.sandbox is None or self._terminated:
            raise ConnectionRefusedError(f"MicroVM {self.microvm_id} is not running")
        fd = self.sandbox.netns_fd
        if fd is not None:
            sock = await netns.socket_in(fd, socket.AF_INET, socket.SOCK_DGRAM)
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.connect(("127.0.0.1", port))
        except BaseException:
            sock.close()
            raise
        return sock

    async def hook(self, name: str, body: bytes = b"") -> int | None:
        hooks = self.image.hooks
        if name not in hooks.enabled:
            return None
        timeout = hooks.timeout(name)
        retry_503 = name in ("ready", "validate")
        deadline = time.monotonic() + timeout
        delay = 0.005
        last: str = "no answer"
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"the /{name} hook ({hooks.target(name)}) did not succeed within {timeout:g}s "
                                   f"({last})")
            try:
                status = await asyncio.wait_for(self._post(hooks.port, HOOK_PATH + name, body), left)
            except (OSError, EOFError, asyncio.IncompleteReadError, ValueError) as exc:
                last = f"{type(exc).__name__}: {exc}"
                if self.exited.done():
                    raise TimeoutError(f"the /{name} hook got no answer: {self.exited.result()}") from None
            except TimeoutError:
                raise TimeoutError(f"the /{name} hook did not answer within {timeout:g}s") from None
            else:
                if not (retry_503 and status == 503):
                    return status
                last = "503 Service Unavailable"
            await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 0.25)

    async def _post(self, port: int, path: str, body: bytes) -> int:
        reader, writer = await self.open_connection(port)
        try:
            writer.write(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
            await writer.drain()
            line = await reader.readline()
            parts = line.split()
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
                raise ValueError(f"not an HTTP response: {line[:80]!r}")
            return int(parts[1])
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def require_hook(self, name: str, meaning: str) -> None:
        """Call the /<name> hook; RuntimeError unless it answers 200 in time (`meaning`: what 200 says)."""
        try:
            status = await self.hook(name)
        except TimeoutError as exc:
            raise RuntimeError(str(exc)) from None
        if status != 200:
            raise RuntimeError(f"the /{name} hook ({self.image.hooks.target(name)}) answered HTTP {status} "
                               f"(200 means {meaning})")

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Until the app is ready: its /ready hook answers 200 when ENABLED, else its first EXPOSEd TCP
        port (8080 without EXPOSE) accepts a connection, or for a UDP-only app (only `EXPOSE n/udp`) a
        socket is bound to the first UDP port. RuntimeError on failure."""
        if "ready" in self.image.hooks.enabled:
            await self.require_hook("ready", "ready")
            return
        port, protocol = ready_port(self.image)
        limit = timeout if timeout is not None else self.image.hooks.timeout("ready")
        deadline = time.monotonic() + limit
        delay = 0.002
        while True:
            if self.exited.done():
                raise RuntimeError(self.exited.result())
            if protocol == "udp":
                if await self._udp_bound(port):
                    return
            else:
                try:
                    _reader, writer = await self.open_connection(port)
                except (OSError, TimeoutError):
                    pass
                else:
                    writer.close()
                    return
            if time.monotonic() >= deadline:
                if protocol == "udp":
                    raise RuntimeError(f"the application did not bind UDP port {port} within {limit:g}s (EXPOSE "
                                       f"the port it receives on as {port}/udp, or enable the /ready hook)")
                raise RuntimeError(f"the application did not accept connections on port {port} within "
                                   f"{limit:g}s (EXPOSE the port it listens on — n/udp for a UDP app — or enable "
                                   f"the /ready hook)")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)

    async def _udp_bound(self, port: int) -> bool:
        if self.sandbox is None or self._terminated:
            raise RuntimeError(f"MicroVM {self.microvm_id} is not running")
        return await udp_port_bound(self.sandbox.netns_fd, port)

    # -- lifecycle --

    async def suspend(self) -> None:
        async with self._lock:
            if self._terminated or self.frozen or self.sandbox is None:
                return
            await self._freeze()
            self.frozen = True

    async def resume(self) -> None:
        async with self._lock:
            if self._terminated or not self.frozen or self.sandbox is None:
                return
            self._thaw()
            self.frozen = False

    async def _freeze(self) -> None:
        assert self.sandbox is not None
        cgroup = getattr(self.sandbox, "cgroup", None)
        if cgroup is None:  # process backend: the whole session
            assert self.sandbox.pid is not None  # a started (not forked) sandbox knows its pid
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.sandbox.pid, signal.SIGSTOP)
            return
        # Ask, then poll without blocking the loop for long: a freeze takes ~0.3-1 ms here.
        deadline = time.monotonic() + 5.0
        while True:
            try:
                cgroup.freeze(timeout=0.002)
                return
            except TimeoutError:
                if time.monotonic() >= deadline:
                    raise RuntimeError(f"MicroVM {self.microvm_id} did not freeze within 5s") from None
                await asyncio.sleep(0.001)

    def _thaw(self) -> None:
        assert self.sandbox is not None
        cgroup = getattr(self.sandbox, "cgroup", None)
        if cgroup is None:
            assert self.sandbox.pid is not None
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.sandbox.pid, signal.SIGCONT)
            return
        cgroup.thaw()

    def is_frozen(self) -> bool:
        """What the kernel says (cgroup.events / freezer.state), not what we asked for."""
        cgroup = getattr(self.sandbox, "cgroup", None)
        if cgroup is None:
            return self.frozen
        for d in cgroup.dirs:
            for name, done in (("cgroup.events", "frozen 1"), ("freezer.state", "FROZEN")):
                try:
                    with open(f"{d}/{name}") as fh:
                        if done in fh.read():
                            return True
                except OSError:
                    continue
        return False

    async def terminate(self) -> None:
        async with self._lock:
            if self._terminated:
                return
            self._terminating = True
            self._terminated = True
            sandbox, self.sandbox = self.sandbox, None
            if sandbox is not None:
                with contextlib.suppress(OSError):
                    sandbox.kill()
                if self.frozen:
                    with contextlib.suppress(OSError):
                        sandbox.thaw()  # v1 freezer: SIGKILL acts only once thawed
                try:
                    await sandbox.cleanup()
                except OSError as exc:
                    log.warning("MicroVM %s: cleanup: %s", self.microvm_id, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._reaped.wait(), 5)
            self.frozen = False
            await asyncio.get_running_loop().run_in_executor(None, _remove_disk, self.disk_dir)
            if not self.exited.done():
                self.exited.set_result("terminated")
                # The log of an app that died by itself stays (the reason points at it) until the next
                # server start; a terminated instance's goes with it.
                self.log_path.unlink(missing_ok=True)


def _remove_disk(path: Path) -> None:
    rootfs.Disk(path).remove()


async def start(microvm_id: str, image: BuiltImage, backend: SandboxBackend, base: rootfs.Base | None,
                instances_dir: Path, name: str) -> SandboxInstance:
    """Start the image's app in a new instance (not waited for: call wait_ready)."""
    disk_dir = instances_dir / name
    log_path = instances_dir / f"{name}.log"
    inst = SandboxInstance(microvm_id, image, backend, disk_dir, log_path)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        if backend.name == "linux":
            spec = _linux_spec(image, base, disk_dir, log_fd, name)
        else:
            spec = _process_spec(image, disk_dir, log_fd, name)
        inst.sandbox = await backend.start(spec, inst._on_exit)
    except BaseException as exc:
        await asyncio.get_running_loop().run_in_executor(None, _remove_disk, disk_dir)
        if isinstance(exc, SandboxError | OSError):
            # The sandbox's own words (e.g. "cannot start gunicorn: No such file or directory") are in the log.
            try:
                said = " | ".join(log_path.read_text(errors="replace").strip().splitlines()[-3:])
            except OSError:
                said = ""
            raise RuntimeError(f"cannot start the MicroVM: {exc}" + (f" ({said})" if said else "")) from exc
        raise
    finally:
        os.close(log_fd)
    return inst


def _linux_spec(image: BuiltImage, base: rootfs.Base | None, disk_dir: Path, log_fd: int, name: str) -> SandboxSpec:
    assert base is not None
    disk = rootfs.Disk(disk_dir)
    disk.create()
    uid, gid, home = rootfs.resolve_user(image.config.user, [image.layer_dir, base.dir])
    memory_mb, vcpus = sizes(image.memory_mib)
    argv = image.config.cmd
    if not argv:
        raise SandboxError("the image has no CMD or ENTRYPOINT")
    return SandboxSpec(
        name=name, argv=list(argv), env=app_env(image, home), code_dir=image.layer_dir, memory_mb=memory_mb,
        log_fd=log_fd, network_handle=True, cpu_vcpus=vcpus, pids_max=PIDS_MAX,
        layered={"mounts": rootfs.instance_mounts(base, image.layer_dir, disk), "cwd": image.config.workdir or "/",
                 "user": [uid, gid], "hostname": "microvm", "nofile": NOFILE})


def _process_spec(image: BuiltImage, disk_dir: Path, log_fd: int, name: str) -> SandboxSpec:
    # Best effort without root: a private copy of the layer, the app's paths mapped into it.
    shutil.copytree(image.layer_dir, disk_dir, symlinks=True)
    local = disk_dir / "usr" / "local"
    env = app_env(image, str(disk_dir / "root"))
    env["PATH"] = f"{local / 'bin'}:{env['PATH']}"
    env["PYTHONUSERBASE"] = str(local)
    workdir = disk_dir / (image.config.workdir or "/").lstrip("/")
    workdir.mkdir(parents=True, exist_ok=True)
    argv = list(image.config.cmd)
    if not argv:
        raise SandboxError("the image has no CMD or ENTRYPOINT")
    resolved = shutil.which(argv[0], path=env["PATH"])
    if resolved:
        argv[0] = resolved
    return SandboxSpec(name=name, argv=argv, env=env, code_dir=workdir, memory_mb=sizes(image.memory_mib)[0],
                       log_fd=log_fd)
