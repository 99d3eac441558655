"""The AWS SDK and credentials inside functions, as on AWS: boto3 shipped by Lamina outside the function's code (a
copy in the zip or a layer wins), credentials for the function's role and AWS_ENDPOINT_URL pointing at Lamina, so
that boto3.client("lambda" | "sqs") inside a function reaches Lamina with no endpoint or keys in its code.

Under the process backend AWS_ENDPOINT_URL is the server's own address (the host's loopback). Under the linux sandbox
each function network's hub (the default outbound one, a VPC pair's) has a listener of Lamina's API at the
environments' gateway address (net/plumbing.py), which verifies every request even on a server with no keys
configured: only the credentials issued to functions, within their policy."""

from __future__ import annotations

import time

import pytest

from helpers import create_function, health, invoke_ok, make_zip, unique_name

pytestmark = pytest.mark.timeout(240)

CALLER = '''\
import json, os, sys, urllib.error, urllib.request
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
    if event.get("delete"):   # beyond the function credentials' policy
        try:
            lam.delete_function(FunctionName=event["delete"])
            out["deleted"] = True
        except Exception as exc:
            out["deleted"] = type(exc).__name__ + ": " + str(exc)
    if event.get("forged"):   # keys Lamina never issued
        forged = boto3.client("lambda", aws_access_key_id="ASIAFORGEDFORGEDFORG", aws_secret_access_key="x",
                              aws_session_token="made.up")
        try:
            forged.list_functions()
            out["forged"] = "accepted"
        except Exception as exc:
            out["forged"] = type(exc).__name__ + ": " + str(exc)
    for path in event.get("unsigned", []):   # no signature at all
        try:
            with urllib.request.urlopen(os.environ["AWS_ENDPOINT_URL"] + path, timeout=10) as resp:
                out.setdefault("unsigned", []).append(resp.status)
        except urllib.error.HTTPError as exc:
            out.setdefault("unsigned", []).append(exc.code)
    return out
'''
# A boto3 of the function's own (or a layer's): what it imports instead of Lamina's.
STUB = "__version__ = '{}'\n__file__ = 'stub'\n\ndef client(name):\n    return None\n"
CALLEE = "def handler(event, context):\n    return {'got': event}\n"


def _inside(endpoint: str) -> str:
    """AWS_ENDPOINT_URL as an environment of the server at `endpoint` gets it."""
    if health(endpoint)["sandbox"] == "linux":
        return "http://169.254.1.1:" + endpoint.rsplit(":", 1)[1]   # the hub's listener (net/plumbing.py)
    return endpoint


@pytest.fixture
def session_queue(endpoint):
    """(an SQS client of the session server, a new queue's URL); the queue is deleted afterwards."""
    import boto3

    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test",
                       aws_secret_access_key="test")
    queue = sqs.create_queue(QueueName=unique_name("q"))["QueueUrl"]
    yield sqs, queue
    sqs.delete_queue(QueueUrl=queue)


def test_boto3_is_there_outside_the_code_with_credentials_and_the_endpoint(endpoint, lambda_client,
                                                                          functions) -> None:
    name = functions({"app.py": CALLER}, prefix="sdk")
    body = invoke_ok(lambda_client, name, {})
    assert body["boto3"].startswith("1.") and "/sdk/python/3." in body["where"], body
    assert "/var/task" not in body["where"] and body["endpoint"] == _inside(endpoint), body
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


@pytest.mark.parametrize("sandbox", ["default", "process"])
def test_calls_lamina_with_no_endpoint_or_keys_in_code(lamina_factory, sandbox) -> None:
    """The server's own sandbox (linux as root: the network hub's listener) and the process backend (the host's
    loopback), with SigV4 verified: the function's issued credentials are accepted for Lambda's Invoke and SQS's
    SendMessage."""
    env = {"LAMINA_CREDENTIALS": "AKIDTESTKEY:testsecret"}
    if sandbox == "process":
        env["LAMINA_SANDBOX"] = "process"
    server = lamina_factory(env=env)
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


