"""`SandboxEngine`: the MicroVM engine (engine.Engine) on a sandbox backend.

build() runs the Dockerfile into the image's layer (builder.py), starts the app once in a regular
instance, waits until it is ready (`/ready` when ENABLED, else its first EXPOSEd TCP port or 8080
accepts; an app that EXPOSEs only UDP ports, once the first is bound), calls `/validate` when ENABLED,
then freezes that instance and keeps it.

That frozen instance is the image's **pre-initialized snapshot**. Lamina keeps *standby instances*
rather than a forkable zygote: a zygote cannot carry a started web server (listening sockets,
gunicorn workers, threads), and forked children would have to mount their own root inside a user
namespace. So per image version the engine keeps `microvm_standby` (default 1) fully started,
ready, frozen instances, each with its own private disk layer. launch() takes one — a thaw, so the
app answers at once and the control plane can call `/run` immediately — and starts a replacement
in the background; with none available it starts one cold and waits for it to be ready. This works
for any CMD, in any language. The first standby is the instance the build verified. A standby only
gets its MicroVM id when launched: apps learn it from the `/run` hook, as on AWS, where every
instance of an image resumes the same snapshot. Unlike a VM snapshot, a frozen standby's clocks run
on: timers that expired while it was frozen fire when it is thawed.

Instances do not survive a server restart (their processes die with the server); their leftover
private disks are removed when the engine first runs, and images relaunch from their layers
(BuiltImage.to_dict / from_dict).

On the process backend (no root) nothing is isolated and every instance of an image would listen
on the same host port, so no standbys are kept there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shlex
import shutil
import time
import uuid
from pathlib import Path

from lamina.microvm import instance as instances
from lamina.microvm import rootfs
from lamina.microvm.builder import Builder
from lamina.microvm.engine import BuildError, BuildRequest, BuiltImage
from lamina.microvm.instance import SandboxInstance
from lamina.sandbox.base import SandboxBackend

log = logging.getLogger("lamina.microvm")

_Key = tuple[str, str]
LOG_TAIL_LINES = 40
REFILL_DELAY_S = 0.25


def _holder(microvm_id: str) -> str:
    return f"MicroVM {microvm_id}" if microvm_id and not microvm_id.startswith("build-") else "an image build"


def _key(image: BuiltImage) -> _Key:
    return image.image_name, image.version


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> list[str]:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - 16384))
            text = fh.read().decode(errors="replace")
    except OSError:
        return []
    return text.splitlines()[-lines:]


class SandboxEngine:
    """Builds images and runs instances in `backend` sandboxes; state under `<data_dir>/microvm`."""

    def __init__(self, backend: SandboxBackend, data_dir: Path, settings: object | None = None) -> None:
        self.backend = backend
        self.root = Path(data_dir) / "microvm"
        self.instances_dir = self.root / "instances"
        self.linux = backend.name == "linux"
        self.base = rootfs.Base(self.root) if self.linux else None
        wanted = int(getattr(settings, "microvm_standby", 1)) if settings is not None else 1
        self.standby = max(0, wanted) if self.linux else 0
        self._prepared = False
        self._prepare_lock = asyncio.Lock()
        self._standbys: dict[_Key, list[SandboxInstance]] = {}
        self._refills: dict[_Key, asyncio.Task] = {}
        self._live: dict[str, SandboxInstance] = {}  # every instance not known to be terminated
        self._forgotten: set[_Key] = set()  # deleted image versions: a standby still starting is dropped
        self._closed = False

    # -- setup --

    async def _prepare(self) -> None:
        if self._prepared:
            return
        async with self._prepare_lock:
            if self._prepared:
                return
            await asyncio.get_running_loop().run_in_executor(None, self._prepare_sync)
            self._prepared = True

    def _prepare_sync(self) -> None:
        # Every instance of an earlier server died with it: its private disks are garbage now.
        if self.instances_dir.exists():
            for entry in self.instances_dir.iterdir():
                if entry.is_dir() and not entry.is_symlink():
                    rootfs.Disk(entry).remove()
                else:
                    entry.unlink(missing_ok=True)
        self.instances_dir.mkdir(parents=True, exist_ok=True)
        if self.base is not None:
            self.base.create()

    # -- building --

    async def build(self, request: BuildRequest) -> BuiltImage:
        if self._closed:
            raise BuildError("the server is shutting down")
        await self._prepare()
        if not self.backend.isolated:
            request.log("WARNING: the process sandbox backend is NOT isolated: RUN lines and the application run "
                        "as plain processes on this host")
        config = await Builder(self.backend, self.base).run(request)
        image = BuiltImage(request.image_name, request.version, request.layer_dir, config, request.hooks,
                           request.memory_mib)
        request.log(f"Starting the application: {shlex.join(config.cmd)}")
        started = time.monotonic()
        try:
            inst = await self._start(image, f"build-{uuid.uuid4().hex[:8]}")
        except RuntimeError as exc:
            raise BuildError(str(exc)) from None
        try:
            request.log(f"Waiting until {instances.describe_readiness(image)} ...")
            try:
                await inst.wait_ready()
            except RuntimeError as exc:
                raise BuildError(f"the application did not become ready: {exc}") from None
            request.log(f"Application ready in {time.monotonic() - started:.2f}s")
            if "validate" in image.hooks.enabled:
                try:
                    await inst.require_hook("validate", "valid")
                except RuntimeError as exc:
                    raise BuildError(str(exc)) from None
                request.log("The /validate hook answered 200")
            for line in _tail(inst.log_path):
                request.log(f"app: {line}")
            await inst.suspend()
        except BaseException:
            for line in _tail(inst.log_path):
                request.log(f"app: {line}")
            await inst.terminate()
            raise
        key = _key(image)
        self._forgotten.discard(key)
        if self.standby > 0 and not self._closed:
            inst.microvm_id = ""
            old = self._standbys.pop(key, [])
            self._standbys[key] = [inst]
            for stale in old:
                self._terminate_later(stale)
            request.log(f"Snapshot kept: the verified instance stays started, ready and frozen as a standby "
                        f"({self.standby} kept per image version)")
            self._refill(image)
        else:
            await inst.terminate()
        return image

    # -- instances --

    async def _start(self, image: BuiltImage, microvm_id: str) -> SandboxInstance:
        if not image.layer_dir.is_dir():
            raise RuntimeError(f"the image's layer {image.layer_dir} is missing: rebuild the image version")
        await self._check_port_free(image)
        name = f"mvm-{uuid.uuid4().hex[:16]}"
        # Shielded: a sandbox half-started when the caller is cancelled would outlive everything that
        # tracks it; let the start finish, then stop what it made.
        start = asyncio.ensure_future(instances.start(microvm_id, image, self.backend, self.base,
                                                      self.instances_dir, name))
        try:
            inst = await asyncio.shield(start)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await (await start).terminate()
            raise
        self._live[name] = inst
        return inst

    async def _check_port_free(self, image: BuiltImage) -> None:
        # The process backend shares the host's network: a second instance of an app with a fixed port cannot
        # bind it, yet the readiness check (and every request after it) would reach the first one instead.
        if self.backend.isolated:
            return
        port, protocol = instances.ready_port(image)
        holder = next((_holder(i.microvm_id) for i in self._live.values()
                       if not i.terminated and instances.ready_port(i.image) == (port, protocol)), None)
        if holder is None:
            if protocol == "udp":
                if not await instances.udp_port_bound(None, port):
                    return
            else:
                try:
                    _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1.0)
                except (OSError, TimeoutError):
                    return
                writer.close()
            holder = "another program"
        where = f"UDP port {port}" if protocol == "udp" else f"port {port}"
        raise RuntimeError(f"{where} on this host is already in use by {holder}: with the process sandbox "
                           f"backend (NOT isolated) instances share the host's network, so one instance per port "
                           f"can run; terminate the other, or run `lamina serve` as root (the linux sandbox gives "
                           f"every instance its own network)")

    async def launch(self, image: BuiltImage, microvm_id: str) -> SandboxInstance:
        if self._closed:
            raise RuntimeError("the server is shutting down")
        await self._prepare()
        self._prune()
        pool = self._standbys.get(_key(image), [])
        while pool:
            inst = pool.pop(0)
            if inst.exited.done():
                await inst.terminate()
                continue
            inst.microvm_id = microvm_id
            try:
                await inst.resume()
            except BaseException:
                await inst.terminate()
                raise
            self._refill(image)
            return inst
        inst = await self._start(image, microvm_id)
        try:
            await inst.wait_ready()
        except BaseException:
            await inst.terminate()
            raise
        self._refill(image)
        return inst

    async def prewarm(self, image: BuiltImage) -> None:
        """Start the image's standbys now (e.g. for images still ACTIVE after a server restart)."""
        await self._prepare()
        self._refill(image)

    def standbys(self, image: BuiltImage) -> int:
        return len(self._standbys.get(_key(image), []))

    def _refill(self, image: BuiltImage) -> None:
        key = _key(image)
        if self.standby <= 0 or self._closed:
            return
        task = self._refills.get(key)
        if task is not None and not task.done():
            return
        if len(self._standbys.get(key, [])) >= self.standby:
            return
        self._refills[key] = asyncio.get_running_loop().create_task(self._fill(image))

    async def _fill(self, image: BuiltImage) -> None:
        key = _key(image)
        # Not on the launch's heels: starting a sandbox forks this server and would delay the launched
        # instance's /run hook and first requests by several milliseconds.
        await asyncio.sleep(REFILL_DELAY_S)
        while not self._closed and len(self._standbys.get(key, [])) < self.standby:
            try:
                inst = await self._start(image, "")
            except (RuntimeError, OSError) as exc:
                log.warning("MicroVM image %s:%s: cannot start a standby instance: %s", *key, exc)
                return
            try:
                await inst.wait_ready()
                await inst.suspend()
            except asyncio.CancelledError:
                await inst.terminate()
                raise
            except (RuntimeError, OSError, TimeoutError) as exc:
                log.warning("MicroVM image %s:%s: a standby instance did not become ready: %s (log: %s)",
                            *key, exc, " | ".join(_tail(inst.log_path, 5)))
                await inst.terminate()
                return
            if self._closed or key in self._forgotten:
                await inst.terminate()
                return
            self._standbys.setdefault(key, []).append(inst)

    def forget(self, image: BuiltImage) -> None:
        key = _key(image)
        self._forgotten.add(key)
        task = self._refills.pop(key, None)
        if task is not None:
            task.cancel()
        for inst in self._standbys.pop(key, []):
            self._terminate_later(inst)

    def _terminate_later(self, inst: SandboxInstance) -> None:
        task = asyncio.get_running_loop().create_task(inst.terminate())
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    def _prune(self) -> None:
        for name in [n for n, i in self._live.items() if i.terminated]:
            del self._live[name]

    async def close(self) -> None:
        self._closed = True
        tasks = list(self._refills.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._refills.clear()
        self._standbys.clear()
        live = list(self._live.values())
        self._live.clear()
        results = await asyncio.gather(*(inst.terminate() for inst in live), return_exceptions=True)
        for inst, result in zip(live, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("MicroVM %s: terminate at shutdown: %s", inst.microvm_id, result)
        if self.base is not None:
            with contextlib.suppress(OSError):
                shutil.rmtree(self.base.build_dir, ignore_errors=True)
