"""The dispatcher: one pool per function, the account-wide environment budget, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from lamina.dispatch.environment import InitFailure
from lamina.dispatch.http_app.config import is_http_app
from lamina.dispatch.http_app.pool import HttpAppPool
from lamina.dispatch.invocation import Invocation, Throttled
from lamina.dispatch.pool import FunctionPool
from lamina.dispatch.scaler import TokenBucket
from lamina.dispatch.service_access import ServiceAccess
from lamina.dispatch.spec import FunctionSpec, pool_key, tenant_key
from lamina.dispatch.stats import FunctionStats
from lamina.sandbox import SandboxBackend
from lamina.sandbox.interpreters import HostRuntimes
from lamina.store.logs import LogStore

log = logging.getLogger("lamina.dispatch")


class Dispatcher:
    def __init__(self, backend: SandboxBackend, logs: LogStore, max_environments: int = 1000,
                 keep_warm_s: float = 600.0, scaler: str = "simple", dispatch_mode: str = "queue",
                 queue_timeout_s: float = 60.0, freeze_idle_s: float | None = 0.1,
                 runtimes: HostRuntimes | None = None, metrics: bool = True, node_spares: int = 1,
                 access: ServiceAccess | None = None) -> None:
        self.backend = backend
        # The SDK, credentials and endpoint environments get to call Lamina's services (service_access.py).
        self.access = access or ServiceAccess()
        # Counters for /metrics per function version (pool key); None: metrics are off and nothing is counted.
        self.stats: dict[str, FunctionStats] | None = {} if metrics else None
        # The interpreter of each language runtime on this host (found on first use unless given).
        self._runtimes = runtimes
        self.logs = logs
        self.max_environments = max_environments
        self.keep_warm_s = keep_warm_s
        # Scaling (pool.py, scaler.py). lambda-dispatch paces scale-out at 2 s because a Lambda start
        # costs seconds; a start here is a fork of a zygote (milliseconds), so it may step every 100 ms.
        if scaler not in ("simple", "ewma"):
            raise ValueError(f"scaler must be 'simple' or 'ewma', not {scaler!r}")
        if dispatch_mode not in ("queue", "per-request"):
            raise ValueError(f"dispatch_mode must be 'queue' or 'per-request', not {dispatch_mode!r}")
        self.scaler = scaler
        self.instance_multiplier = 2.0
        self.scale_out_interval_s = 0.1
        self.scale_out_step = 5
        self.per_request_environments = dispatch_mode == "per-request"
        # Initialised, unused environments each Node.js function version keeps for its next cold start (pool.py).
        self.node_spares = node_spares
        # The one starter every environment start goes through: bursts of 50, then 200 a second.
        self.starter = TokenBucket(50, 1 / 200)
        self.init_backoff_s = 0.5
        self.init_backoff_max_s = 60.0
        self.queue_timeout_s = queue_timeout_s
        # Idle one-at-a-time environments are frozen (cgroup freezer) after this long; None: never.
        self.freeze_idle_s = freeze_idle_s
        self.reserved: dict[str, int] = {}
        self._reserved_total = 0  # sum(reserved.values()), kept by _recount_claims: _admit runs per invocation
        # Provisioned concurrency per function version (pool key): environments its pool keeps started.
        self.provisioned: dict[str, int] = {}
        # Provisioned concurrency of functions without a reservation, per version (pool key): taken out of the
        # unreserved pool the other functions share, and there for that version's invocations only, as on AWS
        # (_admit). Kept by _recount_claims.
        self.claims: dict[str, int] = {}
        self.inflight: dict[str, int] = {}       # per function, all versions together (reservations)
        self.key_inflight: dict[str, int] = {}   # per function version (provisioned concurrency)
        self.total_inflight = 0
        self._waiting: list[FunctionPool] = []
        self.pools: dict[str, FunctionPool] = {}
        self.retired: set[FunctionPool] = set()
        self.environments = 0
        self.closing = False
        self._tasks: set[asyncio.Task] = set()
        self._reaper: asyncio.Task | None = None
        self._ticker: asyncio.Task | None = None
        self._changed = asyncio.Event()

    @property
    def runtimes(self) -> HostRuntimes:
        if self._runtimes is None:
            self._runtimes = HostRuntimes.discover()
        return self._runtimes

    def start(self) -> None:
        self._reaper = asyncio.get_running_loop().create_task(self._reap_loop())
        if self.scaler == "ewma":
            self._ticker = asyncio.get_running_loop().create_task(self._ewma_loop())

    async def _ewma_loop(self) -> None:
        while True:
            await asyncio.sleep(0.1)
            for pool in list(self.pools.values()):
                pool.ewma.tick()
                if pool.queue:
                    pool._scale()

    # ------------------------------------------------------------------ functions

    def set_function(self, spec: FunctionSpec) -> FunctionPool:
        """Run spec from now on (each version has its own pool, keyed by spec.key); environments of an
        older spec of the same version finish what they have and stop."""
        old = self.pools.get(spec.key)
        if old is not None and old.spec == spec:
            return old
        pool = (HttpAppPool if is_http_app(spec) else FunctionPool)(self, spec)
        self.pools[spec.key] = pool
        if old is not None:
            self._retire(old, pool)
        if self.provisioned.get(spec.key):
            pool.set_provisioned(self.provisioned[spec.key])
        return pool

    def stats_for(self, key: str) -> FunctionStats | None:
        """The counters of one function version (pool key), kept across its pools; None while metrics are off."""
        if self.stats is None:
            return None
        stats = self.stats.get(key)
        if stats is None:
            stats = self.stats[key] = FunctionStats()
        return stats

    def remove_function(self, name: str) -> None:
        """Retire the pools of every version of a function (and their tenants' pools)."""
        if self.stats is not None:
            for key in [k for k in self.stats if k.startswith(pool_key(name, ""))]:
                del self.stats[key]
        for key in [k for k, p in self.pools.items() if p.spec.name == name and p.parent is None]:
            self._retire(self.pools.pop(key), None)
        for key in [k for k in self.provisioned if k.startswith(pool_key(name, ""))]:
            del self.provisioned[key]
        self._recount_claims()

    def remove_version(self, name: str, version: str) -> None:
        if self.stats is not None:
            self.stats.pop(pool_key(name, version), None)
        self.provisioned.pop(pool_key(name, version), None)
        self._recount_claims()
        pool = self.pools.pop(pool_key(name, version), None)
        if pool is not None:
            self._retire(pool, None)

    def _retire(self, pool: FunctionPool, successor: FunctionPool | None) -> None:
        for tenant_id, tpool in pool.tenants.items():
            # Each tenant's queued invocations move to that tenant's pool of the successor.
            if self.pools.get(tenant_key(pool.spec.key, tenant_id)) is tpool:
                del self.pools[tenant_key(pool.spec.key, tenant_id)]
            tpool.retire(self.tenant_pool(successor, tenant_id) if successor is not None and tpool.queue else None)
            if tpool.envs:
                self.retired.add(tpool)
        pool.retire(successor)
        if pool.envs or pool.zygote is not None:
            self.retired.add(pool)

    def tenant_pool(self, pool: FunctionPool, tenant_id: str) -> FunctionPool:
        """The pool of one tenant of a PER_TENANT function version: its environments serve that tenant only
        (they fork from the version's zygote). Created on the tenant's first invocation, dropped by the
        reaper once it has no environments left."""
        tpool = pool.tenants.get(tenant_id)
        if tpool is None:
            tpool = type(pool)(self, pool.spec)
            tpool.parent, tpool.tenant_id = pool, tenant_id
            pool.tenants[tenant_id] = tpool
            self.pools[tenant_key(pool.spec.key, tenant_id)] = tpool
        return tpool

    def _drop_tenant_pool(self, key: str, tpool: FunctionPool) -> None:
        del self.pools[key]
        tpool.retired = True
        parent, tenant_id = tpool.parent, tpool.tenant_id
        if parent is not None and tenant_id is not None and parent.tenants.get(tenant_id) is tpool:
            del parent.tenants[tenant_id]

    def recycle(self, name: str) -> int:
        """Stop the idle environments of every version of a function; returns how many."""
        count = 0
        for pool in [p for p in self.pools.values() if p.spec.name == name]:
            before = len(pool.idle)
            pool.stop_idle(keep_zygote=True)  # a Node.js function keeps its spares, as Python its zygote
            count += before - len(pool.idle)
        return count

    # ------------------------------------------------------------------ concurrency limits

    def set_reserved(self, name: str, value: int | None) -> None:
        if value is None:
            self.reserved.pop(name, None)
        else:
            self.reserved[name] = value
        self._recount_claims()

    def set_provisioned(self, key: str, count: int) -> None:
        """Keep `count` environments of one function version (pool key) started; 0 ends that."""
        if count:
            self.provisioned[key] = count
        else:
            self.provisioned.pop(key, None)
        self._recount_claims()
        pool = self.pools.get(key)
        if pool is not None and (count or pool.provisioned_target):
            pool.set_provisioned(count)

    @property
    def unreserved_limit(self) -> int:
        return self.max_environments - self._reserved_total

    def _recount_claims(self) -> None:
        self._reserved_total = sum(self.reserved.values())
        # pool_key(name, version), and a function name has no ':'. A reservation's provisioned concurrency comes
        # out of the reservation.
        self.claims = {key: count for key, count in self.provisioned.items()
                       if key.partition(":")[0] not in self.reserved}

    def _admit(self, name: str, key: str) -> None:
        """AWS's order: the function's reservation (which holds its provisioned concurrency), else the provisioned
        concurrency of the version invoked (key), else the account's unreserved pool, less what is provisioned
        from it."""
        reserved = self.reserved.get(name)
        if reserved is not None:
            if self.inflight.get(name, 0) >= reserved:
                raise Throttled("ReservedFunctionConcurrentInvocationLimitExceeded")
            return
        unreserved = self.total_inflight
        if self.reserved:
            unreserved -= sum(self.inflight.get(n, 0) for n in self.reserved)
        limit = self.unreserved_limit
        claims = self.claims
        if claims:
            inflight = self.key_inflight
            mine = claims.get(key, 0)
            if mine and inflight.get(key, 0) < mine:
                return  # within the version's own provisioned concurrency
            for k, claim in claims.items():
                # A version's invocations up to its provisioned concurrency use that, not the shared pool.
                unreserved -= min(inflight.get(k, 0), claim)
                limit -= claim
        if unreserved >= limit:
            raise Throttled("ConcurrentInvocationLimitExceeded")

    def submit(self, key: str, inv: Invocation) -> None:
        """Queue an invocation for one function version (FunctionSpec.key); a synchronous one over a
        concurrency limit raises Throttled. A reservation counts per function, all versions together; provisioned
        concurrency per version."""
        pool = self.pools[key]
        name = pool.spec.name
        # Without reservations or provisioned claims, _admit refuses only at the account's limit: it is called then
        # (or when there are any), not for every invocation.
        if inv.sync and (self.reserved or self.claims
                         or self.total_inflight >= self.max_environments - self._reserved_total):
            try:
                self._admit(name, key)
            except Throttled as exc:
                if pool.stats is not None:
                    pool.stats.throttled(exc.reason)
                raise
        if inv.tenant_id is not None and pool.spec.per_tenant:
            pool = self.tenant_pool(pool, inv.tenant_id)
        self.inflight[name] = self.inflight.get(name, 0) + 1
        self.key_inflight[key] = self.key_inflight.get(key, 0) + 1
        self.total_inflight += 1
        inv.release, inv.counted_as = self._release, key
        pool.submit(inv)

    def _release(self, key: str) -> None:
        self.total_inflight -= 1
        left = self.key_inflight.get(key, 1) - 1
        if left:
            self.key_inflight[key] = left
        else:
            self.key_inflight.pop(key, None)
        name = key.partition(":")[0]
        left = self.inflight.get(name, 1) - 1
        if left:
            self.inflight[name] = left
        else:
            self.inflight.pop(name, None)

    def env_cap(self, name: str) -> int:
        """How many environments the function may have: its reservation, if any."""
        return self.reserved.get(name, self.max_environments)

    async def prewarm(self, spec: FunctionSpec) -> None:
        """Start one environment for spec and wait until it is initialised; raises InitFailure."""
        pool = self.set_function(spec)
        if pool.idle:
            return  # already warm: the same code and configuration were deployed again
        if spec.per_tenant and spec.is_python and not isinstance(pool, HttpAppPool):
            # Environments belong to tenants: initialise only the zygote they will be forked from.
            await pool.zygote_for()
            return
        env = pool.start_environment()
        await asyncio.shield(env.ready)
        pool.keep_spares()

    # ------------------------------------------------------------------ the environment budget

    def can_start(self) -> bool:
        return self.environments < self.max_environments

    def env_started(self) -> None:
        self.environments += 1

    def env_stopped(self) -> None:
        self.environments -= 1
        # Room for one more: the pools that waited for it try again.
        while self._waiting and self.can_start():
            pool = self._waiting.pop(0)
            if pool.queue and not pool.retired:
                pool._scale()
            pool.provision()

    def make_room(self, pool: FunctionPool) -> None:
        """At the environment limit: stop the longest-idle environment of another function (idle
        environments are a cache, not a reservation) and have `pool` try again once it is gone."""
        if pool not in self._waiting:
            self._waiting.append(pool)
        victims = [(env.idle_since, p, env) for p in self.pools.values() if p is not pool
                   for env in p.idle if not env.provisioned]
        if not victims:
            return
        _, owner, env = min(victims, key=lambda v: v[0])
        owner.idle.remove(env)
        env.stop()

    def pool_changed(self, pool: FunctionPool) -> None:
        if pool.retired and not pool.envs:
            self.retired.discard(pool)
        self._changed.set()

    def track(self, task: asyncio.Task) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and not isinstance(task.exception(), InitFailure):
            log.error("background task failed", exc_info=task.exception())

    async def _reap_loop(self) -> None:
        interval = max(0.5, min(10.0, self.keep_warm_s / 4))
        while True:
            await asyncio.sleep(interval)
            for key, pool in list(self.pools.items()):
                pool.reap(self.keep_warm_s)
                if pool.parent is not None and not pool.envs and not pool.queue:
                    self._drop_tenant_pool(key, pool)

    # ------------------------------------------------------------------ shutdown

    def outstanding(self) -> int:
        return sum(p.outstanding for p in list(self.pools.values()) + list(self.retired))

    async def shutdown(self, drain_s: float) -> None:
        """Finish queued and running invocations (up to drain_s), then stop every environment."""
        self.closing = True
        for task in (self._reaper, self._ticker):
            if task is not None:
                task.cancel()
        deadline = time.monotonic() + drain_s
        while self.outstanding() and time.monotonic() < deadline:
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=0.05)
        pools = list(self.pools.values()) + list(self.retired)
        for pool in pools:
            pool.retire(None, "Lamina stopped before this invocation started.")
            pool.kill_all()
        deadline = time.monotonic() + 5.0
        while self.environments > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2.0)
        self.logs.flush_all()