def test_linux_sandbox_reaches_lamina_with_its_own_credentials_only(endpoint, lambda_client, functions,
                                                                    session_queue) -> None:
    """The session server has no keys configured (open on the host's loopback); the listener in the functions'
    network still verifies every request: the function's own credentials work within their policy, forged or no
    credentials are refused, and nothing is served unsigned there (not even health)."""
    if health(endpoint)["sandbox"] != "linux":
        pytest.skip("the linux sandbox's network")
    sqs, queue = session_queue
    callee = functions({"app.py": CALLEE}, prefix="callee")
    caller = functions({"app.py": CALLER}, prefix="caller", Timeout=60)
    body = invoke_ok(lambda_client, caller, {"target": callee, "queue": queue.rsplit("/", 1)[1],
                                             "delete": callee, "forged": True,
                                             "unsigned": ["/2015-03-31/functions/", "/lamina/v1/health"]})
    assert "error" not in body and body["result"] == {"got": {"from": caller}}, body
    got = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=5)["Messages"]
    assert got[0]["Body"] == f"from {caller}" and got[0]["MessageId"] == body["sent"], got
    assert body["deleted"].startswith("ClientError") and "not authorized" in body["deleted"], body
    assert body["forged"].startswith("ClientError") and "accepted" not in body["forged"], body
    assert body["unsigned"] == [403, 403], body
    assert lambda_client.get_function(FunctionName=callee)["Configuration"]["FunctionName"] == callee


