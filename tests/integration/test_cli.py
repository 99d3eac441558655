"""The `lamina` CLI (deploy, invoke, logs, ls, rm) against a real `lamina serve`, as a user runs it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from helpers import WAIT, free_port, run_lamina, unique_name

pytestmark = pytest.mark.timeout(120)

APP = '''
import os


def handler(event, context):
    print("hello-log", event.get("mark", ""))
    if event.get("fail"):
        raise ValueError("cli-fail")
    return {"got": event, "stage": os.environ.get("STAGE")}
'''


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    d = tmp_path / "fn"
    d.mkdir()
    (d / "app.py").write_text(APP)
    return d


def test_deploy_invoke_ls_logs_rm(cli, lambda_client, app_dir: Path):
    name = unique_name("cli")
    proc = cli("deploy", str(app_dir), "--name", name, "-e", "STAGE=one", "--memory", "256", "--timeout", "5")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert name in proc.stdout
    try:
        conf = lambda_client.get_function_configuration(FunctionName=name)
        assert conf["Handler"] == "app.handler" and conf["Runtime"] == "python3.11"
        assert (conf["MemorySize"], conf["Timeout"]) == (256, 5)
        assert conf["Environment"]["Variables"] == {"STAGE": "one"}
        lambda_client.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAIT)

        proc = cli("invoke", name, "-p", '{"mark": "m1"}')
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout) == {"got": {"mark": "m1"}, "stage": "one"}

        proc = cli("invoke", name, "-p", '{"mark": "m2"}', "--log")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["got"] == {"mark": "m2"}
        assert "START RequestId:" in proc.stderr and "hello-log m2" in proc.stderr, proc.stderr
        assert "REPORT RequestId:" in proc.stderr

        proc = cli("invoke", name, "-p", '{"fail": 1}', ok=False)
        assert proc.returncode != 0, "a function error must give a non-zero exit code"
        assert "cli-fail" in proc.stdout + proc.stderr

        proc = cli("invoke", name, "--async", "-p", '{"mark": "queued"}')
        assert proc.returncode == 0, proc.stderr
        assert "202" in proc.stdout + proc.stderr

        proc = cli("ls")
        assert proc.returncode == 0, proc.stderr
        assert name in proc.stdout

        deadline = time.monotonic() + 15
        while True:  # the async invoke's output shows up in the logs once it ran
            proc = cli("logs", name)
            assert proc.returncode == 0, proc.stderr
            if "hello-log queued" in proc.stdout or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        for needle in ("START RequestId:", "hello-log m1", "hello-log m2", "hello-log queued", "END RequestId:",
                       "REPORT RequestId:"):
            assert needle in proc.stdout, (needle, proc.stdout)

        # redeploy: new code and settings reach new invokes
        (app_dir / "app.py").write_text(APP.replace('"stage"', '"v2stage"'))
        proc = cli("deploy", str(app_dir), "--name", name, "-e", "STAGE=two")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        lambda_client.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAIT)
        proc = cli("invoke", name)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout) == {"got": {}, "v2stage": "two"}
    finally:
        proc = cli("rm", name, "--yes")
    assert proc.returncode == 0, proc.stderr
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.get_function(FunctionName=name)
    assert name not in cli("ls").stdout


def test_invoke_unknown_function(cli):
    name = unique_name("missing")
    proc = cli("invoke", name, ok=False)
    assert proc.returncode != 0
    assert "ResourceNotFoundException" in proc.stderr or "not found" in proc.stderr.lower(), proc.stderr
    assert proc.stdout == ""


def test_invoke_bad_payload_is_a_usage_error(cli, assert_serving):
    proc = cli("invoke", unique_name("any"), "-p", "{x", ok=False)
    assert proc.returncode == 2, proc.stderr  # click's exit status for a usage error
    assert "JSON" in proc.stderr and "Usage:" in proc.stderr, proc.stderr
    assert_serving()


def test_no_server_says_how_to_start_one(tmp_path: Path):
    endpoint = f"http://127.0.0.1:{free_port()}"
    proc = run_lamina(endpoint, "ls", cwd=tmp_path)
    assert proc.returncode != 0
    assert endpoint in proc.stderr and "lamina serve" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
