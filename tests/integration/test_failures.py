"""Environments that time out, crash or cannot initialise: the error, the function state, recovery."""

from __future__ import annotations

import io
import json
import uuid
import zipfile

import pytest

from helpers import WAIT, decode_log, invoke, invoke_ok, make_zip, probe_code, request_id, wait_settled

pytestmark = pytest.mark.timeout(90)


def test_timeout_then_fresh_environment(lambda_client, functions):
    name = functions(probe_code(), Timeout=1)
    before = invoke_ok(lambda_client, name, {})

    # The handler would sleep far longer than the client waits (boto3 gives up after 65 s): only the
    # server's own timeout can answer this invoke.
    resp, body = invoke(lambda_client, name, {"sleep": 3600}, LogType="Tail")
    assert resp["StatusCode"] == 200
    assert resp["FunctionError"] == "Unhandled", body
    assert "Task timed out after 1.00 seconds" in body["errorMessage"], body

    after = invoke_ok(lambda_client, name, {"n": 2})
    assert after["echo"] == {"n": 2}
    assert after["env_id"] != before["env_id"], "the environment that timed out was reused"
    assert after["calls"] == 1


def test_timeout_is_logged(lambda_client, functions):
    name = functions(probe_code(), Timeout=1)
    resp, body = invoke(lambda_client, name, {"sleep": 10}, LogType="Tail")
    assert resp["FunctionError"] == "Unhandled"
    log = decode_log(resp)
    assert "Task timed out after 1.00 seconds" in log, log
    assert f"REPORT RequestId: {request_id(resp)}" in log, log


def test_process_exit_then_fresh_environment(lambda_client, functions):
    name = functions(probe_code())
    before = invoke_ok(lambda_client, name, {})

    resp, body = invoke(lambda_client, name, {"exit": 3})
    assert resp["StatusCode"] == 200
    assert resp["FunctionError"] == "Unhandled", body
    assert body["errorType"] == "Runtime.ExitError", body
    assert "exit status 3" in body["errorMessage"], body

    after = invoke_ok(lambda_client, name, {"n": 3})
    assert after["echo"] == {"n": 3}
    assert after["env_id"] != before["env_id"]


def test_exit_zero_is_also_an_error(lambda_client, functions):
    name = functions(probe_code())
    resp, body = invoke(lambda_client, name, {"exit": 0})
    assert resp["FunctionError"] == "Unhandled", body
    assert body["errorType"] == "Runtime.ExitError", body
    body = invoke_ok(lambda_client, name, {})


OK_APP = {"app.py": "def handler(e, c):\n    return 1\n"}
INIT_FAILURES = {
    "import-raises": ({"app.py": "raise RuntimeError('boom-at-import')\ndef handler(e, c):\n    return 1\n"},
                      "app.handler", "boom-at-import"),
    "missing-handler": (OK_APP, "app.nope", "nope"),
    "missing-module": (OK_APP, "missing_mod.handler", "missing_mod"),
    "syntax-error": ({"app.py": "def handler(e, c):\n    return (\n"}, "app.handler", "syntax"),
    "import-missing-dependency": ({"app.py": "import not_installed_pkg_xyz\n"}, "app.handler",
                                  "not_installed_pkg_xyz"),
}


@pytest.mark.parametrize("case", sorted(INIT_FAILURES))
def test_init_failure_is_reported_at_invoke(lambda_client, functions, assert_serving, case):
    """As on AWS, a function whose init fails is still Active (LastUpdateStatus Successful): every invocation
    reports the init error."""
    files, handler, mention = INIT_FAILURES[case]
    name = functions(files, handler=handler, wait=False)
    lambda_client.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    conf = lambda_client.get_function(FunctionName=name)["Configuration"]
    assert conf["State"] == "Active" and conf["LastUpdateStatus"] == "Successful", conf
    for _ in range(2):
        resp, body = invoke(lambda_client, name, {})
        assert resp.get("FunctionError") == "Unhandled", f"an invoke of a broken init succeeded: {body}"
        assert mention.lower() in json.dumps(body).lower(), body
    assert_serving()


def test_failed_function_recovers_after_code_update(lambda_client, functions):
    name = functions({"app.py": "raise RuntimeError('broken')\n"}, wait=False)
    lambda_client.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    assert invoke(lambda_client, name, {})[0]["FunctionError"] == "Unhandled"
    lambda_client.update_function_code(FunctionName=name, ZipFile=make_zip(probe_code("fixed")))
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    lambda_client.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    body = invoke_ok(lambda_client, name, {})
    assert body["version"] == "fixed"


def test_custom_runtime_that_exits_during_init_is_reported_at_invoke(lambda_client):
    """A bootstrap that exits before asking for work: Active (as on AWS); invocations report the exit."""
    name = f"provided-{uuid.uuid4().hex[:8]}"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        entry = zipfile.ZipInfo("bootstrap")
        entry.external_attr = 0o100755 << 16  # an executable file, as custom runtimes need
        zf.writestr(entry, "#!/bin/sh\nexit 3\n")
    info = buf.getvalue()
    resp = lambda_client.create_function(FunctionName=name, Runtime="provided.al2023", Handler="x",
                                          Role="arn:aws:iam::000000000000:role/lamina", Code={"ZipFile": info})
    assert resp["Runtime"] == "provided.al2023" and resp["State"] == "Pending"
    cfg = wait_settled(lambda_client, name)
    assert cfg["State"] == "Active", cfg
    resp, body = invoke(lambda_client, name, {})
    assert resp["FunctionError"] == "Unhandled" and "exit status 3" in body["errorMessage"], body
    lambda_client.delete_function(FunctionName=name)
