"""MicroVM instances: RunMicrovm and the state machine, the idle policy, auth tokens.

    PENDING -> RUNNING <-> (SUSPENDING -> SUSPENDED) ; any -> TERMINATING -> TERMINATED

The manager owns every transition; the engine (microvm/engine.py) only launches, freezes, thaws and
kills. Transitions of one instance are serialized by its lock:
- Run: PENDING at once (the response), then launch (from the image's pre-initialized standby when
  there is one) and POST /run with {"microvmId", "runHookPayload"}; RUNNING only after it returned
  200 (or when the image has no /run hook). Proxy requests that arrive earlier are held until then.
- Suspend: SUSPENDING, POST /suspend, freeze, SUSPENDED. Resume: thaw, POST /resume while still
  SUSPENDED, then RUNNING. Terminate: TERMINATING, (thaw,) POST /terminate, kill, TERMINATED.
  A hook that fails (status other than 200, timeout, no answer) -> TERMINATING with stateReason.
- Idle policy: no inbound proxy traffic for maxIdleDurationSeconds -> suspended (requests still in
  flight and open WebSockets count as traffic); suspended for suspendedDurationSeconds ->
  terminated (0: at once). maximumDurationInSeconds counts running + suspended time.
- An instance whose processes exit on their own is TERMINATED with the reason.
Instances do not survive a restart of the server: those left alive are marked TERMINATED at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.util
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from lamina.microvm import ids
from lamina.microvm import validation as v
from lamina.microvm.engine import Engine, Instance
from lamina.microvm.errors import ApiError, conflict, not_found
from lamina.microvm.images import ImageService, ImageVersion
from lamina.microvm.tokens import HEADER, TokenSigner, load_secret, port_ranges
from lamina.store.db import Database
from lamina.store.microvms import InstanceRow, MicrovmRepo

if TYPE_CHECKING:
    from lamina.config import Settings
    from lamina.sandbox.base import SandboxBackend

log = logging.getLogger("lamina.microvm")

ALIVE = ("PENDING", "RUNNING", "SUSPENDING", "SUSPENDED")  # what counts toward the memory quota
TICK_S = 0.2
RESTART_REASON = "The Lamina server restarted; MicroVM instances do not survive a restart (images do: run it again)."
STOP_REASON = "The Lamina server stopped; MicroVM instances do not survive a restart (images do: run it again)."
KIND = "Microvm"
# Terminated instances stay visible in Get/List for a day, then are forgotten at the next start.
KEEP_TERMINATED_S = 24 * 3600


class ProxyRefused(Exception):
    """The endpoint cannot take this request now: (status, error type, message)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(eq=False)
class Microvm:
    microvm_id: str
    client_token: str | None
    image_name: str
    version: ImageVersion | None
    doc: dict                                   # the GetMicrovm document
    memory_mib: int
    payload: str | None = None
    handle: Instance | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    started: float = field(default_factory=time.monotonic)
    last_activity: float = field(default_factory=time.monotonic)
    suspended_since: float = 0.0
    in_flight: int = 0
    busy: bool = False                          # a timer-driven transition is under way

    @property
    def state(self) -> str:
        return self.doc["state"]


