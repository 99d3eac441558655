"""The queue and environments of one function version.

Invocations wait in the pool's queue; an environment that becomes free takes the oldest one. A
request is never bound to an environment that is still starting, so a burst is served by whichever
environment frees up first, warm or new.

Scaling follows lambda-dispatch (scaler.py): the desired count comes from queue depth and running
invocations, each scale-out step is bounded and paced (unless starts are measured to be cheap: then
the target is reached at once), and every start goes through the dispatcher's rate-limited starter.
An init failure fails everything queued with that error and backs the function off exponentially, so
an init that always fails costs a bounded number of starts.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from typing import Protocol

from lamina.dispatch.environment import Environment, EnvironmentDispatcher, InitFailure, State
from lamina.dispatch.invocation import Invocation, InvokeResult, Throttled
from lamina.dispatch.scaler import (
    Ewma,
    TokenBucket,
    constrain,
    drain_desired,
    ewma_desired,
    simple_desired,
    start_is_cheap,
)
from lamina.dispatch.spec import FunctionSpec
from lamina.dispatch.stats import FunctionStats
from lamina.dispatch.zygote import Zygote, ZygoteDispatcher
from lamina.store.logs import LogStore

# Scaling is looked at on an arrival to the queue at most this often (the arrivals meanwhile, together, after it).
SCALE_RECHECK_S = 0.001


def _expired(expires_at: float | None) -> bool:
    return expires_at is not None and time.monotonic() >= expires_at


class PoolDispatcher(EnvironmentDispatcher, ZygoteDispatcher, Protocol):
    """What a pool (and the environments and zygote it owns) asks of the dispatcher (dispatcher.Dispatcher): its
    settings, the account-wide environment budget and the starter every start goes through."""

    logs: LogStore
    closing: bool
    scaler: str
    instance_multiplier: float
    scale_out_interval_s: float
    scale_out_step: int
    per_request_environments: bool
    node_spares: int
    starter: TokenBucket
    init_backoff_s: float
    init_backoff_max_s: float
    queue_timeout_s: float

    def can_start(self) -> bool: ...

    def make_room(self, pool: FunctionPool) -> None: ...

    def env_started(self) -> None: ...

    def env_stopped(self) -> None: ...

    def pool_changed(self, pool: FunctionPool) -> None: ...

    def stats_for(self, key: str) -> FunctionStats | None: ...


class FunctionPool:
    # An HTTP-app function's pool (http_app/pool.py) has its HttpAppConfig here; the front door tells such a pool by
    # this. Typed loosely on purpose: this module does not depend on http_app/, which builds on it.
    http_app: object | None = None

    def __init__(self, dispatcher: PoolDispatcher, spec: FunctionSpec) -> None:
        self.dispatcher = dispatcher
        self.spec = spec
        self.log = dispatcher.logs.for_function(spec.name)
        self.queue: deque[Invocation] = deque()
        self.idle: list[Environment] = []
        self.envs: set[Environment] = set()
        self.starting: set[Environment] = set()
        # The environments this pool gave an invocation that has not ended yet (BUSY): added as it delivers one,
        # dropped as the environment is ready again or gone. Counted, not looked for (_census).
        self.busy_envs: set[Environment] = set()
        self.retired = False
        self.zygote: Zygote | None = None
        self._old_zygotes: list[Zygote] = []   # replaced before their credentials expired; stopped once unused
        self.max_concurrency = 1          # invocations per environment (handler functions: one at a time)
        self.ewma = Ewma()
        self.stats = dispatcher.stats_for(spec.key)   # None: metrics are off
        self.start_ms: float | None = None    # how long an environment start takes here (recent average)
        self._last_scale_out = -1e9
        self._scale_timer: asyncio.TimerHandle | None = None
        self._expiry_timer: asyncio.TimerHandle | None = None
        self._scaled_at = -1e9  # loop time of the last look at scaling on an arrival (_enqueue)
        self._recheck_timer: asyncio.TimerHandle | None = None
        # Init failures: how many in a row, when the next start may be tried, the error to answer with.
        self.init_failures = 0
        self.backoff_until = 0.0
        self._failed: tuple[Environment, InitFailure] | None = None
        # PER_TENANT functions: the version's pool owns the zygote and keeps one pool per tenant
        # (dispatcher.tenant_pool); a tenant's pool forks its environments from the version's zygote.
        self.parent: FunctionPool | None = None
        self.tenant_id: str | None = None
        self.tenants: dict[str, FunctionPool] = {}
        # Provisioned concurrency: this many environments kept started (marked env.provisioned), never
        # reaped, replaced when they die; invocations use them like any other idle environment.
        self.provisioned_target = 0
        self.provisioned: set[Environment] = set()
        self._provision_timer: asyncio.TimerHandle | None = None

    async def zygote_for(self) -> Zygote:
        """The function version's zygote, started on first use; raises InitFailure if its init fails."""
        if self.parent is not None:
            return await self.parent.zygote_for()
        if self.zygote is not None and self.zygote.alive and _expired(self.zygote.expires_at):
            # Its credentials (and its forks') expire soon: new environments come from a new zygote; this one stops
            # once the environments forked from it are gone (retire_old_zygotes).
            self._old_zygotes.append(self.zygote)
            self.zygote = None
        if self.zygote is None or not self.zygote.alive:
            self.zygote = Zygote(self)
            self.dispatcher.track(asyncio.get_running_loop().create_task(self.zygote.start()))
        await asyncio.shield(self.zygote.ready)
        return self.zygote

    def retire_old_zygotes(self) -> None:
        """Stop the replaced zygotes no environment of which is left."""
        for zygote in [z for z in self._old_zygotes if not z.forks or not z.alive]:
            self._old_zygotes.remove(zygote)
            zygote.stop()

    def zygote_breached(self) -> None:
        if self.parent is not None:
            self.parent.zygote_breached()
            return
        if self.zygote is not None:
            self.log.append("lamina", "an environment escaped its cgroups; the function's zygote was stopped")
            self.zygote.stop()

    def zygote_gone(self, zygote: Zygote) -> None:
        if self.zygote is zygote:
            self.zygote = None

    # ------------------------------------------------------------------ work in

    def submit(self, inv: Invocation) -> None:
        while self.idle:
            env = self.idle.pop()  # the most recently used: keeps the others idle, so they can be reaped
            if env.state is State.IDLE:
                env.deliver(inv)
                self.busy_envs.add(env)
                if env.invocations == 1 and self.spare_target:
                    self.keep_spares()  # a spare was taken
                return
        self._enqueue(inv)

    def _enqueue(self, inv: Invocation) -> None:
        """No environment is free: answer with the init error while backing off, else queue and scale."""
        if self._failed is not None and time.monotonic() < self.backoff_until and not self.starting:
            # Init keeps failing: answer with its error rather than start yet another environment.
            env, failure = self._failed
            env.fail_with_init_error(inv, failure)
            return
        loop = asyncio.get_running_loop()
        now = inv.queued_at = loop.time()
        self.queue.append(inv)
        if inv.sync and self._expiry_timer is None:
            self._expiry_timer = loop.call_at(now + self.dispatcher.queue_timeout_s, self._expire_due)
        # Under sustained load invocations queue many times a millisecond: looking at scaling on every arrival
        # would cost more than the look is worth. Once a millisecond is enough: the first arrival is looked at
        # at once, those within the millisecond after it together, a millisecond after. Lambda's per-request
        # mode starts an environment for each arrival.
        if now - self._scaled_at >= SCALE_RECHECK_S or self.dispatcher.per_request_environments:
            self._scaled_at = now
            self._scale()
        elif self._recheck_timer is None:
            self._recheck_timer = loop.call_at(self._scaled_at + SCALE_RECHECK_S, self._recheck)

    def _recheck(self) -> None:
        self._recheck_timer = None
        self._scaled_at = asyncio.get_running_loop().time()
        self._scale()

    def _expire_due(self) -> None:
        """Fail the synchronous invocations that have waited queue_timeout_s; re-arm for the next one due. One
        timer per pool, not one per queued invocation: it is not cancelled when the invocation it was armed
        for leaves the queue, and sync deadlines come in queue order (all are queued_at + the same timeout)."""
        self._expiry_timer = None
        loop = asyncio.get_running_loop()
        timeout = self.dispatcher.queue_timeout_s
        now = loop.time()
        expired: list[Invocation] = []
        keep: list[Invocation] = []
        due = None
        for inv in self.queue:
            if inv.done:
                continue
            if inv.sync and due is None:
                if inv.queued_at + timeout <= now:
                    expired.append(inv)
                    continue
                due = inv.queued_at + timeout
            keep.append(inv)
        if expired:
            self.queue.clear()
            self.queue.extend(keep)
        if due is not None:
            self._expiry_timer = loop.call_at(due, self._expire_due)
        if expired and self.stats is not None:
            self.stats.throttles["ConcurrentInvocationLimitExceeded"] = \
                self.stats.throttles.get("ConcurrentInvocationLimitExceeded", 0) + len(expired)
        for inv in expired:
            inv.fail(Throttled("ConcurrentInvocationLimitExceeded",
                               f"Rate Exceeded. The invocation waited {timeout:g} s for a free execution environment."))

    @property
    def busy(self) -> int:
        return len(self.busy_envs)

    @property
    def running(self) -> int:
        """Invocations running (one per busy environment here; several per environment for HTTP apps)."""
        return self.busy

    @property
    def outstanding(self) -> int:
        """Invocations queued or running: what a drain waits for."""
        return len(self.queue) + self.running

    # ------------------------------------------------------------------ environments

    def _census(self) -> tuple[int, int]:
        """(environments busy, environments stopping or gone), for _scale's look (up to once a millisecond under
        load, over tens of environments): the busy ones are counted as they are given work (busy_envs); those that
        are neither busy, idle nor starting are the rest. Only the idle and starting ones are looked at, few while
        invocations queue (the idle list may hold one taken since, the starting set one stopped meanwhile)."""
        busy = len(self.busy_envs)
        serving = busy
        for env in self.idle:
            if env.state is State.IDLE:
                serving += 1
        for env in self.starting:
            if env.state is State.STARTING:
                serving += 1
        return busy, len(self.envs) - serving

    def _running(self, busy: int) -> int:
        """`running` from a census's busy count (one invocation per busy environment here)."""
        return busy

    def desired(self, busy: int | None = None) -> int:
        """`busy`: the busy environments, when the caller has counted them (_census)."""
        running = self.running if busy is None else self._running(busy)
        if self.dispatcher.scaler == "ewma" and self.ewma.rps > 0 and self.ewma.duration_ms > 0:
            return ewma_desired(self.ewma.rps, self.ewma.duration_ms, len(self.envs), self.max_concurrency,
                                self.dispatcher.instance_multiplier)
        n = simple_desired(len(self.queue), running, self.max_concurrency, self.dispatcher.instance_multiplier)
        cap = self.drain_cap(busy)
        return n if cap is None else min(n, cap)

    def drain_cap(self, busy: int | None = None) -> int | None:
        """When a start costs much more than an invocation, the environments we have (and those starting)
        drain a queue sooner than further ones could start: no more than these are worth starting (more
        would only take CPU the others need to start). Zygote forks are cheap, so for Python handlers this
        rarely binds. None until both an invocation and a start have been timed here."""
        if self.ewma.recent_ms is None or self.start_ms is None:
            return None
        return max(self.busy if busy is None else busy,
                   drain_desired(len(self.queue), self.max_concurrency, self.ewma.recent_ms, self.start_ms))

    def _queue_stalled(self) -> bool:
        """Whether the queue is not draining as drain_cap expects: its oldest invocation has waited longer than an
        environment start takes (a new one would have served it by now: the running invocations may be taking
        much longer than the recent ones did), or there are no timings to expect anything from."""
        if self.ewma.recent_ms is None or self.start_ms is None:
            return True
        waited_ms = (asyncio.get_running_loop().time() - self.queue[0].queued_at) * 1000
        return waited_ms > self.start_ms

    def _scale(self) -> None:
        """Start environments while invocations wait: toward the desired count, paced."""
        if self.retired or not self.queue or self.dispatcher.closing:
            return
        now = time.monotonic()
        if now < self.backoff_until:
            self._schedule_scale(self.backoff_until - now)
            return
        if self.dispatcher.per_request_environments:
            # Lambda's own behaviour, kept for comparison: every waiting invocation gets a new environment.
            want = len(self.queue) - len(self.starting)
        elif self._failed is not None:
            want = 0 if self.starting else 1  # after an init failure, one probe at a time
        else:
            # One pass over the environments for all this look needs of them (it runs up to once a millisecond
            # under load, over tens of environments).
            busy, gone = self._census()
            # Those stopping serve nothing more (a Node.js or custom runtime's process takes a moment to go).
            current = len(self.envs) - gone
            interval_s = self.dispatcher.scale_out_interval_s
            cheap = start_is_cheap(self.start_ms, self.ewma.recent_ms, interval_s * 1000)
            if current and not cheap and now - self._last_scale_out < interval_s:
                self._schedule_scale(interval_s - (now - self._last_scale_out))
                return
            target = max(self.desired(busy), 1)
            step = self.dispatcher.scale_out_step
            if cheap or self.drain_cap(busy) is not None:
                # Cheap starts (timed here: forks) are ready before a paced step would come, so pacing would
                # only make the queue wait: go to the target at once, as each invocation arrives. Timed starts
                # and invocations bound the target by what the queue can use (not a guess from a momentary
                # queue depth): one step too. Either way the starter still rate-limits the starts themselves.
                # Until then, lambda-dispatch's bounded, paced steps.
                step = max(step, target - current)
            target = constrain(target, current, step)
            want = target - current
            if want <= 0 and not self.starting and not self.idle and self._queue_stalled():
                want = 1  # something waits and nothing will free up soon enough: at least one start
        started = 0
        want = min(want, self.dispatcher.env_cap(self.spec.name) - len(self.envs))
        if want > 0 and not self.dispatcher.can_start():
            self.dispatcher.make_room(self)
        while want > 0 and self.dispatcher.can_start():
            if not self.dispatcher.starter.take():
                self._schedule_scale(self.dispatcher.starter.wait_s())
                break
            self.start_environment()
            started += 1
            want -= 1
        if started:
            self._last_scale_out = now
        if self.queue and not self.dispatcher.per_request_environments:
            # Still waiting: look again after the pacing interval (the burst may be over, so no
            # further submit would trigger it).
            self._schedule_scale(self.dispatcher.scale_out_interval_s)

    def _schedule_scale(self, delay: float) -> None:
        if self._scale_timer is None:
            def fire() -> None:
                self._scale_timer = None
                self._scale()
            self._scale_timer = asyncio.get_running_loop().call_later(max(0.001, delay), fire)

    def new_environment(self) -> Environment:
        """A new environment of this pool's kind, not started yet."""
        return Environment(self, self.spec, self.dispatcher.backend, self.log)

    def start_environment(self, provisioned: bool = False) -> Environment:
        env = self.new_environment()
        if provisioned:
            env.provisioned = True
            self.provisioned.add(env)
        self.envs.add(env)
        self.starting.add(env)
        self.dispatcher.env_started()
        self.dispatcher.track(env.ready.get_loop().create_task(env.start()))
        return env

    def completed(self, duration_ms: float, error: bool) -> None:
        """An environment finished an invocation: the scaler's timings and the counters /metrics reads."""
        self.ewma.record(duration_ms)
        stats = self.stats
        if stats is not None:
            stats.invoked(duration_ms, error)

    def env_ready(self, env: Environment, fresh: bool) -> None:
        """The environment pulls: hand it the oldest waiting invocation, or park it as idle."""
        self.starting.discard(env)
        self.busy_envs.discard(env)
        if not fresh and _expired(env.expires_at):
            env.stop()  # its credentials expire soon: a new environment takes the queue (env_gone)
            return
        if fresh:
            self.init_succeeded()
            if self.stats is not None:
                self.stats.started(env.restore_ms, env.init_ms)
            took = env.init_ms if env.init_ms is not None else env.restore_ms
            if took is not None:
                self.start_ms = took if self.start_ms is None else self.start_ms + 0.3 * (took - self.start_ms)
        if self.retired:
            env.stop()
            return
        while self.queue:
            inv = self.queue.popleft()
            if not inv.done:
                env.deliver(inv)
                self.busy_envs.add(env)
                if env.invocations == 1 and self.spare_target:
                    self.keep_spares()
                return
        if fresh and self.spare_target:
            self.idle.insert(0, env)  # a spare: taken only when no used environment is idle (submit pops the end)
        else:
            self.idle.append(env)
        env.park()

    # ------------------------------------------------------------------ spares (Node.js)

    @property
    def spare_target(self) -> int:
        """Initialised environments kept unused for the next cold start: a Node.js function has no zygote to fork
        from, so a new environment is a process start and a module load, which a spare has done already (as AWS
        initialises environments ahead of invocations). Tenants' pools and HTTP apps keep none."""
        if not self.spec.is_node or self.parent is not None or self.http_app is not None or self.retired:
            return 0
        return self.dispatcher.node_spares

    def keep_spares(self) -> None:
        """Start environments until spare_target are initialised (or starting) and unused, within the function's
        and the account's environment limits, through the starter; never while init keeps failing."""
        want = self.spare_target
        if not want or self.dispatcher.closing or self._failed is not None:
            return
        want -= sum(1 for env in self.envs if env.invocations == 0 and env.state in (State.STARTING, State.IDLE))
        cap = self.dispatcher.env_cap(self.spec.name)
        while want > 0 and len(self.envs) < cap and self.dispatcher.can_start() and self.dispatcher.starter.take():
            self.start_environment()
            want -= 1

    def _unused_kept(self, envs: list[Environment]) -> set[Environment]:
        """The spares among envs that stay when idle environments are stopped (reaped or recycled)."""
        unused = [env for env in envs if env.invocations == 0]
        return set(unused[: self.spare_target])

    def init_succeeded(self) -> None:
        if self._failed is not None and len(self.provisioned) < self.provisioned_target:
            self._schedule_provision(0)  # the probe worked: start the rest
        self.init_failures = 0
        self.backoff_until = 0.0
        self._failed = None

    def env_init_failed(self, env: Environment, failure: InitFailure) -> None:
        """Everything queued gets the init error; further starts back off exponentially."""
        self.starting.discard(env)
        self.init_failures += 1
        if self.stats is not None:
            self.stats.start_failures += 1
        delay = min(self.dispatcher.init_backoff_max_s,
                    self.dispatcher.init_backoff_s * 2 ** (self.init_failures - 1))
        self.backoff_until = time.monotonic() + delay
        self._failed = (env, failure)
        while self.queue:
            inv = self.queue.popleft()
            if not inv.done:
                env.fail_with_init_error(inv, failure)

    def env_gone(self, env: Environment) -> None:
        self.provisioned.discard(env)
        self.busy_envs.discard(env)
        if env in self.envs:
            self.envs.discard(env)
            self.starting.discard(env)
            if env in self.idle:
                self.idle.remove(env)
            self.dispatcher.env_stopped()
        if self.queue:
            self._scale()
        if self.retired:
            self._release_zygote()
        else:
            self.provision()
            self.keep_spares()
        owner = self.parent or self
        if owner._old_zygotes:
            owner.retire_old_zygotes()
        self.dispatcher.pool_changed(self)

    def reap(self, keep_warm_s: float) -> None:
        """Scale in: stop environments idle for keep_warm_s, a bounded number per pass, never while
        anything is queued."""
        for env in [e for e in self.idle if _expired(e.expires_at)]:
            self.idle.remove(env)
            env.stop()  # replaced before its credentials expire (provisioned ones and spares are started again)
        if self._old_zygotes:
            self.retire_old_zygotes()
        if self.queue:
            return
        now = time.monotonic()
        budget = max(2, -(-len(self.envs) // 3))
        spares = self._unused_kept(self.idle)
        for env in sorted((e for e in self.idle if not e.provisioned and e not in spares), key=lambda e: e.idle_since):
            if budget <= 0 or now - env.idle_since < keep_warm_s:
                break
            self.idle.remove(env)
            env.stop()
            budget -= 1

    # ------------------------------------------------------------------ provisioned concurrency

    def set_provisioned(self, count: int) -> None:
        """Keep `count` environments started from now on; surplus ones become ordinary (reapable) ones."""
        self.provisioned_target = count
        surplus = len(self.provisioned) - count
        if surplus > 0:
            # Give up the ones still starting first, then idle ones before busy ones.
            order = {State.STARTING: 0, State.IDLE: 1}
            for env in sorted(self.provisioned, key=lambda e: order.get(e.state, 2))[:surplus]:
                env.provisioned = False
                self.provisioned.discard(env)
                env.idle_since = time.monotonic()
        self.provision()

    @property
    def provisioned_ready(self) -> int:
        """Provisioned environments initialised and serving (idle or busy)."""
        return sum(1 for env in self.provisioned if env.state in (State.IDLE, State.BUSY))

    @property
    def provision_failure(self) -> InitFailure | None:
        """The last init failure while provisioned environments are still missing, if any."""
        return self._failed[1] if self._failed is not None else None

    def provision(self) -> None:
        """Start provisioned environments up to the target through the normal start path (the starter's
        pacing, the environment budget, and the init-failure backoff with one probe at a time)."""
        if self.retired or self.dispatcher.closing or len(self.provisioned) >= self.provisioned_target:
            return
        now = time.monotonic()
        if now < self.backoff_until:
            self._schedule_provision(self.backoff_until - now)
            return
        if self._failed is not None and self.starting:
            return  # a probe is under way; its outcome calls back here
        while len(self.provisioned) < self.provisioned_target:
            if not self.dispatcher.can_start():
                self.dispatcher.make_room(self)  # env_stopped calls provision() again
                return
            if not self.dispatcher.starter.take():
                self._schedule_provision(self.dispatcher.starter.wait_s())
                return
            self.start_environment(provisioned=True)
            if self._failed is not None:
                return

    def _schedule_provision(self, delay: float) -> None:
        if self._provision_timer is None:
            def fire() -> None:
                self._provision_timer = None
                self.provision()
            self._provision_timer = asyncio.get_running_loop().call_later(max(0.001, delay), fire)

    # ------------------------------------------------------------------ replacement and shutdown

    def retire(self, successor: FunctionPool | None,
               reason: str = "The function was deleted before this invocation started.") -> None:
        """Stop taking work: queued invocations move to the successor (or fail), idle envs stop,
        busy ones stop after their current invocation."""
        self.retired = True
        while self.queue:
            inv = self.queue.popleft()
            if inv.done:
                continue
            if successor is not None:
                successor.submit(inv)
            else:
                body = json.dumps({"errorType": "ResourceNotFoundException", "errorMessage": reason}).encode()
                inv.finish(InvokeResult(body, "ResourceNotFoundException"))
        self.stop_idle()

    def stop_idle(self, keep_zygote: bool = False) -> None:
        """Stop idle environments (and starting ones, unless keep_zygote); keep_zygote keeps what a next cold start
        comes from: the zygote, or a Node.js function's spares."""
        keep = self._unused_kept(self.idle) if keep_zygote else set()
        for env in [e for e in self.idle if e not in keep] + ([] if keep_zygote else list(self.starting)):
            env.stop()
        self.idle[:] = [e for e in self.idle if e in keep]
        if not keep_zygote:
            self._release_zygote()

    def _release_zygote(self) -> None:
        """A retired version's zygote stops once no environment forked from it is left (tenant pools' included)."""
        owner = self.parent or self
        in_use = owner.envs or any(t.envs for t in owner.tenants.values())
        if owner.retired and not in_use:
            for zygote in owner._old_zygotes:
                zygote.stop()
            owner._old_zygotes.clear()
        if owner.retired and owner.zygote is not None and not in_use:
            owner.zygote.stop()
            if owner is not self:
                self.dispatcher.pool_changed(owner)

    def kill_all(self) -> None:
        for env in list(self.envs):
            if env.state is State.BUSY:
                env.abort("Lamina stopped before the invocation finished")
            else:
                env.stop()
        for zygote in [self.zygote, *self._old_zygotes]:
            if zygote is not None:
                zygote.stop()
        self._old_zygotes.clear()