def test_vpc_function_reaches_lamina(endpoint, lambda_client, functions) -> None:
    """A VPC function's environments reach Lamina through their pair's own listener (as if the VPC had endpoints
    for Lamina's services), whatever its security groups allow."""
    if health(endpoint)["sandbox"] != "linux":
        pytest.skip("the linux sandbox's network")
    import boto3

    ec2 = boto3.client("ec2", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test",
                       aws_secret_access_key="test")
    vpc = ec2.create_vpc(CidrBlock="10.216.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.216.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(VpcId=vpc, GroupName=unique_name("sdk"), Description="no egress")["GroupId"]
    ec2.revoke_security_group_egress(GroupId=group, IpPermissions=[
        {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    caller = ""
    try:
        callee = functions({"app.py": CALLEE}, prefix="callee")
        caller = functions({"app.py": CALLER}, prefix="vcaller", Timeout=60,
                           VpcConfig={"SubnetIds": [subnet], "SecurityGroupIds": [group]})
        body = invoke_ok(lambda_client, caller, {"target": callee})
        assert "error" not in body and body["result"] == {"got": {"from": caller}}, body
        assert body["endpoint"] == _inside(endpoint), body
    finally:
        if caller:
            lambda_client.delete_function(FunctionName=caller)
            deadline = time.monotonic() + 30   # the pair's interface goes with its last function
            while ec2.describe_network_interfaces(Filters=[{"Name": "subnet-id", "Values": [subnet]}])[
                    "NetworkInterfaces"] and time.monotonic() < deadline:
                time.sleep(0.2)
        ec2.delete_security_group(GroupId=group)
        ec2.delete_subnet(SubnetId=subnet)
        ec2.delete_vpc(VpcId=vpc)


NODE_CALLER = '''\
const { LambdaClient, InvokeCommand } = require("@aws-sdk/client-lambda");
const { SQSClient, GetQueueUrlCommand, SendMessageCommand } = require("@aws-sdk/client-sqs");

const lambda = new LambdaClient({});   // no endpoint, no keys: the environment's

exports.handler = async (event, context) => {
  const out = { where: require.resolve("@aws-sdk/client-lambda"), endpoint: process.env.AWS_ENDPOINT_URL };
  try {
    const resp = await lambda.send(new InvokeCommand({ FunctionName: event.target,
                                                       Payload: JSON.stringify({ from: context.functionName }) }));
    out.result = JSON.parse(Buffer.from(resp.Payload).toString());
    const sqs = new SQSClient({});
    const { QueueUrl } = await sqs.send(new GetQueueUrlCommand({ QueueName: event.queue }));
    const sent = await sqs.send(new SendMessageCommand({ QueueUrl, MessageBody: "from " + context.functionName }));
    out.sent = sent.MessageId;
  } catch (err) {
    out.error = `${err.name}: ${err.message}`;
  }
  return out;
};
'''
# AWS's console default: an ES module handler importing the SDK (ES modules do not read NODE_PATH: the runtime's
# resolution hooks find it there).
NODE_ESM_CALLER = '''\
import { LambdaClient, InvokeCommand } from "@aws-sdk/client-lambda";

const lambda = new LambdaClient({});

export const handler = async (event, context) => {
  const resp = await lambda.send(new InvokeCommand({ FunctionName: event.target,
                                                     Payload: JSON.stringify({ from: context.functionName }) }));
  return { result: JSON.parse(Buffer.from(resp.Payload).toString()) };
};
'''
# A copy of the client in the function's own node_modules: what it requires instead of Lamina's.
NODE_OWN_COPY = {"node_modules/@aws-sdk/client-lambda/package.json": '{"name": "@aws-sdk/client-lambda", '
                                                                     '"version": "0.0.0", "main": "index.js"}',
                 "node_modules/@aws-sdk/client-lambda/index.js": 'exports.which = "own copy";\n'}


def test_node_functions_get_the_javascript_sdk_and_reach_lamina(endpoint, lambda_client, functions,
                                                                session_queue) -> None:
    """The AWS SDK for JavaScript v3 clients Lamina installs (make install: npm ci of sdk/nodejs), after the function's
    own node_modules and its layers' on NODE_PATH; Invoke and SQS SendMessage with no endpoint or keys in the code, in
    the server's own sandbox."""
    node = [rt for rt in health(endpoint)["runtimes"]["available"] if rt.startswith("nodejs")]
    if not node:
        pytest.skip("no Node.js on this machine (make test installs Debian's nodejs)")
    sqs, queue = session_queue
    callee = functions({"app.py": CALLEE}, prefix="callee")
    caller = functions({"index.js": NODE_CALLER}, prefix="ncaller", handler="index.handler", Runtime=node[0],
                       Timeout=60)
    body = invoke_ok(lambda_client, caller, {"target": callee, "queue": queue.rsplit("/", 1)[1]})
    assert "error" not in body and body["result"] == {"got": {"from": caller}}, body
    assert "/sdk/nodejs/node_modules/@aws-sdk/client-lambda/" in body["where"], body
    assert body["endpoint"] == _inside(endpoint), body
    got = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=5)["Messages"]
    assert got[0]["Body"] == f"from {caller}" and got[0]["MessageId"] == body["sent"], got
    esm = functions({"index.mjs": NODE_ESM_CALLER}, prefix="nesm", handler="index.handler", Runtime=node[0],
                    Timeout=60)
    assert invoke_ok(lambda_client, esm, {"target": callee}) == {"result": {"got": {"from": esm}}}
    own = functions({**NODE_OWN_COPY, "index.js": 'exports.handler = async () => '
                                                  '({ which: require("@aws-sdk/client-lambda").which });\n'},
                    prefix="nown", handler="index.handler", Runtime=node[0])
    assert invoke_ok(lambda_client, own, {}) == {"which": "own copy"}
    own_esm = functions({**NODE_OWN_COPY, "index.mjs": 'import { which } from "@aws-sdk/client-lambda";\n'
                                                       'export const handler = async () => ({ which });\n'},
                        prefix="nowne", handler="index.handler", Runtime=node[0])
    assert invoke_ok(lambda_client, own_esm, {}) == {"which": "own copy"}
