"""The AWS SDK and credentials inside functions, as on AWS: boto3 shipped by Lamina outside the function's code (a
copy in the zip or a layer wins), credentials for the function's role and AWS_ENDPOINT_URL pointing at Lamina, so
that boto3.client("lambda" | "sqs") inside a function reaches Lamina with no endpoint or keys in its code.

Reaching Lamina's API needs a network path from the environment to the server: the process backend has one (the
host's loopback); the linux sandbox does not yet (a function's network namespace never reaches the host), so there
the calls are checked to fail with a connection error and the rest is checked as everywhere."""

from __future__ import annotations

import pytest

from helpers import create_function, health, invoke, invoke_ok, make_zip, unique_name

pytestmark = pytest.mark.timeout(240)

CALLER = '''\
import json, os, sys
import boto3

lam = boto3.client("lambda")   # no endpoint, no keys: the environment's, made at init (in the zygote)


def handler(event, context):
    out = {"boto3": boto3.__version__, "where": boto3.__file__, "endpoint": os.environ.get("AWS_ENDPOINT_URL"),
           "key": os.environ.get("AWS_ACCESS_KEY_ID", ""), "secret": bool(os.environ.get("AWS_SECRET_ACCESS_KEY")),
           "token": os.environ.get("AWS_SESSION_TOKEN", ""), "python": list(sys.version_info[:2])}
    try:
        if event.get("target"):
            resp = lam.invoke(FunctionName=event["target"], Payload=json.dumps({"from": context.function_name}))
            out["result"] = json.loads(resp["Payload"].read())
        if event.get("queue"):
            sqs = boto3.client("sqs")
            url = sqs.get_queue_url(QueueName=event["queue"])["QueueUrl"]
            out["sent"] = sqs.send_message(QueueUrl=url, MessageBody="from " + context.function_name)["MessageId"]
    except Exception as exc:
        out["error"] = type(exc).__name__ + ": " + str(exc)
    return out
'''
# A boto3 of the function's own (or a layer's): what it imports instead of Lamina's.
STUB = "__version__ = '{}'\n__file__ = 'stub'\n\ndef client(name):\n    return None\n"
CALLEE = "def handler(event, context):\n    return {'got': event}\n"


def test_boto3_is_there_outside_the_code_with_credentials_and_the_endpoint(endpoint, lambda_client,
                                                                          functions) -> None:
    name = functions({"app.py": CALLER}, prefix="sdk")
    body = invoke_ok(lambda_client, name, {})
    assert body["boto3"].startswith("1.") and "/sdk/python/3." in body["where"], body
    assert "/var/task" not in body["where"] and body["endpoint"] == endpoint, body
    assert body["key"].startswith("ASIA") and len(body["key"]) == 20 and body["secret"] and body["token"], body


def test_a_copy_in_the_zip_or_a_layer_wins(lambda_client, functions) -> None:
    zipped = functions({"app.py": CALLER, "boto3/__init__.py": STUB.format("zip-copy")}, prefix="sdkz")
    assert invoke_ok(lambda_client, zipped, {})["boto3"] == "zip-copy"
    layer = lambda_client.publish_layer_version(
        LayerName=unique_name("boto"), Content={"ZipFile": make_zip({"python/boto3/__init__.py":
                                                                      STUB.format("layer-copy")})})
    try:
        layered = functions({"app.py": CALLER}, prefix="sdkl", Layers=[layer["LayerVersionArn"]])
        assert invoke_ok(lambda_client, layered, {})["boto3"] == "layer-copy"
    finally:
        lambda_client.delete_layer_version(LayerName=layer["LayerArn"].rsplit(":", 1)[-1],
                                           VersionNumber=layer["Version"])


def test_each_python_gets_a_boto3_it_can_run(lambda_client, functions, endpoint) -> None:
    available = health(endpoint)["runtimes"]["available"]
    ran = []
    for runtime in [rt for rt in available if rt.startswith("python")]:
        name = functions({"app.py": CALLER}, prefix="sdkv", Runtime=runtime)
        body = invoke_ok(lambda_client, name, {})
        assert body["python"] == [3, int(runtime.split(".")[1])] and body["boto3"].startswith("1."), body
        ran.append(runtime)
    assert ran, available


def test_calls_lamina_with_no_endpoint_or_keys_in_code(lamina_factory) -> None:
    """The process backend (the host's loopback), with SigV4 verified: the function's issued credentials are
    accepted for Lambda's Invoke and SQS's SendMessage."""
    server = lamina_factory(env={"LAMINA_SANDBOX": "process", "LAMINA_CREDENTIALS": "AKIDTESTKEY:testsecret"})
    import boto3
    from botocore.config import Config

    client = boto3.client("lambda", endpoint_url=server.endpoint, region_name="us-east-1",
                          aws_access_key_id="AKIDTESTKEY", aws_secret_access_key="testsecret",
                          config=Config(retries={"total_max_attempts": 1}, read_timeout=120))
    sqs = boto3.client("sqs", endpoint_url=server.endpoint, region_name="us-east-1",
                       aws_access_key_id="AKIDTESTKEY", aws_secret_access_key="testsecret")
    queue = sqs.create_queue(QueueName=unique_name("q"))["QueueUrl"]
    caller, callee = unique_name("caller"), unique_name("callee")
    create_function(client, callee, {"app.py": CALLEE})
    create_function(client, caller, {"app.py": CALLER})
    body = invoke_ok(client, caller, {"target": callee, "queue": queue.rsplit("/", 1)[1]})
    assert "error" not in body, body
    assert body["result"] == {"got": {"from": caller}}, body
    got = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=5)["Messages"]
    assert got[0]["Body"] == f"from {caller}" and got[0]["MessageId"] == body["sent"], got


def test_linux_sandbox_has_no_path_to_lamina_yet(endpoint, lambda_client, functions) -> None:
    if health(endpoint)["sandbox"] != "linux":
        pytest.skip("the linux sandbox's network")
    callee = functions({"app.py": CALLEE}, prefix="callee")
    caller = functions({"app.py": CALLER}, prefix="caller", Timeout=30)
    resp, body = invoke(lambda_client, caller, {"target": callee})
    assert "FunctionError" not in resp, body
    # The SDK, the credentials and the endpoint are there; only the path to the server is missing.
    assert body["error"].startswith("EndpointConnectionError") and endpoint in body["error"], body
