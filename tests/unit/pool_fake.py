"""FunctionPools whose environment starts are recorded, not made: for the pool's scaling and queue rules without
sandboxes — one with a busy environment (test_cheap_starts.py, test_queue_waits.py), and one whose environments the
test drives step by step (ScriptedEnv: test_node_spares.py, test_pool_census.py)."""

from __future__ import annotations

from pathlib import Path

from lamina.dispatch.dispatcher import Dispatcher
from lamina.dispatch.environment import State
from lamina.dispatch.invocation import Invocation
from lamina.dispatch.pool import FunctionPool
from lamina.dispatch.scaler import TokenBucket
from lamina.dispatch.spec import FunctionSpec
from lamina.store.logs import LogStore


class NoBackend:
    name = "none"
    isolated = False


class FakeEnv:
    def __init__(self, state: State) -> None:
        self.state = state
        self.provisioned = False


def pool_with_a_busy_environment(tmp_path: Path, queue_timeout_s: float = 60.0) -> tuple[FunctionPool, list[object]]:
    """(pool, the environments it started). Call inside a running event loop."""
    dispatcher = Dispatcher(NoBackend(), LogStore(tmp_path / "logs"), queue_timeout_s=queue_timeout_s)  # type: ignore[arg-type]
    dispatcher.starter = TokenBucket(1000, 1.0)  # the rules under test, not the starter's rate
    spec = FunctionSpec("f", "arn:aws:lambda:us-east-1:000000000000:function:f", "$LATEST", "python3.11",
                        "app.handler", 128, 3, tmp_path, "sha")
    pool = FunctionPool(dispatcher, spec)
    busy = FakeEnv(State.BUSY)
    pool.envs.add(busy)  # type: ignore[arg-type]
    pool.busy_envs.add(busy)  # type: ignore[arg-type]  # as the pool counts an environment it gave work
    started: list[object] = []

    def start_environment(provisioned: bool = False) -> None:
        env = FakeEnv(State.STARTING)
        pool.envs.add(env)  # type: ignore[arg-type]
        pool.starting.add(env)  # type: ignore[arg-type]
        started.append(env)

    pool.start_environment = start_environment  # type: ignore[method-assign]
    return pool, started


class ScriptedEnv:
    """An environment that starts when told (ready()), and records what it was given."""

    def __init__(self, pool: FunctionPool) -> None:
        self.pool = pool
        self.state = State.STARTING
        self.invocations = 0
        self.provisioned = False
        self.idle_since = 0.0
        self.init_ms: float | None = None
        self.restore_ms: float | None = None
        self.expires_at: float | None = None
        self.given: list[Invocation] = []

    def ready(self) -> None:
        self.state = State.IDLE
        self.init_ms = 50.0
        self.pool.env_ready(self, fresh=True)  # type: ignore[arg-type]

    def deliver(self, inv: Invocation) -> None:
        self.state = State.BUSY
        self.invocations += 1
        self.given.append(inv)

    def finish(self) -> None:
        self.state = State.IDLE
        self.pool.env_ready(self, fresh=False)  # type: ignore[arg-type]

    def park(self) -> None:
        pass

    def stop(self) -> None:
        self.state = State.DEAD
        self.pool.env_gone(self)  # type: ignore[arg-type]


def scripted_pool(tmp_path: Path, runtime: str = "nodejs20.x", spares: int = 1, rate: int = 1000,
                  env_type: type[ScriptedEnv] = ScriptedEnv) -> tuple[FunctionPool, list[ScriptedEnv]]:
    """(pool, the environments it started, in order: the test makes them ready, busy, stopped)."""
    dispatcher = Dispatcher(NoBackend(), LogStore(tmp_path / "logs"), node_spares=spares)  # type: ignore[arg-type]
    dispatcher.starter = TokenBucket(rate, 1.0)
    spec = FunctionSpec("f", "arn:aws:lambda:us-east-1:000000000000:function:f", "$LATEST", runtime,
                        "index.handler", 128, 3, tmp_path, "sha")
    pool = FunctionPool(dispatcher, spec)
    dispatcher.pools[spec.key] = pool
    started: list[ScriptedEnv] = []

    def start_environment(provisioned: bool = False) -> ScriptedEnv:
        env = env_type(pool)
        pool.envs.add(env)  # type: ignore[arg-type]
        pool.starting.add(env)  # type: ignore[arg-type]
        dispatcher.env_started()
        started.append(env)
        return env

    pool.start_environment = start_environment  # type: ignore[method-assign,assignment]
    return pool, started
