"""What another user of the host sees of a linux sandbox: no configuration in any process's argv
(`ps` and /proc/PID/cmdline are readable by every user, and the config holds the function's
environment variables), and no zombie left under a live sandbox's launcher."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import cmdline, descendants, invoke, unique_name

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("linux_sandbox")]


APP = "def handler(event, context):\n    return 'ok'\n"


def _state_and_parent(pid: int) -> tuple[str, int]:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return "", 0
    return fields[0], int(fields[1])


def _in_cgroup_of(pid: int, function: str) -> bool:
    try:
        return f"/{function}-" in Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return False


def test_secrets_stay_out_of_argv_and_no_zombies(lamina_server, lambda_client, functions):
    secret = unique_name("hunter2")
    name = functions({"app.py": APP}, prefix="hostview", Environment={"Variables": {"DB_PASSWORD": secret}})
    assert invoke(lambda_client, name)[1] == "ok"  # a zygote and an environment are alive now
    tree = descendants(lamina_server.pid)
    assert tree, "the server has no sandbox processes"
    leaked = [pid for pid in tree if secret.encode() in cmdline(pid)]
    assert not leaked, f"the function's environment is readable in the argv of {leaked}"
    assert not any(b'"seccomp"' in cmdline(pid) for pid in tree), "a launcher still carries its config in argv"
    # Only this function's sandboxes (other tests share the server): a zombie has left its cgroup, so it
    # is found by its parent.
    ours = {pid for pid in tree if _in_cgroup_of(pid, name)}
    assert ours, "no process in the function's cgroups"
    stats = {pid: _state_and_parent(pid) for pid in tree}
    zombies = [pid for pid, (state, parent) in stats.items() if state == "Z" and parent in ours]
    assert not zombies, f"zombies under the function's sandboxes: {zombies}"
