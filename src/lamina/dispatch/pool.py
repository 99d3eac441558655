"""The queue and environments of one function version.

Invocations wait in the pool's queue; an environment that becomes free takes the oldest one. A
request is never bound to an environment that is still starting, so a burst is served by whichever
environment frees up first, warm or new.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from typing import TYPE_CHECKING

from lamina.dispatch.environment import Environment, InitFailure, State
from lamina.dispatch.invocation import Invocation, InvokeResult
from lamina.dispatch.zygote import Zygote

if TYPE_CHECKING:
    from lamina.dispatch.dispatcher import Dispatcher
    from lamina.dispatch.spec import FunctionSpec


class FunctionPool:
    def __init__(self, dispatcher: Dispatcher, spec: FunctionSpec) -> None:
        self.dispatcher = dispatcher
        self.spec = spec
        self.log = dispatcher.logs.for_function(spec.name)
        self.queue: deque[Invocation] = deque()
        self.idle: list[Environment] = []
        self.envs: set[Environment] = set()
        self.starting: set[Environment] = set()
        self.retired = False
        self.zygote: Zygote | None = None

    async def zygote_for(self) -> Zygote:
        """The function version's zygote, started on first use; raises InitFailure if its init fails."""
        if self.zygote is None or not self.zygote.alive:
            self.zygote = Zygote(self)
            self.dispatcher.track(asyncio.get_running_loop().create_task(self.zygote.start()))
        await asyncio.shield(self.zygote.ready)
        return self.zygote

    def zygote_breached(self) -> None:
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
                return
        self.queue.append(inv)
        self._scale()

    @property
    def busy(self) -> int:
        return sum(1 for env in self.envs if env.state is State.BUSY)

    @property
    def outstanding(self) -> int:
        """Invocations queued or running: what a drain waits for."""
        return len(self.queue) + self.busy

    # ------------------------------------------------------------------ environments

    def _scale(self) -> None:
        # One new environment per queued invocation not already covered by one that is starting.
        # (The scaler with pacing and backoff is the next step; this keeps starts bounded by demand.)
        want = len(self.queue) - len(self.starting)
        while want > 0 and not self.retired and self.dispatcher.can_start():
            self.start_environment()
            want -= 1

    def start_environment(self) -> Environment:
        env = Environment(self, self.spec, self.dispatcher.backend, self.log)
        self.envs.add(env)
        self.starting.add(env)
        self.dispatcher.env_started()
        self.dispatcher.track(env.ready.get_loop().create_task(env.start()))
        return env

    def env_ready(self, env: Environment, fresh: bool) -> None:
        """The environment pulls: hand it the oldest waiting invocation, or park it as idle."""
        self.starting.discard(env)
        if self.retired:
            env.stop()
            return
        while self.queue:
            inv = self.queue.popleft()
            if not inv.done:
                env.deliver(inv)
                return
        self.idle.append(env)

    def env_init_failed(self, env: Environment, failure: InitFailure) -> None:
        # The invocation that waited longest gets the init error, as on AWS; the others wait for
        # the next environment (started when this one is gone).
        while self.queue:
            inv = self.queue.popleft()
            if not inv.done:
                env.fail_with_init_error(inv, failure)
                break

    def env_gone(self, env: Environment) -> None:
        if env in self.envs:
            self.envs.discard(env)
            self.starting.discard(env)
            if env in self.idle:
                self.idle.remove(env)
            self.dispatcher.env_stopped()
        if self.queue:
            self._scale()
        if self.retired and not self.envs and self.zygote is not None:
            self.zygote.stop()
        self.dispatcher.pool_changed(self)

    def reap(self, keep_warm_s: float) -> None:
        now = time.monotonic()
        for env in list(self.idle):
            if now - env.idle_since >= keep_warm_s:
                self.idle.remove(env)
                env.stop()

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
        for env in list(self.idle) + ([] if keep_zygote else list(self.starting)):
            env.stop()
        self.idle.clear()
        if not keep_zygote and not self.envs and self.zygote is not None:
            self.zygote.stop()

    def kill_all(self) -> None:
        for env in list(self.envs):
            if env.state is State.BUSY:
                env.abort("Lamina stopped before the invocation finished")
            else:
                env.stop()
        if self.zygote is not None:
            self.zygote.stop()
