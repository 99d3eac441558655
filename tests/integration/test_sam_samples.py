"""AWS's own SAM sample applications deployed with `lamina deploy --template`, and working: a Python function on a
Schedule event (it fires, on a server whose schedule clock runs 100x), an SQS consumer (it gets a message) and an
HTTP API hello world (it answers through the function URL its HttpApi event becomes).

The samples are AWS's public code (aws-samples/serverless-patterns, MIT-0), kept unchanged outside this tree with
their licence and origin (NOTICE) in LAMINA_SAM_SAMPLES (default: shared/sam-samples beside the repository);
without them the module is skipped and says so. They are deployed as they are, except for what the host forces:
a Python runtime it has no interpreter for (the samples name python3.14) or an architecture it is not (the SQS
sample names arm64) is first refused with Lamina's reason, then swapped for the host's newest Python or its own
architecture (the handlers are plain Python 3)."""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from helpers import ACCESS_KEY, REGION, SECRET_KEY, FunctionUrl, LaminaServer, run_lamina, unique_name

pytestmark = pytest.mark.timeout(300)

SAMPLES = Path(os.environ.get("LAMINA_SAM_SAMPLES") or Path(__file__).resolve().parents[3] / "shared" / "sam-samples")
NAMES = ("eventbridge-scheduled-lambda", "sqs-lambda-python-sam", "apigw-http-api-lambda-python")
if not all((SAMPLES / name / "template.yaml").is_file() for name in NAMES):
    pytest.skip(f"AWS's SAM samples are not in {SAMPLES} (set LAMINA_SAM_SAMPLES; see the module docstring)",
                allow_module_level=True)


@functools.cache
def host_pythons() -> list[str]:
    """The Python runtimes this host has an interpreter for, oldest first (`lamina runtimes`)."""
    out = subprocess.run([sys.executable, "-m", "lamina", "runtimes"], capture_output=True, text=True, check=True,
                         env={**os.environ, "COLUMNS": "250", "NO_COLOR": "1"}).stdout
    return re.findall(r"^(python3\.\d+)\s+\d", out, re.M)


@pytest.fixture(scope="module")
def fast(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaminaServer]:
    """A server whose schedule clock runs 100x: rate(1 minute) fires every 0.6 s."""
    tmp = tmp_path_factory.mktemp("lamina-sam")
    server = LaminaServer(data_dir=tmp / "data", log_path=tmp / "server.log",
                          extra_env={"LAMINA_SCHEDULE_TIME_SCALE": "0.01"})
    server.start()
    yield server
    server.stop()
    server.kill_leftovers()


def client(kind: str, endpoint: str):
    return boto3.client(kind, endpoint_url=endpoint, region_name=REGION, aws_access_key_id=ACCESS_KEY,
                        aws_secret_access_key=SECRET_KEY, config=Config(retries={"total_max_attempts": 1}))


def sample(name: str, tmp_path: Path, endpoint: str, stack: str) -> tuple[Path, str]:
    """A copy of the sample (the kept copy is never written to), deployed: (its folder, the deploy's output). What
    this host cannot run (a Python it has no interpreter for, another architecture) is first refused with Lamina's
    reason, then swapped for what the host has."""
    folder = Path(shutil.copytree(SAMPLES / name, tmp_path / name))
    template = folder / "template.yaml"
    host_arch = "arm64" if platform.machine() in ("aarch64", "arm64") else "x86_64"
    for _ in range(3):
        proc = deploy(endpoint, folder, stack, ok=False)
        if proc.returncode == 0:
            return folder, proc.stdout
        text = template.read_text()
        runtime = re.search(r"Runtime: (python3\.\d+)", text)
        if runtime and f"The runtime {runtime.group(1)} is not available on this Lamina host" in proc.stderr:
            text = text.replace(runtime.group(0), f"Runtime: {host_pythons()[-1]}")
        elif "Lamina runs functions on this host's architecture" in proc.stderr:
            text = re.sub(r"(Architectures:\s*\n\s*- )(arm64|x86_64)", rf"\g<1>{host_arch}", text)
        else:
            raise AssertionError(proc.stdout + proc.stderr)
        template.write_text(text)   # deployed again: the stack updates what it made before the refusal
    raise AssertionError(proc.stdout + proc.stderr)


def deploy(endpoint: str, folder: Path, stack: str, ok: bool = True) -> subprocess.CompletedProcess:
    proc = run_lamina(endpoint, "deploy", "--template", "template.yaml", "--stack-name", stack, cwd=folder,
                      timeout=180)
    if ok:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def delete(endpoint: str, folder: Path, stack: str) -> None:
    proc = run_lamina(endpoint, "deploy", "--delete", "--stack-name", stack, cwd=folder, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def output(text: str, key: str) -> str:
    m = re.search(rf"^\s+{key}\s+(\S+)$", text, re.M)
    assert m, text
    return m.group(1)


def log_lines(endpoint: str, fn: str, pattern: str, want: int, timeout: float = 45.0) -> list[str]:
    logs = client("logs", endpoint)
    deadline = time.monotonic() + timeout
    found: list[str] = []
    while len(found) < want and time.monotonic() < deadline:
        time.sleep(0.5)
        with contextlib.suppress(logs.exceptions.ResourceNotFoundException):
            found = [e["message"] for e in logs.filter_log_events(logGroupName=f"/aws/lambda/{fn}",
                                                                  filterPattern=pattern)["events"]]
    return found


def test_scheduled_function(fast: LaminaServer, tmp_path: Path) -> None:
    stack = unique_name("sched")
    app, _out = sample("eventbridge-scheduled-lambda", tmp_path, fast.endpoint, stack)
    fn = f"{stack}-ScheduledFunction"
    events = client("events", fast.endpoint)
    rules = events.list_rules(NamePrefix=f"{stack}-")["Rules"]
    assert [r["ScheduleExpression"] for r in rules] == ["rate(1 minute)"]
    assert log_lines(fast.endpoint, fn, '"Hello World"', 2), "the schedule did not fire twice"

    delete(fast.endpoint, app, stack)
    assert events.list_rules(NamePrefix=f"{stack}-")["Rules"] == []
    lam = client("lambda", fast.endpoint)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName=fn)


def test_sqs_consumer(endpoint: str, tmp_path: Path) -> None:
    stack = unique_name("sqs")
    app, out = sample("sqs-lambda-python-sam", tmp_path, endpoint, stack)
    fn = output(out, "ProcessorFunctionName")
    queue_url = output(out, "ProcessingQueueURL")
    sqs = client("sqs", endpoint)
    attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy"])["Attributes"]
    assert output(out, "ProcessingDLQARN") in attrs["RedrivePolicy"]
    sqs.send_message(QueueUrl=queue_url, MessageBody="sample-order-42")
    found = log_lines(endpoint, fn, '"Processed message: sample-order-42"', 1)
    assert found, "the consumer did not get the message"
    delete(endpoint, app, stack)
    assert queue_url not in sqs.list_queues().get("QueueUrls", [])


def test_http_api_hello_world(endpoint: str, tmp_path: Path) -> None:
    stack = unique_name("http")
    app, out = sample("apigw-http-api-lambda-python", tmp_path, endpoint, stack)
    url = output(out, "HttpApiEndpoint")
    assert ".lambda-url." in url
    m = re.match(r"(http://[^/]+/)", url)
    assert m, url
    status, _headers, body = FunctionUrl(endpoint, m.group(1)).get("/")
    assert (status, body) == (200, b"Hello World! This is the HTTP API")
    delete(endpoint, app, stack)
