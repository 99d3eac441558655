"""Sandboxed processes run under SCHED_BATCH by default (`sandbox_scheduling`), the server itself does not, nor
does a Python function's zygote (it forks on the server's request), and `sandbox_scheduling = normal` leaves
sandboxes as they were (SCHED_OTHER). Checked from inside (what the handler's own process reports, for a zygote
fork and for a custom runtime's bootstrap) and, for the zygote, from the host."""

from __future__ import annotations

import json
import os

import pytest

from helpers import (
    HANDWRITTEN_BOOTSTRAP,
    cmdline,
    create_function,
    descendants,
    invoke,
    proc_stat,
    raw_request,
    unique_name,
)
from lamina.runtime.netns_maker import COMM as NETNS_MAKER

pytestmark = pytest.mark.timeout(90)

POLICY_APP = "import os\n\ndef handler(event, context):\n    return os.sched_getscheduler(0)\n"


def _comm(pid: int) -> str:
    with open(f"/proc/{pid}/comm") as fh:
        return fh.read().strip()


def test_environments_run_under_sched_batch(lamina_server, lambda_client, functions):
    python_fn = functions({"app.py": POLICY_APP}, prefix="sched")
    custom_fn = functions({"bootstrap": HANDWRITTEN_BOOTSTRAP}, prefix="schedrt", Runtime="provided.al2023",
                          handler="unused")  # it answers with its own policy, among other things
    assert invoke(lambda_client, python_fn)[1] == os.SCHED_BATCH
    assert invoke(lambda_client, custom_fn)[1]["sched"] == os.SCHED_BATCH
    # The front door keeps the ordinary policy: it is what a woken environment must not preempt.
    assert os.sched_getscheduler(lamina_server.pid) == os.SCHED_OTHER
    health = json.loads(raw_request(lamina_server.endpoint, "GET", "/lamina/v1/health").body)
    assert health["scheduling"] == "batch"
    # A zygote: a Python runtime process with Python runtime processes (its forks) below it.
    runtimes = {pid for pid in descendants(lamina_server.pid) if b"python_handler.py" in cmdline(pid)}
    parents = {pid: stat[0] for pid in runtimes if (stat := proc_stat(pid)) is not None}
    zygotes = {parent for parent in parents.values() if parent in runtimes}
    assert zygotes, "no zygote with environments found"
    checked = 0   # the session server's other zygotes may have none left: count the environments seen
    for zygote in zygotes:
        assert os.sched_getscheduler(zygote) == os.SCHED_OTHER
        # Its environments; not its namespace maker (runtime/netns_maker.py), which keeps the zygote's policy: it
        # refills the pool of network namespaces that cold starts take from.
        forks = [pid for pid, parent in parents.items() if parent == zygote and _comm(pid) != NETNS_MAKER]
        assert all(os.sched_getscheduler(pid) == os.SCHED_BATCH for pid in forks), forks
        checked += len(forks)
    assert checked, "no zygote with environments found (other than namespace makers)"


def test_normal_scheduling_leaves_sandboxes_alone(lamina_factory):
    server = lamina_factory(env={"LAMINA_SANDBOX_SCHEDULING": "normal"})
    client = server.client()
    name = unique_name("schednormal")
    create_function(client, name, {"app.py": POLICY_APP})
    try:
        assert invoke(client, name)[1] == os.SCHED_OTHER
    finally:
        client.delete_function(FunctionName=name)
