"""Init-time uniqueness, as AWS handles it for SnapStart: every Python environment is a fork of its version's zygote
(restored from one initialised snapshot), so what init computes is the same in all of them; SnapStart's runtime
hooks (snapshot-restore-py) make per-environment values, `random` is reseeded in each, and a function may opt out
(LAMINA_INIT=per-environment: its init in each environment, AWS's on-demand semantics)."""

from __future__ import annotations

import base64
from concurrent.futures import ThreadPoolExecutor

import pytest

from helpers import invoke, invoke_ok, recycle, wait_settled

pytestmark = pytest.mark.timeout(180)

HANDLER = '''\
import os, random, time, uuid
from snapshot_restore_py import register_after_restore, register_before_snapshot

INIT_ID = uuid.uuid4().hex            # computed once, in the zygote (the snapshot)
STATE = {"restored": None, "before": 0, "args": None}


@register_before_snapshot
def before():
    STATE["before"] += 1


def after(tag, sep="-"):
    STATE["restored"] = tag + sep + uuid.uuid4().hex
    STATE["args"] = [tag, sep]


register_after_restore(after, "env", sep=":")


def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return {"init": INIT_ID, "restored": STATE["restored"], "before": STATE["before"], "args": STATE["args"],
            "random": random.random(), "type": os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"]}
'''


def two_environments(client, name: str) -> list[dict]:
    """The answers of two invocations that overlap, so each runs in an environment of its own."""
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: invoke_ok(client, name, {"sleep": 1.5}), range(2)))
    return answers


def test_after_restore_hooks_make_each_environment_unique(lambda_client, functions) -> None:
    name = functions({"app.py": HANDLER}, prefix="snap", Timeout=30)
    one, two = two_environments(lambda_client, name)
    assert one["init"] == two["init"]  # init ran once, in the snapshot both environments were restored from
    assert one["before"] == two["before"] == 1  # before-snapshot hooks: once, before the snapshot
    assert one["restored"] != two["restored"] and one["restored"].startswith("env:"), (one, two)
    assert one["args"] == ["env", ":"]
    assert one["random"] != two["random"]  # random is reseeded in every environment
    assert one["type"] == two["type"] == "snap-start"


def test_opting_out_runs_init_in_each_environment(lambda_client, functions) -> None:
    name = functions({"app.py": HANDLER}, prefix="nosnap", Timeout=30,
                     Environment={"Variables": {"LAMINA_INIT": "per-environment"}})
    one, two = two_environments(lambda_client, name)
    assert one["init"] != two["init"], (one, two)  # init in each environment
    assert one["before"] == two["before"] == 0 and one["restored"] is None  # no snapshot, no hooks
    assert one["type"] == two["type"] == "on-demand"
    # A new environment reports the init it ran (Init Duration), not a restore.
    recycle(lambda_client.meta.endpoint_url, name)
    resp, _ = invoke(lambda_client, name, {}, LogType="Tail")
    report = base64.b64decode(resp["LogResult"]).decode().strip().splitlines()[-1]
    assert "Init Duration" in report and "Restore Duration" not in report, report


def test_hook_failures(lambda_client, functions) -> None:
    """A hook that raises is the environment's init error, reported at invoke (the function is Active, as with any
    init error on AWS)."""
    for hook, error_type in (("register_after_restore", "Runtime.AfterRestoreError"),
                             ("register_before_snapshot", "Runtime.BeforeSnapshotError")):
        code = HANDLER + f"\n@{hook}\ndef broken():\n    raise RuntimeError('cannot reconnect')\n"
        name = functions({"app.py": code}, prefix="badhook", wait=False)
        assert wait_settled(lambda_client, name)["State"] == "Active"
        resp, err = invoke(lambda_client, name, {})
        assert resp["FunctionError"] == "Unhandled", err
        assert (err["errorType"], err["errorMessage"]) == (error_type, "cannot reconnect"), err
