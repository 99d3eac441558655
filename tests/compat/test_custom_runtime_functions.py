"""Custom runtimes (provided.al2023) through a real `lamina serve`: the Runtime API at
AWS_LAMBDA_RUNTIME_API, a hand-written bootstrap, and awslambdaric run unchanged as the bootstrap."""

from __future__ import annotations

import pytest

from helpers import HANDWRITTEN_BOOTSTRAP, installed_files, invoke, wait_settled

INIT_FAILS = '''#!/usr/bin/python3
import http.client, json, os
host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
conn = http.client.HTTPConnection(host, int(port))
conn.request("POST", "/2018-06-01/runtime/init/error",
             json.dumps({"errorMessage": "no config", "errorType": "Custom.InitBroken"}),
             {"Lambda-Runtime-Function-Error-Type": "Custom.InitBroken"})
conn.getresponse().read()
raise SystemExit(1)
'''

RIC_APP = '''
import os
def handler(event, context):
    if event.get("raise"):
        raise ValueError("kaboom from awslambdaric")
    return {"echo": event, "request_id": context.aws_request_id, "remaining": context.get_remaining_time_in_millis(),
            "function": context.function_name, "memory": context.memory_limit_in_mb}
'''

RIC_BOOTSTRAP = '''#!/bin/sh
export PYTHONPATH="$LAMBDA_TASK_ROOT"
exec python3 -m awslambdaric app.handler
'''


def test_handwritten_bootstrap(lambda_client, functions):
    name = functions({"bootstrap": HANDWRITTEN_BOOTSTRAP}, Runtime="provided.al2023", handler="unused")
    resp, body = invoke(lambda_client, name, {"a": 1}, LogType="Tail")
    assert resp["StatusCode"] == 200 and "FunctionError" not in resp, body
    assert body["echo"] == {"a": 1}
    assert body["rid"] == resp["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    assert body["arn"].endswith(f":function:{name}") and body["deadline"] > 0
    resp, body = invoke(lambda_client, name, {"fail": True})
    assert resp["FunctionError"] == "Unhandled"
    assert body["errorType"] == "Custom.Failure" and body["errorMessage"] == "asked to fail"
    resp, body = invoke(lambda_client, name, {"b": 2})  # the same environment keeps serving
    assert body["echo"] == {"b": 2}


def test_custom_runtime_init_error_is_reported_at_invoke(lambda_client, functions):
    """As on AWS: the function is Active; its init error is each invocation's answer."""
    name = functions({"bootstrap": INIT_FAILS}, Runtime="provided.al2023", handler="unused", wait=False)
    cfg = wait_settled(lambda_client, name)
    assert cfg["State"] == "Active" and cfg["LastUpdateStatus"] == "Successful", cfg
    resp, body = invoke(lambda_client, name, {})
    assert resp["FunctionError"] == "Unhandled" and body["errorType"] == "Custom.InitBroken", body


@pytest.fixture(scope="module")
def ric_zip() -> dict[str, bytes]:
    files = installed_files("awslambdaric", "simplejson", "snapshot-restore-py")
    files["app.py"] = RIC_APP.encode()
    files["bootstrap"] = RIC_BOOTSTRAP.encode()
    return files


def test_awslambdaric_as_the_bootstrap(lambda_client, functions, ric_zip):
    name = functions(ric_zip, Runtime="provided.al2023", handler="app.handler", MemorySize=256)
    resp, body = invoke(lambda_client, name, {"hello": "ric"})
    assert resp["StatusCode"] == 200 and "FunctionError" not in resp, body
    assert body["echo"] == {"hello": "ric"} and body["function"] == name and body["memory"] == "256"
    assert body["request_id"] == resp["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    assert 0 < body["remaining"] <= 3000
    resp, body = invoke(lambda_client, name, {"raise": True}, LogType="Tail")
    assert resp["FunctionError"] == "Unhandled"
    # awslambdaric 4 sends no error-type header: the type comes from the body.
    assert body["errorType"] == "ValueError" and body["errorMessage"] == "kaboom from awslambdaric", body
    resp, body = invoke(lambda_client, name, {"again": 1})
    assert body["echo"] == {"again": 1}


def test_awslambdaric_init_error(lambda_client, functions, ric_zip):
    files = dict(ric_zip, **{"app.py": b"raise RuntimeError('broken at import')\n"})
    name = functions(files, Runtime="provided.al2023", handler="app.handler", wait=False)
    cfg = wait_settled(lambda_client, name)
    assert cfg["State"] == "Active", cfg   # as on AWS: the init error shows at invoke time
    resp, body = invoke(lambda_client, name, {})
    assert resp["FunctionError"] == "Unhandled" and "broken at import" in body["errorMessage"], body
