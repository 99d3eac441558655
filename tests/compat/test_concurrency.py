"""Concurrency limits in AWS's order: reserved concurrency (a cap and a guarantee), the account pool,
and queued invocations that wait too long — all answered with 429 TooManyRequestsException."""

from __future__ import annotations

import concurrent.futures
import json
import time
import urllib.request

import pytest
from botocore.exceptions import ClientError

from helpers import assert_aws_error, create_function, invoke, raw_request, unique_name

SLEEPER = '''
import time
def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return {"slept": event.get("sleep", 0)}
'''


def _throttle(exc: ClientError) -> tuple[int, str, str, str]:
    """(HTTP status, error code, Reason, Retry-After) of a throttled call."""
    err = exc.response
    return (err["ResponseMetadata"]["HTTPStatusCode"], err["Error"]["Code"], err.get("Reason", ""),
            err["ResponseMetadata"]["HTTPHeaders"].get("retry-after", ""))


def test_put_get_delete_function_concurrency(lambda_client, functions):
    name = functions({"app.py": SLEEPER})
    assert lambda_client.get_function_concurrency(FunctionName=name).get("ReservedConcurrentExecutions") is None
    before = lambda_client.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"]
    resp = lambda_client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=5)
    assert resp["ReservedConcurrentExecutions"] == 5
    assert lambda_client.get_function_concurrency(FunctionName=name)["ReservedConcurrentExecutions"] == 5
    after = lambda_client.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"]
    assert after == before - 5
    lambda_client.delete_function_concurrency(FunctionName=name)
    assert lambda_client.get_function_concurrency(FunctionName=name).get("ReservedConcurrentExecutions") is None


def test_function_concurrency_validation(endpoint, lambda_client, functions):
    name = functions({"app.py": SLEEPER})
    path = f"/2017-10-31/functions/{name}/concurrency"
    # boto3 checks the minimum itself; the server must too.
    resp = raw_request(endpoint, "PUT", path, json.dumps({"ReservedConcurrentExecutions": -1}).encode())
    assert_aws_error(resp, 400, "ValidationException", "greater than or equal to 0")
    resp = raw_request(endpoint, "PUT", path, b"{}")
    assert_aws_error(resp, 400, "ValidationException", "must not be null")
    with pytest.raises(lambda_client.exceptions.InvalidParameterValueException) as info:
        lambda_client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=950)
    assert "below its minimum value of [100]" in str(info.value)
    with pytest.raises(lambda_client.exceptions.ResourceNotFoundException):
        lambda_client.put_function_concurrency(FunctionName="no-such-fn-xyz", ReservedConcurrentExecutions=1)


def test_reserved_zero_throttles_every_invoke(lambda_client, functions):
    name = functions({"app.py": SLEEPER})
    lambda_client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    with pytest.raises(lambda_client.exceptions.TooManyRequestsException) as info:
        invoke(lambda_client, name, {})
    assert _throttle(info.value) == (429, "TooManyRequestsException",
                                     "ReservedFunctionConcurrentInvocationLimitExceeded", "1")
    lambda_client.delete_function_concurrency(FunctionName=name)
    resp, body = invoke(lambda_client, name, {})
    assert body == {"slept": 0}


def test_reserved_concurrency_caps_in_flight_invocations(lambda_client, functions):
    name = functions({"app.py": SLEEPER})
    lambda_client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)

    def call(_: int) -> str:
        try:
            invoke(lambda_client, name, {"sleep": 1})
            return "ok"
        except lambda_client.exceptions.TooManyRequestsException as exc:
            status, _, reason, _ = _throttle(exc)
            return f"{status} {reason}"

    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        outcomes = list(pool.map(call, range(3)))
    assert outcomes.count("ok") == 1, outcomes
    assert outcomes.count("429 ReservedFunctionConcurrentInvocationLimitExceeded") == 2, outcomes


def test_account_limit_and_queue_deadline(lamina_factory):
    server = lamina_factory(env={"LAMINA_ACCOUNT_CONCURRENCY": "2", "LAMINA_QUEUE_TIMEOUT_SECONDS": "0.5"})
    client = server.client()
    name = unique_name("acct")
    create_function(client, name, {"app.py": SLEEPER})

    def call(sleep: float) -> str:
        try:
            invoke(client, name, {"sleep": sleep})
            return "ok"
        except client.exceptions.TooManyRequestsException as exc:
            status, _, reason, _ = _throttle(exc)
            return f"{status} {reason}"

    # Two in flight fill the account's pool of 2: a third is throttled at once.
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        slow = [pool.submit(call, 1.5) for _ in range(2)]
        time.sleep(0.5)
        assert call(0) == "429 ConcurrentInvocationLimitExceeded"
        assert [f.result() for f in slow] == ["ok", "ok"]
    assert call(0) == "ok"


def test_queued_invocation_deadline(lamina_factory):
    """An invocation that waits longer than the queue timeout for an environment gets a 429; a warm
    environment is used at once, without queueing."""
    server = lamina_factory(env={"LAMINA_QUEUE_TIMEOUT_SECONDS": "0.001"})
    client = server.client()
    name = unique_name("queue")
    create_function(client, name, {"app.py": SLEEPER})
    assert invoke(client, name, {})[1] == {"slept": 0}  # warm: no wait
    req = urllib.request.Request(f"{server.endpoint}/lamina/v1/functions/{name}/environments", method="DELETE")
    urllib.request.urlopen(req, timeout=10).close()
    with pytest.raises(client.exceptions.TooManyRequestsException) as info:
        invoke(client, name, {})  # a cold start takes longer than 1 ms
    assert "waited" in str(info.value)
    assert _throttle(info.value)[:3] == (429, "TooManyRequestsException", "ConcurrentInvocationLimitExceeded")
    for _ in range(100):  # the environment started for it becomes idle and serves the next one
        try:
            assert invoke(client, name, {})[1] == {"slept": 0}
            break
        except client.exceptions.TooManyRequestsException:
            time.sleep(0.05)
    else:
        raise AssertionError("no environment became ready")


def test_idle_environments_of_other_functions_make_room(lamina_factory):
    """At the account's environment limit, an idle environment of another function is stopped to
    make room rather than leaving a new invocation waiting."""
    server = lamina_factory(env={"LAMINA_ACCOUNT_CONCURRENCY": "1", "LAMINA_QUEUE_TIMEOUT_SECONDS": "10"})
    client = server.client()
    first, second = unique_name("room"), unique_name("room")
    create_function(client, first, {"app.py": SLEEPER})
    create_function(client, second, {"app.py": SLEEPER})  # its activation needs first's idle environment
    assert invoke(client, second, {})[1] == {"slept": 0}
    assert invoke(client, first, {})[1] == {"slept": 0}