class MicrovmManager:
    def __init__(self, settings: Settings, db: Database, engine: Engine | None, data_dir: Path | None = None) -> None:
        self.settings = settings
        self.engine = engine
        self.repo = MicrovmRepo(db)
        root = data_dir or settings.data_dir / "microvm"
        self.images = ImageService(settings, self.repo, engine, root)
        self.images.active_instances = self._active_ids
        self.tokens = TokenSigner(load_secret(settings.data_dir))
        self.instances: dict[str, Microvm] = {}
        self.by_token: dict[str, str] = {}
        self._tasks: set[asyncio.Task] = set()
        self._ticker: asyncio.Task | None = None
        # Called with the instance's id once it is TERMINATED (the proxy drops its connections).
        self.on_terminated: list[Callable[[str], None]] = []
        # Called with every instance whose state changed (Lamina's own events: events/lamina_events.py).
        self.on_state: list[Callable[[Microvm], None]] = []

    # -- lifecycle of the manager -----------------------------------------------------------------

    def load(self) -> None:
        self.images.load()
        self.repo.delete_instances_before(time.time() - KEEP_TERMINATED_S)
        for row in self.repo.instances():
            doc = row.config
            if doc["state"] != "TERMINATED":
                doc.update(state="TERMINATED", stateReason=RESTART_REASON, terminatedAt=ids.now())
                self.repo.save_instance(row)
            image = self.images.images.get(row.image_name)
            ver = image.versions.get(doc["imageVersion"]) if image is not None else None
            self.instances[row.microvm_id] = Microvm(row.microvm_id, row.client_token, row.image_name, ver, doc,
                                                     int(doc.get("_memoryMiB", 0)))
            if row.client_token:
                self.by_token[row.client_token] = row.microvm_id

    def start(self) -> None:
        self._ticker = asyncio.get_running_loop().create_task(self._tick())
        # Images survive a restart: have the latest runnable version of each ready to launch fast.
        prewarm = getattr(self.engine, "prewarm", None)
        if prewarm is not None:
            for image in self.images.images.values():
                ver = self.images.latest(image, usable=True)
                if ver is not None and ver.built is not None:
                    self._spawn(prewarm(ver.built))

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        await self.images.close()
        for mvm in list(self.instances.values()):
            if mvm.state != "TERMINATED" and mvm.handle is not None:
                with contextlib.suppress(Exception):
                    await mvm.handle.terminate()
                self._set(mvm, "TERMINATED", STOP_REASON, terminated=True)
        for task in list(self._tasks):
            task.cancel()
        if self.engine is not None:
            await self.engine.close()

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- state ------------------------------------------------------------------------------------

    def _set(self, mvm: Microvm, state: str, reason: str | None = None, terminated: bool = False) -> None:
        mvm.doc["state"] = state
        if reason is not None:
            mvm.doc["stateReason"] = reason
        elif state in ("RUNNING", "PENDING"):
            mvm.doc.pop("stateReason", None)
        if terminated:
            mvm.doc["terminatedAt"] = ids.now()
        self.repo.save_instance(InstanceRow(mvm.microvm_id, mvm.client_token, mvm.image_name, mvm.doc))
        old, mvm.changed = mvm.changed, asyncio.Event()
        old.set()
        if state == "TERMINATED":
            for callback in self.on_terminated:
                callback(mvm.microvm_id)
        for listener in self.on_state:
            listener(mvm)
        log.info("microvm %s: %s%s", mvm.microvm_id, state, f" ({reason})" if reason else "")

    def _active_ids(self, image_name: str, version: str | None = None) -> list[str]:
        return [m.microvm_id for m in self.instances.values()
                if m.image_name == image_name and m.state != "TERMINATED"
                and (version is None or m.doc["imageVersion"] == version)]

    def get_instance(self, microvm_id: str) -> Microvm:
        mvm = self.instances.get(microvm_id)
        if mvm is None:
            raise not_found(KIND, microvm_id)
        return mvm

    def describe(self, mvm: Microvm) -> dict:
        return {k: val for k, val in mvm.doc.items() if not k.startswith("_")}

    # -- API --------------------------------------------------------------------------------------

    def run(self, body: dict) -> dict:
        req = v.run_request(body, self.settings.microvm_min_idle_seconds)
        if req.client_token and req.client_token in self.by_token:
            # Idempotency: the same token gives back the same instance, whatever its state now.
            mvm = self.instances[self.by_token[req.client_token]]
            same = self.images.arn(mvm.image_name) == self.images.arn(
                ids.image_name(req.image, self.settings.region, self.settings.account_id))
            if not same:
                raise conflict(f"clientToken {req.client_token} was already used to run {mvm.microvm_id} from "
                               f"another image.", KIND, mvm.microvm_id)
            return self.describe(mvm)
        ver = self.images.runnable(req.image, req.version)
        assert ver.built is not None
        if self.engine is None:
            raise ApiError("InternalServerException", "This Lamina server has no MicroVM engine.")
        memory = ver.built.memory_mib or v.memory_mib(ver.config)
        used = sum(m.memory_mib for m in self.instances.values() if m.state in ALIVE)
        quota = self.settings.microvm_memory_quota_mib
        if used + memory > quota:
            raise ApiError("ServiceQuotaExceededException",
                           f"Running this MicroVM ({memory} MiB) would exceed the memory quota: {used} of {quota} MiB "
                           "are allocated to RUNNING and SUSPENDED MicroVMs (suspended ones count). Terminate some, or "
                           "raise microvm_memory_quota_mib.", serviceCode="lambda", quotaCode="microvm-memory",
                           resourceType=KIND)
        microvm_id = ids.new_microvm_id()
        doc = {"microvmId": microvm_id, "state": "PENDING",
               "endpoint": ids.endpoint(microvm_id, self.settings.region, self.settings.port),
               "imageArn": self.images.arn(ver.image_name), "imageVersion": ver.version,
               "maximumDurationInSeconds": req.max_duration, "startedAt": ids.now(), "_memoryMiB": memory}
        if req.execution_role:
            doc["executionRoleArn"] = req.execution_role
        if req.idle_policy is not None:
            doc["idlePolicy"] = req.idle_policy
        if req.ingress:
            doc["ingressNetworkConnectors"] = req.ingress
        if req.egress:
            doc["egressNetworkConnectors"] = req.egress
        mvm = Microvm(microvm_id, req.client_token, ver.image_name, ver, doc, memory, payload=req.payload)
        self.instances[microvm_id] = mvm
        if req.client_token:
            self.by_token[req.client_token] = microvm_id
        self.repo.save_instance(InstanceRow(microvm_id, req.client_token, ver.image_name, doc))
        self._spawn(self._launch(mvm))
        return self.describe(mvm)

    def get(self, microvm_id: str) -> dict:
        return self.describe(self.get_instance(microvm_id))

    def list(self, max_results: int | None, next_token: str | None, image: str | None, version: str | None) -> dict:
        items = list(self.instances.values())
        if image:
            name = ids.image_name(image, self.settings.region, self.settings.account_id)
            items = [m for m in items if m.image_name == name]
        if version:
            items = [m for m in items if m.doc["imageVersion"] == version]
        chunk, token = ids.page(items, max_results, next_token)
        out: dict = {"items": [{k: m.doc[k] for k in ("microvmId", "state", "imageArn", "imageVersion", "startedAt")}
                               for m in chunk]}
        if token:
            out["nextToken"] = token
        return out

    async def suspend(self, microvm_id: str, reason: str = "Suspended by SuspendMicrovm.") -> None:
        mvm = self.get_instance(microvm_id)
        if mvm.state in ("SUSPENDING", "SUSPENDED"):
            return  # idempotent
        if mvm.state != "RUNNING":
            raise conflict(f"MicroVM {microvm_id} is {mvm.state}; only a RUNNING MicroVM can be suspended.",
                           KIND, microvm_id)
        async with mvm.lock:
            if mvm.state == "RUNNING":
                await self._suspend_locked(mvm, reason)

    async def resume(self, microvm_id: str) -> None:
        mvm = self.get_instance(microvm_id)
        if mvm.state != "SUSPENDED":
            raise conflict(f"MicroVM {microvm_id} is {mvm.state}; only a SUSPENDED MicroVM can be resumed.",
                           KIND, microvm_id)
        async with mvm.lock:
            if mvm.state != "SUSPENDED":
                raise conflict(f"MicroVM {microvm_id} is {mvm.state}; only a SUSPENDED MicroVM can be resumed.",
                               KIND, microvm_id)
            await self._resume_locked(mvm)

    async def terminate(self, microvm_id: str, reason: str = "Terminated by TerminateMicrovm.") -> None:
        mvm = self.get_instance(microvm_id)
        if mvm.state == "TERMINATED":
            return  # idempotent
        async with mvm.lock:
            if mvm.state != "TERMINATED":
                await self._terminate_locked(mvm, reason)

    def auth_token(self, microvm_id: str, body: dict) -> dict:
        allowed, minutes = v.auth_token_request(body)
        mvm = self.get_instance(microvm_id)
        if mvm.state in ("TERMINATING", "TERMINATED"):
            raise conflict(f"MicroVM {microvm_id} is {mvm.state}.", KIND, microvm_id)
        return {"authToken": {HEADER: self.tokens.issue(microvm_id, port_ranges(allowed), minutes)}}

    # -- transitions (the caller holds mvm.lock) --------------------------------------------------

    async def _hook(self, mvm: Microvm, name: str, body: bytes = b"") -> str | None:
        """None when the hook succeeded or is not enabled; otherwise why it failed."""
        if mvm.handle is None:
            return None
        hooks = mvm.version.built.hooks if mvm.version is not None and mvm.version.built is not None else None
        limit = (hooks.timeout(name) if hooks is not None else 1.0) + 1.0
        where = f" ({hooks.target(name)})" if hooks is not None else ""
        try:
            status = await asyncio.wait_for(mvm.handle.hook(name, body), limit)
        except TimeoutError:
            return f"The /{name} hook did not answer within its timeout{where}."
        except Exception as exc:
            return f"The /{name} hook failed{where}: {exc or type(exc).__name__}."
        if status is None or status == 200:
            return None
        return f"The /{name} hook returned HTTP {status}{where}; it must answer 200."

    async def _launch(self, mvm: Microvm) -> None:
        async with mvm.lock:
            if mvm.state != "PENDING":
                return
            assert self.engine is not None and mvm.version is not None and mvm.version.built is not None
            try:
                mvm.handle = await self.engine.launch(mvm.version.built, mvm.microvm_id)
            except Exception as exc:
                log.warning("microvm %s: launch failed: %s", mvm.microvm_id, exc)
                self._set(mvm, "TERMINATED", f"The MicroVM could not start: {exc}", terminated=True)
                return
            mvm.handle.exited.add_done_callback(functools.partial(self._exited, mvm))
            body = orjson.dumps({"microvmId": mvm.microvm_id, "runHookPayload": mvm.payload or ""})
            failure = await self._hook(mvm, "run", body)
            if failure is not None:
                await self._terminate_locked(mvm, failure, hook=False)
                return
            if mvm.state != "PENDING":
                return  # exited meanwhile
            mvm.last_activity = time.monotonic()
            self._set(mvm, "RUNNING")

    async def _suspend_locked(self, mvm: Microvm, reason: str) -> None:
        self._set(mvm, "SUSPENDING", reason)
        failure = await self._hook(mvm, "suspend")
        if failure is not None:
            await self._terminate_locked(mvm, failure, hook=False)
            return
        try:
            if mvm.handle is not None:
                await mvm.handle.suspend()
        except Exception as exc:
            await self._terminate_locked(mvm, f"The MicroVM could not be suspended: {exc}", hook=False)
            return
        mvm.suspended_since = time.monotonic()
        self._set(mvm, "SUSPENDED", reason)
        policy = mvm.doc.get("idlePolicy")
        if policy is not None and policy["suspendedDurationSeconds"] == 0:
            await self._terminate_locked(mvm, "Terminated on suspend (idlePolicy.suspendedDurationSeconds is 0).")

    async def _resume_locked(self, mvm: Microvm) -> None:
        try:
            if mvm.handle is not None:
                await mvm.handle.resume()
        except Exception as exc:
            await self._terminate_locked(mvm, f"The MicroVM could not be resumed: {exc}", hook=False)
            return
        # The state stays SUSPENDED while /resume runs, as on AWS.
        failure = await self._hook(mvm, "resume")
        if failure is not None:
            await self._terminate_locked(mvm, failure, hook=False, thawed=True)
            return
        mvm.last_activity = time.monotonic()
        self._set(mvm, "RUNNING")

    async def _terminate_locked(self, mvm: Microvm, reason: str, hook: bool = True, thawed: bool = False) -> None:
        was = mvm.state
        self._set(mvm, "TERMINATING", reason)
        if mvm.handle is not None:
            if was in ("SUSPENDED", "SUSPENDING") and not thawed:
                with contextlib.suppress(Exception):
                    await mvm.handle.resume()  # a frozen app cannot answer /terminate
            if hook and not mvm.handle.exited.done():
                failure = await self._hook(mvm, "terminate")
                if failure is not None:
                    log.info("microvm %s: %s (terminating anyway)", mvm.microvm_id, failure)
            try:
                await mvm.handle.terminate()
            except Exception:
                log.exception("microvm %s: terminate failed", mvm.microvm_id)
        self._set(mvm, "TERMINATED", reason, terminated=True)

    def _exited(self, mvm: Microvm, fut: asyncio.Future) -> None:
        if fut.cancelled() or mvm.state in ("TERMINATING", "TERMINATED"):
            return
        why = fut.exception() or fut.result()

        async def finish() -> None:
            async with mvm.lock:
                if mvm.state not in ("TERMINATING", "TERMINATED"):
                    await self._terminate_locked(mvm, f"The MicroVM's processes exited: {why}", hook=False)

        self._spawn(finish())

    # -- idle policy ------------------------------------------------------------------------------

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            try:
                self._check_timers(time.monotonic())
            except Exception:
                log.exception("microvm timers failed")

    def _check_timers(self, now: float) -> None:
        for mvm in list(self.instances.values()):
            if mvm.state == "TERMINATED" or mvm.busy or mvm.lock.locked():
                continue
            limit = mvm.doc["maximumDurationInSeconds"]
            policy = mvm.doc.get("idlePolicy")
            if now - mvm.started >= limit:
                self._timed(mvm, self.terminate(mvm.microvm_id, f"maximumDurationInSeconds ({limit} s) reached."))
            elif policy is None:
                continue
            elif (mvm.state == "RUNNING" and mvm.in_flight == 0
                  and now - mvm.last_activity >= policy["maxIdleDurationSeconds"]):
                self._timed(mvm, self.suspend(
                    mvm.microvm_id, f"No inbound traffic for {policy['maxIdleDurationSeconds']} s (idlePolicy)."))
            elif mvm.state == "SUSPENDED" and now - mvm.suspended_since >= policy["suspendedDurationSeconds"]:
                self._timed(mvm, self.terminate(
                    mvm.microvm_id, f"Suspended for {policy['suspendedDurationSeconds']} s (idlePolicy)."))

    def _timed(self, mvm: Microvm, coro) -> None:
        mvm.busy = True

        async def run() -> None:
            try:
                await coro
            except ApiError:
                pass  # the state changed meanwhile (e.g. a request resumed it)
            finally:
                mvm.busy = False

        self._spawn(run())

    # -- the endpoint proxy's side ----------------------------------------------------------------

    async def enter(self, microvm_id: str, wait_s: float = 60.0) -> Microvm:
        """For one proxied request or WebSocket: the instance, RUNNING, with the request counted in flight
        (call leave() after). Holds the request while PENDING; auto-resumes a SUSPENDED instance whose
        idle policy allows it."""
        mvm = self.instances.get(microvm_id)
        if mvm is None:
            raise ProxyRefused(404, "ResourceNotFoundException", f"No MicroVM {microvm_id}.")
        deadline = time.monotonic() + wait_s
        while True:
            state = mvm.state
            if state == "RUNNING":
                mvm.in_flight += 1
                mvm.last_activity = time.monotonic()
                return mvm
            if state in ("TERMINATING", "TERMINATED"):
                reason = mvm.doc.get("stateReason") or ""
                raise ProxyRefused(410 if state == "TERMINATED" else 503, "ResourceNotFoundException"
                                   if state == "TERMINATED" else "ConflictException",
                                   f"MicroVM {microvm_id} is {state}. {reason}".strip())
            if state == "SUSPENDED":
                policy = mvm.doc.get("idlePolicy") or {}
                if not policy.get("autoResumeEnabled"):
                    raise ProxyRefused(409, "ConflictException",
                                       f"MicroVM {microvm_id} is SUSPENDED and its idlePolicy does not enable "
                                       "autoResume: call ResumeMicrovm first.")
                async with mvm.lock:
                    if mvm.state == "SUSPENDED":
                        await self._resume_locked(mvm)
                        if mvm.state != "RUNNING":
                            raise ProxyRefused(502, "BadGateway", f"MicroVM {microvm_id} could not be resumed: "
                                               f"{mvm.doc.get('stateReason')}")
                continue
            # PENDING (before /run returned 200) or SUSPENDING: hold the request until the state settles.
            left = deadline - time.monotonic()
            if left <= 0:
                raise ProxyRefused(504, "Timeout", f"MicroVM {microvm_id} stayed {state} for {wait_s:.0f} s.")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(mvm.changed.wait(), left)

    def leave(self, mvm: Microvm) -> None:
        mvm.in_flight -= 1
        mvm.last_activity = time.monotonic()

    def touch(self, mvm: Microvm) -> None:
        mvm.last_activity = time.monotonic()


def load_engine(backend: SandboxBackend, settings: Settings) -> Engine | None:
    """The sandbox engine (microvm/sandbox_engine.py), or None while this build has none."""
    if importlib.util.find_spec("lamina.microvm.sandbox_engine") is None:
        log.warning("no MicroVM engine in this build: the MicroVMs API cannot build or run images")
        return None
    from lamina.microvm.sandbox_engine import SandboxEngine

    return SandboxEngine(backend, settings.data_dir, settings)  # it keeps its state under <data>/microvm
