"""Idle environments of one-at-a-time functions are frozen (cgroup freezer) and thawed on demand."""

from __future__ import annotations

import glob
import os
import time

import pytest

from helpers import invoke

APP = '''
import time
def handler(event, context):
    return {"stream": context.log_stream_name, "t": time.time()}
'''


def _env_groups(server_pid: int, name: str) -> list[str]:
    groups = glob.glob(f"/sys/fs/cgroup/unified/lamina/{server_pid}/{name}-*") or \
        glob.glob(f"/sys/fs/cgroup/lamina/{server_pid}/{name}-*")
    return [g for g in groups if not os.path.basename(g)[len(name) + 1:].startswith("z")]  # not the zygote


def _frozen(group: str) -> bool:
    with open(f"{group}/cgroup.events") as fh:
        return "frozen 1" in fh.read()


def test_idle_environment_is_frozen_and_thawed_by_the_next_invoke(lamina_server, lambda_client, functions):
    if os.geteuid() != 0:
        pytest.skip("needs root: the linux sandbox backend")
    name = functions({"app.py": APP})
    _, first = invoke(lambda_client, name, {})
    groups = _env_groups(lamina_server.pid, name)
    if not groups:
        pytest.skip("the server is not using the linux sandbox backend")
    assert len(groups) == 1, groups
    deadline = time.monotonic() + 5
    while not _frozen(groups[0]) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _frozen(groups[0]), "the idle environment was not frozen"
    _, second = invoke(lambda_client, name, {})
    assert second["stream"] == first["stream"], "a frozen environment should be thawed and reused"
