"""Scaling and start pacing: an init that always fails costs a bounded number of starts."""

from __future__ import annotations

import concurrent.futures
import json
import time
import urllib.request

from helpers import invoke, wait_settled

BROKEN_INIT = '''
raise RuntimeError("config missing: init always fails")

def handler(event, context):
    return "unreachable"
'''


def _log_messages(endpoint: str, name: str) -> list[str]:
    with urllib.request.urlopen(f"{endpoint}/lamina/v1/functions/{name}/logs", timeout=10) as resp:
        return [json.loads(line)["message"] for line in resp.read().splitlines() if line.strip()]


def test_init_that_always_fails_makes_a_bounded_number_of_starts(endpoint, lambda_client, functions):
    name = functions({"app.py": BROKEN_INIT}, wait=False)
    wait_settled(lambda_client, name)

    def call(_: int) -> tuple[dict, object]:
        return invoke(lambda_client, name, {})

    results = []
    # Three waves of 20 concurrent invokes: 60 invocations that all want an environment.
    for _wave in range(3):
        with concurrent.futures.ThreadPoolExecutor(20) as pool:
            results += list(pool.map(call, range(20)))
        time.sleep(0.5)
    for resp, body in results:
        assert resp["FunctionError"] == "Unhandled", body
        assert body["errorType"] == "RuntimeError" and "init always fails" in body["errorMessage"], body
    starts = [m for m in _log_messages(endpoint, name) if m.startswith("INIT_REPORT")]
    # After each failure the next start waits a backoff that doubles from 0.5 s, one probe at a time: the
    # activation plus k probes take at least 0.5 * (2**k - 1) s, so within this test's 300 s timeout there
    # are at most 10 starts however slow the machine is, where one start per invoke would be 60.
    assert 1 <= len(starts) <= 10, len(starts)
    assert all("Status: error" in m for m in starts)
