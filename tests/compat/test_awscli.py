"""The AWS CLI (v1, from PyPI, in its own venv .venv-awscli) against a real `lamina serve`.

Create the venv with `make awscli` (make test does); without it these tests fail.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest

from helpers import ROLE, RUNTIME, aws_cli_env, make_zip, probe_code, require_aws_cli, unique_name

pytestmark = pytest.mark.timeout(120)

@pytest.fixture(scope="module")
def aws_bin() -> Path:
    return require_aws_cli()


@pytest.fixture
def aws(aws_bin: Path, endpoint: str, tmp_path: Path):
    """aws(*args) -> CompletedProcess, with dummy credentials and no user config."""
    env = aws_cli_env(tmp_path)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(aws_bin), "lambda", *args, "--endpoint-url", endpoint],
                              capture_output=True, text=True, env=env, cwd=tmp_path, timeout=90)

    return run


def test_aws_lambda_invoke_writes_payload(aws, functions, tmp_path: Path):
    name = functions(probe_code("cli"))
    out = tmp_path / "out.json"
    proc = aws("invoke", "--function-name", name, "--payload", '{"k": "v"}', str(out))
    assert proc.returncode == 0, proc.stderr
    meta = json.loads(proc.stdout)
    assert meta["StatusCode"] == 200, meta
    assert meta["ExecutedVersion"] == "$LATEST", meta
    assert "FunctionError" not in meta, meta
    result = json.loads(out.read_bytes())
    assert result["echo"] == {"k": "v"} and result["version"] == "cli", result


def test_aws_lambda_invoke_log_tail_and_error(aws, functions, tmp_path: Path):
    name = functions(probe_code())
    out = tmp_path / "err.json"
    proc = aws("invoke", "--function-name", name, "--payload", '{"raise": "cli boom"}', "--log-type", "Tail",
               str(out))
    assert proc.returncode == 0, proc.stderr
    meta = json.loads(proc.stdout)
    assert meta["StatusCode"] == 200 and meta["FunctionError"] == "Unhandled", meta
    log = base64.b64decode(meta["LogResult"]).decode()
    assert "START RequestId:" in log and "END RequestId:" in log and "REPORT RequestId:" in log, log
    body = json.loads(out.read_bytes())
    assert body["errorMessage"] == "cli boom" and body["errorType"] == "ValueError", body


def test_aws_lambda_invoke_event(aws, functions, tmp_path: Path):
    name = functions(probe_code())
    out = tmp_path / "event.out"
    proc = aws("invoke", "--function-name", name, "--invocation-type", "Event", "--payload", "{}", str(out))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["StatusCode"] == 202
    assert out.read_bytes() == b""


def test_aws_lambda_create_wait_delete(aws, tmp_path: Path):
    name = unique_name("cli")
    zip_path = tmp_path / "fn.zip"
    zip_path.write_bytes(make_zip(probe_code("made-by-cli")))
    proc = aws("create-function", "--function-name", name, "--runtime", RUNTIME, "--role", ROLE,
               "--handler", "app.handler", "--zip-file", f"fileb://{zip_path}")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["FunctionName"] == name
    try:
        proc = aws("wait", "function-active-v2", "--function-name", name)
        assert proc.returncode == 0, proc.stderr
        out = tmp_path / "out.json"
        proc = aws("invoke", "--function-name", name, str(out))
        assert proc.returncode == 0, proc.stderr
        assert json.loads(out.read_bytes())["version"] == "made-by-cli"
    finally:
        proc = aws("delete-function", "--function-name", name)
        assert proc.returncode == 0, proc.stderr


def test_aws_lambda_not_found(aws):
    name = unique_name("missing")
    proc = aws("get-function", "--function-name", name)
    assert proc.returncode == 255, (proc.returncode, proc.stdout, proc.stderr)
    expected = "An error occurred (ResourceNotFoundException) when calling the GetFunction operation"
    assert expected in proc.stderr, proc.stderr
