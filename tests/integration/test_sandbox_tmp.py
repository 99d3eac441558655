"""Under the linux sandbox, every environment has a private /tmp: it persists across warm invokes of that
environment, a new environment starts with an empty one, and concurrent environments never share it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from helpers import invoke_ok, recycle

pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("linux_sandbox")]


# Marks the first run of its environment in /tmp/first with the environment's log stream.
MARK_APP = r'''
import os, time


def _read(path):
    try:
        with open(path) as fh:
            return fh.read()
    except FileNotFoundError:
        return None


def handler(event, context):
    stream = os.environ["AWS_LAMBDA_LOG_STREAM_NAME"]
    mark = _read("/tmp/first")
    if mark is None:
        with open("/tmp/first", "w") as fh:
            fh.write(stream)
    if event.get("sleep"):
        time.sleep(event["sleep"])
    return {"stream": stream, "context_stream": context.log_stream_name, "mark": mark,
            "mark_after": _read("/tmp/first"), "tmp": sorted(os.listdir("/tmp"))}
'''


def test_tmp_persists_while_warm_and_is_fresh_in_a_new_environment(lambda_client, endpoint, functions):
    name = functions({"app.py": MARK_APP})
    first = invoke_ok(lambda_client, name, {})
    assert first["stream"] and first["stream"] == first["context_stream"], first
    assert first["mark"] is None, f"a new environment's /tmp already had a mark: {first}"
    assert first["tmp"] == ["first"], first

    warm = invoke_ok(lambda_client, name, {})
    assert warm["stream"] == first["stream"], "the second invoke did not reuse the warm environment"
    assert warm["mark"] == first["stream"], f"/tmp did not persist across warm invokes: {warm}"

    assert recycle(endpoint, name) >= 1
    fresh = invoke_ok(lambda_client, name, {})
    assert fresh["stream"] != first["stream"], "DELETE .../environments did not replace the environment"
    assert fresh["mark"] is None, f"a new environment saw the old one's /tmp: {fresh}"
    assert fresh["tmp"] == ["first"], fresh


def test_concurrent_environments_have_separate_tmp(lambda_client, functions):
    name = functions({"app.py": MARK_APP}, Timeout=10)
    # Each invoke marks /tmp, then holds its environment long enough that the other needs one of its own.
    with ThreadPoolExecutor(2) as pool:
        bodies = list(pool.map(lambda _: invoke_ok(lambda_client, name, {"sleep": 1.5}), range(2)))
    a, b = bodies
    assert a["stream"] != b["stream"], f"both invokes ran in one environment: {bodies}"
    for body in bodies:
        assert body["mark"] is None, f"a new environment's /tmp already had a mark: {bodies}"
        assert body["mark_after"] == body["stream"], f"another environment wrote this one's /tmp: {bodies}"
        assert body["tmp"] == ["first"], bodies


SHM_APP = r'''
import os, time


def handler(event, context):
    stream = os.environ["AWS_LAMBDA_LOG_STREAM_NAME"]
    before = sorted(os.listdir("/dev/shm"))
    with open("/dev/shm/" + stream.rsplit("]", 1)[-1], "w") as fh:
        fh.write(stream)
    if event.get("sleep"):
        time.sleep(event["sleep"])
    return {"stream": stream, "before": before, "after": sorted(os.listdir("/dev/shm"))}
'''


def test_dev_shm_is_private_to_each_environment(lambda_client, endpoint, functions):
    name = functions({"app.py": SHM_APP}, Timeout=10)
    with ThreadPoolExecutor(2) as pool:
        bodies = list(pool.map(lambda _: invoke_ok(lambda_client, name, {"sleep": 1.5}), range(2)))
    assert bodies[0]["stream"] != bodies[1]["stream"], f"both invokes ran in one environment: {bodies}"
    for body in bodies:
        assert body["before"] == [], f"a new environment's /dev/shm was not empty: {bodies}"
        assert len(body["after"]) == 1, f"another environment's file is in this one's /dev/shm: {bodies}"
    recycle(endpoint, name)
    fresh = invoke_ok(lambda_client, name, {})
    assert fresh["before"] == [], f"a new environment saw old environments' /dev/shm files: {fresh}"
