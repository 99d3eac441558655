"""Identity policies on a server with keys: a key configured with a policy (a read-only operator) may do what it
allows and gets AWS's AccessDeniedException for the rest, on the hot path and the ASGI one and in SQS's shape; a
function whose execution role has a policy ([[roles]]) gets credentials held to it, inside its environment."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest
from botocore.config import Config

from helpers import ACCESS_KEY, ACCOUNT, REGION, SECRET_KEY, LaminaServer, create_function, failure, unique_name

READER_KEY, READER_SECRET = "AKIDREADONLY", "read-only-secret"
ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:"
READER = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["lambda:Get*", "lambda:List*"], "Resource": "*"},
    {"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": ARN + "public-*"},
]}
SENDER_ROLE = f"arn:aws:iam::{ACCOUNT}:role/sender"
SENDER = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["sqs:SendMessage", "sqs:GetQueueUrl"],
     "Resource": f"arn:aws:sqs:{REGION}:{ACCOUNT}:outbox-*"},
]}
NO_RETRY = Config(retries={"total_max_attempts": 1}, read_timeout=65, connect_timeout=5)
CODE = {"app.py": "def handler(event, context):\n    return 'hi'\n"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaminaServer]:
    tmp = tmp_path_factory.mktemp("identity")
    config = tmp / "lamina.toml"
    config.write_text(
        f'[server]\nregion = "{REGION}"\n\n'
        f'[[credentials]]\naccess_key_id = "{ACCESS_KEY}"\nsecret_access_key = "{SECRET_KEY}"\n\n'
        f'[[credentials]]\naccess_key_id = "{READER_KEY}"\nsecret_access_key = "{READER_SECRET}"\n'
        f"policy = '{json.dumps(READER)}'\n\n"
        f'[[roles]]\narn = "{SENDER_ROLE}"\npolicy = \'{json.dumps(SENDER)}\'\n')
    srv = LaminaServer(data_dir=tmp / "data", log_path=tmp / "server.log", extra_env={"LAMINA_CONFIG": str(config)})
    srv.start()
    yield srv
    srv.stop()
    srv.kill_leftovers()


def client(server: LaminaServer, service: str = "lambda", key: str = ACCESS_KEY, secret: str = SECRET_KEY):
    return boto3.client(service, endpoint_url=server.endpoint, region_name=REGION, aws_access_key_id=key,
                        aws_secret_access_key=secret, config=NO_RETRY)


def test_a_keys_policy_allows_what_it_says_and_nothing_more(server: LaminaServer) -> None:
    owner, reader = client(server), client(server, key=READER_KEY, secret=READER_SECRET)
    public, private = unique_name("public"), unique_name("private")
    for name in (public, private):
        create_function(owner, name, CODE)
    names = [f["FunctionName"] for f in reader.list_functions()["Functions"]]
    assert public in names and private in names
    assert reader.get_function(FunctionName=private)["Configuration"]["FunctionName"] == private
    assert json.loads(reader.invoke(FunctionName=public, Payload=b"{}")["Payload"].read()) == "hi"
    for invocation in ("RequestResponse", "Event"):   # the hot path, both answers
        status, code, message = failure(reader.invoke, FunctionName=private, InvocationType=invocation)
        assert (status, code) == (403, "AccessDeniedException")
        assert message == (f"User: arn:aws:iam::{ACCOUNT}:root is not authorized to perform: lambda:InvokeFunction "
                           f"on resource: {ARN}{private} because no identity-based policy allows the "
                           "lambda:InvokeFunction action")
    status, code, message = failure(reader.delete_function, FunctionName=public)
    assert (status, code) == (403, "AccessDeniedException") and "lambda:DeleteFunction" in message
    status, code, _ = failure(reader.create_function, FunctionName=unique_name("new"), Runtime="python3.11",
                              Role=SENDER_ROLE, Handler="app.handler", Code={"ZipFile": b"PK\x05\x06" + b"\0" * 18})
    assert (status, code) == (403, "AccessDeniedException")
    status, code, _ = failure(client(server, "sqs", key=READER_KEY, secret=READER_SECRET).list_queues)
    assert (status, code) == (403, "AccessDenied")
    owner.get_function(FunctionName=public)   # still there
    for name in (public, private):
        owner.delete_function(FunctionName=name)


def test_a_functions_role_policy_holds_its_credentials(server: LaminaServer) -> None:
    owner, sqs = client(server), client(server, "sqs")
    allowed = sqs.create_queue(QueueName=unique_name("outbox"))["QueueUrl"]
    other = sqs.create_queue(QueueName=unique_name("elsewhere"))["QueueUrl"]
    code = ("import boto3\n"
            "def handler(event, context):\n"
            "    out = {}\n"
            "    sqs = boto3.client('sqs')\n"
            "    for url in event['queues']:\n"
            "        try:\n"
            "            sqs.send_message(QueueUrl=url, MessageBody='hello')\n"
            "            out[url] = 'sent'\n"
            "        except Exception as exc:\n"
            "            out[url] = exc.response['Error']['Code']\n"
            "    try:\n"
            "        boto3.client('lambda').list_functions()\n"
            "        out['list'] = 'listed'\n"
            "    except Exception as exc:\n"
            "        out['list'] = exc.response['Error']['Code']\n"
            "    return out\n")
    name = unique_name("sender")
    create_function(owner, name, {"app.py": code}, Role=SENDER_ROLE, Timeout=60)
    out = json.loads(owner.invoke(FunctionName=name, Payload=json.dumps({"queues": [allowed, other]}))[
        "Payload"].read())
    assert out == {allowed: "sent", other: "AccessDenied", "list": "AccessDeniedException"}, out
    assert sqs.receive_message(QueueUrl=allowed, WaitTimeSeconds=5)["Messages"][0]["Body"] == "hello"
    owner.delete_function(FunctionName=name)
