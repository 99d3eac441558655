"""GET /metrics: scraped with prometheus_client's own parser after invocations, errors, throttles and cold starts."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError
from prometheus_client.parser import text_string_to_metric_families

from helpers import client_error, create_function, invoke, invoke_ok, unique_name

pytestmark = pytest.mark.timeout(120)

HANDLER = '''
def handler(event, context):
    if event.get("fail"):
        raise ValueError("asked to fail")
    return {"ok": True}
'''


def scrape(endpoint: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample: (sample name, sorted labels) -> value."""
    with urllib.request.urlopen(endpoint + "/metrics", timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_invocations_errors_durations_and_cold_starts(endpoint, lambda_client, functions):
    name = functions({"app.py": HANDLER})
    before = scrape(endpoint)
    fv = {"function": name, "version": "$LATEST"}
    # Created and Active: its first environment has started (Lamina starts one on create).
    assert value(before, "lamina_cold_starts_total", **fv) >= 1
    assert value(before, "lamina_invocations_total", **fv) == 0
    for _ in range(3):
        invoke_ok(lambda_client, name, {})
    resp, body = invoke(lambda_client, name, {"fail": True})
    assert resp.get("FunctionError") == "Unhandled", body
    after = scrape(endpoint)
    assert value(after, "lamina_invocations_total", **fv) == 4
    assert value(after, "lamina_invocation_errors_total", **fv) == 1
    assert value(after, "lamina_invocation_duration_seconds_count", **fv) == 4
    assert value(after, "lamina_invocation_duration_seconds_bucket", **fv, le="+Inf") == 4
    assert 0 < value(after, "lamina_invocation_duration_seconds_sum", **fv) < 60
    starts = value(after, "lamina_cold_starts_total", **fv)
    # Each started environment's start time is in one of the two start histograms.
    timed = sum(value(after, "lamina_environment_start_seconds_count", **fv, kind=k) for k in ("restore", "init"))
    assert starts >= 1 and timed == starts
    # Idle now: its environments are idle or frozen, none busy, nothing queued.
    envs = {s: value(after, "lamina_environments", **fv, state=s) for s in ("starting", "idle", "frozen", "busy")}
    assert envs["busy"] == 0 and envs["idle"] + envs["frozen"] >= 1, envs
    assert value(after, "lamina_dispatch_queue_depth", **fv) == 0
    assert value(after, "lamina_environments_total") >= 1
    backends = [labels for (n, labels) in after if n == "lamina_sandbox_info"]
    assert len(backends) == 1 and dict(backends[0])["backend"] in ("linux", "process")


def test_a_new_environment_counts_as_a_cold_start(endpoint, lambda_client, functions):
    name = functions({"app.py": HANDLER})
    fv = {"function": name, "version": "$LATEST"}
    invoke_ok(lambda_client, name, {})
    before = value(scrape(endpoint), "lamina_cold_starts_total", **fv)
    # Stop its idle environments: the next invoke needs a new one.
    req = urllib.request.Request(f"{endpoint}/lamina/v1/functions/{name}/environments", method="DELETE")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200
    invoke_ok(lambda_client, name, {})
    assert value(scrape(endpoint), "lamina_cold_starts_total", **fv) == before + 1


def test_throttles_by_reason(endpoint, lambda_client, functions):
    name = functions({"app.py": HANDLER})
    lambda_client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    for _ in range(2):
        with pytest.raises(ClientError) as exc:
            lambda_client.invoke(FunctionName=name, Payload=b"{}")
        status, code, _ = client_error(exc)
        assert (status, code) == (429, "TooManyRequestsException")
    samples = scrape(endpoint)
    assert value(samples, "lamina_throttles_total", function=name, version="$LATEST",
                 reason="ReservedFunctionConcurrentInvocationLimitExceeded") == 2
    assert value(samples, "lamina_invocations_total", function=name, version="$LATEST") == 0


def test_deleted_function_leaves_no_series(endpoint, lambda_client, functions):
    name = functions({"app.py": HANDLER})
    invoke_ok(lambda_client, name, {})
    assert value(scrape(endpoint), "lamina_invocations_total", function=name, version="$LATEST") == 1
    lambda_client.delete_function(FunctionName=name)
    assert not [k for k in scrape(endpoint) if ("function", name) in k[1]]


def test_server_wide_families_are_there(endpoint):
    samples = scrape(endpoint)
    names = {n for n, _ in samples}
    for family in ("lamina_async_events_queued", "lamina_async_events_accepted_total",
                   "lamina_account_concurrent_executions", "lamina_microvm_images", "process_resident_memory_bytes"):
        assert family in names, family


def test_metrics_can_be_turned_off(lamina_factory, tmp_path):
    server = lamina_factory(data_dir=tmp_path / "off", env={"LAMINA_METRICS": "false"})
    client = server.client()
    name = unique_name("off")
    create_function(client, name, {"app.py": HANDLER})
    invoke_ok(client, name, {})
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(server.endpoint + "/metrics", timeout=10)
    assert exc.value.code == 404
    assert b"turned off" in exc.value.read()


def test_queue_depth_age_and_event_source_mappings(endpoint, lambda_client, functions):
    import time

    import boto3

    from helpers import ACCESS_KEY, REGION, SECRET_KEY

    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=REGION, aws_access_key_id=ACCESS_KEY,
                       aws_secret_access_key=SECRET_KEY)
    queue = unique_name("mq")
    url = sqs.create_queue(QueueName=queue)["QueueUrl"]
    try:
        labels = {"queue": queue, "account": url.rstrip("/").split("/")[-2]}
        empty = scrape(endpoint)
        assert ("lamina_sqs_messages_visible", tuple(sorted(labels.items()))) in empty
        assert value(empty, "lamina_sqs_oldest_message_age_seconds", **labels) == 0
        sent_before = value(empty, "lamina_sqs_messages_sent_total")
        for body in ("a", "b", "c"):
            sqs.send_message(QueueUrl=url, MessageBody=body)
        sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=900)
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=600)["Messages"]
        assert len(got) == 1
        samples = scrape(endpoint)
        assert value(samples, "lamina_sqs_messages_visible", **labels) == 2
        assert value(samples, "lamina_sqs_messages_in_flight", **labels) == 1
        assert value(samples, "lamina_sqs_messages_delayed", **labels) == 1
        assert 0 < value(samples, "lamina_sqs_oldest_message_age_seconds", **labels) < 600
        assert value(samples, "lamina_sqs_messages_sent_total") >= sent_before + 4

        # An event source mapping drains the queue: its invocations show, labelled with function and queue.
        sqs.delete_message(QueueUrl=url, ReceiptHandle=got[0]["ReceiptHandle"])
        name = functions({"app.py": HANDLER})
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        uuid = lambda_client.create_event_source_mapping(EventSourceArn=arn, FunctionName=name,
                                                         BatchSize=10)["UUID"]
        esm = {"uuid": uuid, "function": name, "queue": queue}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            samples = scrape(endpoint)
            if value(samples, "lamina_sqs_messages_visible", **labels) == 0 and \
                    value(samples, "lamina_esm_batches_in_flight", **esm) == 0 and \
                    value(samples, "lamina_esm_invocations_total", **esm) >= 1:
                break
            time.sleep(0.3)
        assert value(samples, "lamina_esm_invocations_total", **esm) >= 1
        assert value(samples, "lamina_esm_concurrency_limit", **esm) >= 1
        assert value(samples, "lamina_esm_failed_batches_total", **esm) == 0
        assert ("lamina_esm_throttles_total", tuple(sorted(esm.items()))) in samples
        assert value(samples, "lamina_sqs_messages_visible", **labels) == 0
        assert value(samples, "lamina_sqs_messages_delayed", **labels) == 1
        lambda_client.delete_event_source_mapping(UUID=uuid)
    finally:
        sqs.delete_queue(QueueUrl=url)
    assert not [k for k in scrape(endpoint) if ("queue", queue) in k[1] and k[0].startswith("lamina_sqs_")]
