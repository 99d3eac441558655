"""What a handler sees: the context object and the environment variables."""

from __future__ import annotations

import os
import re

import pytest

from helpers import REGION, WAIT, create_function, fn_arn, invoke, request_id, unique_name

pytestmark = pytest.mark.timeout(90)

CONTEXT_HANDLER = '''
import os, time


def handler(event, context):
    started = time.monotonic()
    first = context.get_remaining_time_in_millis()
    if event.get("sleep"):
        time.sleep(event["sleep"])
    remaining = context.get_remaining_time_in_millis()
    between_ms = (time.monotonic() - started) * 1000
    return {
        "aws_request_id": context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "invoked_function_arn": context.invoked_function_arn,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "remaining_first": first,
        "remaining": remaining,
        "between_ms": between_ms,
        "env": dict(os.environ),
        "code_dir": os.path.dirname(os.path.realpath(__file__)),
        "cwd": os.path.realpath(os.getcwd()),
    }
'''

LOG_STREAM = re.compile(r"^\d{4}/\d{2}/\d{2}/\[\$LATEST\][0-9a-f]+$")


@pytest.fixture(scope="module")
def ctx_fn(lambda_client):
    name = unique_name("ctx")
    create_function(lambda_client, name, {"app.py": CONTEXT_HANDLER}, Timeout=5, MemorySize=256,
                    Environment={"Variables": {"MY_VAR": "hello", "WITH_EQUALS": "a=b=c", "EMPTY": "",
                                               "UNICODE": "grüße ☃"}})
    yield name
    lambda_client.delete_function(FunctionName=name)


def test_context_object(lambda_client, ctx_fn):
    resp, body = invoke(lambda_client, ctx_fn, {})
    assert resp["StatusCode"] == 200 and "FunctionError" not in resp, body
    assert body["aws_request_id"] == request_id(resp)
    assert body["function_name"] == ctx_fn
    assert body["function_version"] == "$LATEST"
    assert body["invoked_function_arn"] == fn_arn(ctx_fn)
    assert str(body["memory_limit_in_mb"]) == "256"
    assert body["log_group_name"] == f"/aws/lambda/{ctx_fn}"
    assert LOG_STREAM.match(body["log_stream_name"]), body["log_stream_name"]
    assert isinstance(body["remaining"], int)
    assert 0 < body["remaining"] <= 5000, body["remaining"]
    assert body["remaining"] <= body["remaining_first"]


def test_request_ids_are_unique(lambda_client, ctx_fn):
    ids = set()
    for _ in range(3):
        resp, body = invoke(lambda_client, ctx_fn, {})
        assert body["aws_request_id"] == request_id(resp)
        ids.add(body["aws_request_id"])
    assert len(ids) == 3


def test_remaining_time_counts_down(lambda_client, ctx_fn):
    _, body = invoke(lambda_client, ctx_fn, {"sleep": 1.0})
    spent = body["remaining_first"] - body["remaining"]
    # It went down by the time that passed between the two calls: at least the 1 s slept, at most what the
    # handler's own clock saw around them (2 ms for the whole-millisecond readings).
    assert 1000 - 2 <= spent <= body["between_ms"] + 2, body


def test_invoked_function_arn_when_invoked_by_arn(lambda_client, ctx_fn):
    _, body = invoke(lambda_client, fn_arn(ctx_fn), {})
    assert body["invoked_function_arn"] == fn_arn(ctx_fn)
    assert body["function_name"] == ctx_fn


def test_reserved_environment_variables(lambda_client, ctx_fn):
    _, body = invoke(lambda_client, ctx_fn, {})
    env = body["env"]
    expected = {
        "AWS_LAMBDA_FUNCTION_NAME": ctx_fn,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{ctx_fn}",
        "AWS_LAMBDA_LOG_STREAM_NAME": body["log_stream_name"],
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.11",
        "_HANDLER": "app.handler",
    }
    for key, value in expected.items():
        assert env.get(key) == value, f"{key}={env.get(key)!r}, expected {value!r}"
    assert env.get("LAMBDA_TASK_ROOT"), env
    task_root = env["LAMBDA_TASK_ROOT"]
    assert os.path.realpath(task_root) == body["code_dir"], (task_root, body["code_dir"])


def test_working_directory_is_task_root(lambda_client, ctx_fn):
    """AWS starts handlers in LAMBDA_TASK_ROOT, so relative paths to files in the zip work."""
    _, body = invoke(lambda_client, ctx_fn, {})
    assert body["cwd"] == os.path.realpath(body["env"]["LAMBDA_TASK_ROOT"]), body["cwd"]


def test_function_environment_variables(lambda_client, ctx_fn):
    _, body = invoke(lambda_client, ctx_fn, {})
    env = body["env"]
    assert env.get("MY_VAR") == "hello"
    assert env.get("WITH_EQUALS") == "a=b=c"
    assert env.get("EMPTY") == ""
    assert env.get("UNICODE") == "grüße ☃"


def test_environment_update_reaches_new_invokes(lambda_client, functions):
    name = functions({"app.py": CONTEXT_HANDLER}, Environment={"Variables": {"STAGE": "one"}})
    _, body = invoke(lambda_client, name, {})
    assert body["env"]["STAGE"] == "one"
    lambda_client.update_function_configuration(FunctionName=name, MemorySize=512,
                                                Environment={"Variables": {"STAGE": "two", "NEW": "x"}})
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    _, body = invoke(lambda_client, name, {})
    assert body["env"]["STAGE"] == "two" and body["env"]["NEW"] == "x", body["env"]
    assert str(body["memory_limit_in_mb"]) == "512"
    assert body["env"]["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "512"
