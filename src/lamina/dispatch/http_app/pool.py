"""An HTTP-app function's pool: environments with `max_concurrency` request slots each; a queued request goes to any
free slot."""

from __future__ import annotations

import contextlib
import time
from typing import cast

from lamina.dispatch.environment import Environment, State
from lamina.dispatch.http_app.config import HttpAppConfig
from lamina.dispatch.http_app.environment import HttpAppEnvironment
from lamina.dispatch.invocation import Invocation
from lamina.dispatch.pool import FunctionPool, PoolDispatcher
from lamina.dispatch.spec import FunctionSpec


class HttpAppPool(FunctionPool):
    """Environments with `max_concurrency` slots each; a queued request goes to any free slot."""

    http_app: HttpAppConfig

    def __init__(self, dispatcher: PoolDispatcher, spec: FunctionSpec) -> None:
        super().__init__(dispatcher, spec)
        self.http_app = HttpAppConfig.from_spec(spec)
        self.max_concurrency = self.http_app.max_concurrency
        self.in_flight = 0
        self.open: set[HttpAppEnvironment] = set()   # ready, with some but not all slots taken

    def new_environment(self) -> HttpAppEnvironment:
        return HttpAppEnvironment(self, self.spec, self.dispatcher.backend, self.log)

    @property
    def running(self) -> int:
        return self.in_flight

    def _running(self, busy: int) -> int:
        return self.in_flight

    @property
    def busy(self) -> int:
        """Environments with a request (this pool files them as BUSY itself, _place)."""
        return sum(1 for env in self.envs if env.state is State.BUSY)

    def _census(self) -> tuple[int, int]:
        busy = gone = 0
        for env in self.envs:
            state = env.state
            if state is State.BUSY:
                busy += 1
            elif state is State.STOPPING or state is State.DEAD:
                gone += 1
        return busy, gone

    def submit(self, inv: Invocation) -> None:
        env = self._free_env()
        if env is None:
            self._enqueue(inv)
            return
        env.take(inv)
        self._place(env)

    def _free_env(self) -> HttpAppEnvironment | None:
        best = None
        for env in self.open:  # the least busy environment that has room
            if best is None or env.active < best.active:
                best = env
        if best is not None:
            return best
        while self.idle:
            idle = self.idle.pop()  # the most recently used: the others stay idle and can be reaped
            if idle.state is State.IDLE:
                return cast(HttpAppEnvironment, idle)  # this pool makes no other kind (new_environment)
        return None

    def _place(self, env: HttpAppEnvironment) -> None:
        """File a ready environment by how many of its slots are taken: idle, open or full."""
        if env.state not in (State.IDLE, State.BUSY):
            self.open.discard(env)
            return
        if env.active == 0:
            self.open.discard(env)
            if env.state is not State.IDLE or env not in self.idle:
                env.state = State.IDLE
                env.idle_since = time.monotonic()
                if env not in self.idle:
                    self.idle.append(env)
            return
        env.state = State.BUSY
        if env in self.idle:
            self.idle.remove(env)
        if env.active < self.max_concurrency:
            self.open.add(env)
        else:
            self.open.discard(env)

    def _fill(self, env: HttpAppEnvironment) -> None:
        while self.queue and env.active < self.max_concurrency:
            inv = self.queue.popleft()
            if not inv.done:
                env.take(inv)
        self._place(env)

    def env_ready(self, env: Environment, fresh: bool) -> None:
        assert isinstance(env, HttpAppEnvironment)  # this pool makes no other kind (new_environment)
        self.starting.discard(env)
        if fresh:
            self.init_succeeded()
        if self.retired:
            env.stop()
            return
        self._fill(env)

    def slot_released(self, env: HttpAppEnvironment) -> None:
        if env.state not in (State.IDLE, State.BUSY):
            return
        if self.retired:
            self._place(env)
            if env.active == 0:
                with contextlib.suppress(ValueError):
                    self.idle.remove(env)
                env.stop()
            return
        self._fill(env)

    def env_gone(self, env: Environment) -> None:
        if isinstance(env, HttpAppEnvironment):  # all of this pool's are
            self.open.discard(env)
        super().env_gone(env)
