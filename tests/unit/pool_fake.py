"""A FunctionPool with one busy environment whose starts are recorded, not made: for the pool's scaling and queue
rules without sandboxes (test_cheap_starts.py, test_queue_waits.py)."""

from __future__ import annotations

from pathlib import Path

from lamina.dispatch.dispatcher import Dispatcher
from lamina.dispatch.environment import State
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
