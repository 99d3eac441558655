"""`aws logs` (AWS CLI v1, .venv-awscli) against the CloudWatch Logs API subset.

AWS CLI v1 has no `aws logs tail` (that command is v2's, which is not on PyPI); v2's `tail --follow` polls
FilterLogEvents, which is tested here with v1's `filter-log-events`, and v1's own follow command,
`start-live-tail`, streams new records. StartLiveTail goes to a "streaming-" host prefix on AWS, so against an
endpoint URL host-prefix injection is turned off (AWS_DISABLE_HOST_PREFIX_INJECTION=true).
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import time
from pathlib import Path

import pytest

from helpers import REGION, aws_cli_env, create_function, invoke_ok, require_aws_cli, unique_name

pytestmark = pytest.mark.timeout(120)

HANDLER = '''
import json


def handler(event, context):
    for line in event.get("lines", []):
        print(line)
    return {"stream": context.log_stream_name}
'''


@pytest.fixture(scope="module")
def aws_env(tmp_path_factory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("aws")
    # Host prefixes off: StartLiveTail's endpoint would otherwise get a "streaming-" host prefix.
    return {**aws_cli_env(home), "AWS_DISABLE_HOST_PREFIX_INJECTION": "true"}


@pytest.fixture
def aws(endpoint, aws_env, tmp_path):
    aws_bin = require_aws_cli()

    def run(*args: str) -> dict:
        proc = subprocess.run([str(aws_bin), "logs", *args, "--endpoint-url", endpoint, "--output", "json"],
                              capture_output=True, text=True, env=aws_env, cwd=tmp_path, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout) if proc.stdout.strip() else {}

    return run


@pytest.fixture
def fn(lambda_client):
    name = unique_name("cli-logs")
    create_function(lambda_client, name, {"app.py": HANDLER})
    yield name
    lambda_client.delete_function(FunctionName=name)


def test_describe_filter_and_get(aws, fn, lambda_client):
    stream = invoke_ok(lambda_client, fn, {"lines": ["hello from cli", '{"level": "ERROR", "n": 1}']})["stream"]
    group = f"/aws/lambda/{fn}"
    groups = aws("describe-log-groups", "--log-group-name-prefix", group)["logGroups"]
    assert [g["logGroupName"] for g in groups] == [group]
    streams = aws("describe-log-streams", "--log-group-name", group)["logStreams"]
    assert stream in [s["logStreamName"] for s in streams]
    found = aws("filter-log-events", "--log-group-name", group, "--filter-pattern", '{ $.level = "ERROR" }')
    assert [e["message"].strip() for e in found["events"]] == ['{"level": "ERROR", "n": 1}']
    found = aws("filter-log-events", "--log-group-name", group, "--filter-pattern", '"hello from"')
    assert [e["message"].strip() for e in found["events"]] == ["hello from cli"]
    events = aws("get-log-events", "--log-group-name", group, "--log-stream-name", stream, "--start-from-head")
    assert any(e["message"].startswith("REPORT RequestId") for e in events["events"])
    aws("put-retention-policy", "--log-group-name", group, "--retention-in-days", "14")
    assert aws("describe-log-groups", "--log-group-name-prefix", group)["logGroups"][0]["retentionInDays"] == 14


def test_follow_with_start_live_tail(endpoint, aws_env, fn, lambda_client, tmp_path: Path):
    """v1's follow: start-live-tail prints new records as they are written, until it is stopped."""
    arn = f"arn:aws:logs:{REGION}:000000000000:log-group:/aws/lambda/{fn}"
    invoke_ok(lambda_client, fn, {"lines": ["before the tail"]})
    proc = subprocess.Popen([str(require_aws_cli()), "logs", "start-live-tail", "--log-group-identifiers", arn,
                             "--endpoint-url", endpoint], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=aws_env, cwd=tmp_path)
    try:
        out = ""
        sel = selectors.DefaultSelector()
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)
        sel.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + 40
        sent = 0
        while "followed line" not in out and time.monotonic() < deadline:
            # Invoke until a line shows up: the CLI's session may start after the first invoke.
            if sent < 10:
                invoke_ok(lambda_client, fn, {"lines": ["followed line"]})
                sent += 1
            for _key, _ in sel.select(timeout=1.5):
                chunk = proc.stdout.read()
                out += chunk.decode() if chunk else ""
        assert "followed line" in out, (out, proc.stderr.read1() if proc.poll() is not None else b"")  # type: ignore[union-attr]
        assert "before the tail" not in out
        assert any(line.startswith("START RequestId") for line in out.splitlines())
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
