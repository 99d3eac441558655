"""Zygote snapshots: a function version's init runs once; each environment is a fork of it."""

from __future__ import annotations

import concurrent.futures
import contextlib
import os

from helpers import invoke, recycle

SNAPSHOT_APP = '''
import os, time, random
INIT_TIME = time.time()
INIT_TOKEN = random.random()
TMP_MARK = "/tmp/" + os.environ["AWS_LAMBDA_FUNCTION_NAME"] + "-init"
with open(TMP_MARK, "w") as fh:
    fh.write("written by init")

def handler(event, context):
    if event.get("sleep"):
        time.sleep(event["sleep"])
    with open(TMP_MARK) as fh:
        mark = fh.read()
    return {"init_time": INIT_TIME, "token": INIT_TOKEN, "stream": context.log_stream_name, "mark": mark,
            "setting": os.environ.get("SETTING")}
'''


def test_init_runs_once_and_environments_are_forks(endpoint, lambda_client, functions):
    name = functions({"app.py": SNAPSHOT_APP}, Environment={"Variables": {"SETTING": "one"}})
    try:
        _, first = invoke(lambda_client, name, {})
        assert first["mark"] == "written by init" and first["setting"] == "one"
        # Two environments at once: both forks of the same initialised zygote.
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            results = list(pool.map(lambda _: invoke(lambda_client, name, {"sleep": 0.5})[1], range(2)))
        streams = {r["stream"] for r in results}
        assert len(streams) == 2, "two concurrent invokes should run in two environments"
        assert {r["token"] for r in results} == {first["token"]}, "init ran again instead of forking the zygote"
        # A fresh environment after recycling: still the same snapshot, and it sees init's /tmp file.
        recycle(endpoint, name)
        _, fresh = invoke(lambda_client, name, {})
        assert fresh["stream"] not in streams | {first["stream"]}
        assert fresh["token"] == first["token"] and fresh["mark"] == "written by init"

        # New configuration: a new zygote, so init runs again and sees the new setting.
        lambda_client.update_function_configuration(FunctionName=name, Environment={"Variables": {"SETTING": "two"}})
        lambda_client.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1})
        _, after = invoke(lambda_client, name, {})
        assert after["setting"] == "two"
        assert after["token"] != first["token"] and after["init_time"] > first["init_time"]
    finally:
        # Under the process backend init wrote to the host's /tmp.
        with contextlib.suppress(OSError):
            os.unlink(f"/tmp/{name}-init")
