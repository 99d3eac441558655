"""Server restarts and SIGTERM: state survives, in-flight invokes drain, nothing is left running."""

from __future__ import annotations

import subprocess
import threading
import time

import pytest

from helpers import (
    WAIT,
    create_function,
    descendants,
    describe_pids,
    invoke,
    make_zip,
    probe_code,
    processes_referencing,
    sha256_b64,
    still_running,
    unique_name,
)

pytestmark = pytest.mark.timeout(150)


def _wait_exit(server, timeout: float = 30.0) -> int | None:
    """The server's exit code after SIGTERM, or None if it did not exit within timeout (then it is killed)."""
    try:
        return server.wait(timeout)
    except subprocess.TimeoutExpired:
        return None


def _wait_gone(procs: dict[int, int], timeout: float = 3.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        alive = still_running(procs)
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)


def test_functions_survive_restart(lamina_factory):
    first = lamina_factory()
    client = first.client()
    name, other = unique_name("persist"), unique_name("persist")
    code = make_zip(probe_code("persisted"))
    create_function(client, name, code)
    create_function(client, other, probe_code("other"), Timeout=9, MemorySize=320,
                    Environment={"Variables": {"KEEP": "me"}})
    resp, before = invoke(client, name, {"k": 1})
    assert resp["StatusCode"] == 200 and "FunctionError" not in resp, before
    envs = descendants(first.pid)

    assert first.stop() == 0, "lamina serve did not exit 0 on SIGTERM"
    assert _wait_gone(envs) == [], f"left running after SIGTERM: {describe_pids(still_running(envs))}"

    second = lamina_factory(first.data_dir)
    client = second.client()
    client.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    conf = client.get_function(FunctionName=name)["Configuration"]
    assert conf["State"] == "Active" and conf["CodeSha256"] == sha256_b64(code), conf
    resp, after = invoke(client, name, {"k": 1})
    assert resp["StatusCode"] == 200 and "FunctionError" not in resp, after
    assert after["echo"] == before["echo"] and after["version"] == "persisted"

    conf = client.get_function_configuration(FunctionName=other)
    assert (conf["Timeout"], conf["MemorySize"], conf["Environment"]["Variables"]) == (9, 320, {"KEEP": "me"})
    names = {f["FunctionName"] for f in client.list_functions()["Functions"]}
    assert {name, other} <= names

    client.delete_function(FunctionName=other)
    assert second.stop() == 0
    third = lamina_factory(first.data_dir)
    names = {f["FunctionName"] for f in third.client().list_functions()["Functions"]}
    assert name in names and other not in names, "a delete did not survive the restart"


def test_sigterm_drains_in_flight_invoke(lamina_factory):
    server = lamina_factory()
    client = server.client()
    name = unique_name("drain")
    create_function(client, name, probe_code("drain"), Timeout=10)
    resp, warm = invoke(client, name, {})  # the environment is up before the slow invoke starts
    assert resp["StatusCode"] == 200 and "FunctionError" not in resp, warm
    envs = descendants(server.pid)
    assert envs, "no environment process found under the server after an invoke"

    result: dict = {}

    def slow_invoke() -> None:
        try:
            result["resp"], result["body"] = invoke(client, name, {"sleep": 2})
        except BaseException as exc:
            result["error"] = exc

    thread = threading.Thread(target=slow_invoke, daemon=True)
    thread.start()
    time.sleep(0.5)
    assert thread.is_alive(), f"the 2 s invoke returned before SIGTERM: {result}"
    server.terminate()
    thread.join(30)
    assert not thread.is_alive(), "the in-flight invoke did not return within 30 s of SIGTERM"
    assert "error" not in result, f"in-flight invoke failed during drain: {result.get('error')!r}"
    resp, body = result["resp"], result["body"]
    assert resp["StatusCode"] == 200 and "FunctionError" not in resp, body
    # The handler returns only after its whole sleep: the invoke that was in flight at SIGTERM ran to its end.
    assert body["echo"] == {"sleep": 2} and body["env_id"] == warm["env_id"]

    rc = _wait_exit(server)
    assert rc == 0, f"lamina serve exited {rc} after draining (None: still running 30 s after SIGTERM)"
    left = _wait_gone(envs)
    assert left == [], f"environment processes left after the server exited: {describe_pids(left)}"
    stray = processes_referencing(server.data_dir)
    assert stray == [], f"processes still using the data dir: {describe_pids(stray)}"


# A drain deadline no test waits for: a server that waits on anything but its invocations in flight
# (an idle environment, a stranded invocation) is still running when _wait_exit gives up after 30 s.
NO_DRAIN_DEADLINE = {"LAMINA_DRAIN_SECONDS": "3600"}


def test_sigterm_does_not_wait_on_idle_warm_environments(lamina_factory):
    """After SIGTERM, the server finishes what it has and stops; it does not wait on idle environments."""
    server = lamina_factory(env=NO_DRAIN_DEADLINE)
    client = server.client()
    names = [unique_name("idle") for _ in range(3)]
    for name in names:
        create_function(client, name, probe_code())
        invoke(client, name, {})
    envs = descendants(server.pid)
    server.terminate()
    assert _wait_exit(server) == 0, "lamina serve did not exit 0 on SIGTERM: it waited on its drain deadline"
    left = _wait_gone(envs)
    assert left == [], describe_pids(left)


@pytest.mark.parametrize("invocation_type", ["RequestResponse", "Event"])
def test_delete_during_invocation_then_clean_stop(lamina_factory, invocation_type):
    """Deleting a function while it runs must not strand the invocation (and with it the SIGTERM drain)."""
    server = lamina_factory(env=NO_DRAIN_DEADLINE)
    client = server.client()
    name = unique_name("delrun")
    create_function(client, name, probe_code(), Timeout=10)
    invoke(client, name, {})  # warm, so the next invoke starts running at once
    envs = descendants(server.pid)
    result: dict = {}

    def run() -> None:
        try:
            result["resp"], result["body"] = invoke(client, name, {"sleep": 1}, InvocationType=invocation_type)
        except Exception as exc:
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    time.sleep(0.3 if invocation_type == "RequestResponse" else 0.5)
    client.delete_function(FunctionName=name)
    thread.join(15)
    assert not thread.is_alive(), "the invoke of a deleted function never returned"
    if invocation_type == "Event":
        assert result["resp"]["StatusCode"] == 202, result
    time.sleep(1.5)  # let the 1 s handler finish on the deleted function
    assert server.healthy()

    server.terminate()
    rc = _wait_exit(server)
    assert rc == 0, (f"lamina serve exited {rc} (None: still running 30 s after SIGTERM: the drain waited on an "
                     f"invocation of the deleted function)")
    left = _wait_gone(envs)
    assert left == [], describe_pids(left)
    assert "I/O operation on closed file" not in server.output()
