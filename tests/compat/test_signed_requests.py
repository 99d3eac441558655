"""A server with access keys configured: every AWS API verifies SigV4 (good, wrong, unknown, missing, expired,
other-region and presigned requests, with each protocol's error shape), each account has its own resources, callers
of another account may invoke a function only where its resource policy allows them, and AWS_IAM function URLs take
signed requests the policy allows. Also: a non-loopback bind without keys refuses to start."""

from __future__ import annotations

import contextlib
import datetime
import http.client
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import boto3
import botocore.session
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from helpers import (
    ACCESS_KEY,
    REGION,
    SECRET_KEY,
    LaminaServer,
    create_function,
    failure,
    free_port,
    make_zip,
    raw_request,
    unique_name,
)
from lamina.auth.keys import KeyTable

OTHER = ("AKIDOTHER", "other-secret", "222222222222", "arn:aws:iam::222222222222:user/other")
QUERY_MODEL = Path(__file__).parent / "data" / "sqs-query"
CODE = {"app.py": "def handler(event, context):\n    return {'ok': True}\n"}
NO_RETRY = Config(retries={"total_max_attempts": 1}, read_timeout=65, connect_timeout=5)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaminaServer]:
    tmp = tmp_path_factory.mktemp("sigv4")
    keys = f"{ACCESS_KEY}:{SECRET_KEY}:000000000000,{':'.join(OTHER)}"
    srv = LaminaServer(data_dir=tmp / "data", log_path=tmp / "server.log", extra_env={"LAMINA_CREDENTIALS": keys})
    srv.start()
    yield srv
    srv.stop()
    srv.kill_leftovers()


def client(server: LaminaServer, service: str = "lambda", key: str = ACCESS_KEY, secret: str = SECRET_KEY,
           region: str = REGION, session: botocore.session.Session | None = None):
    return boto3.Session(botocore_session=session).client(
        service, endpoint_url=server.endpoint, region_name=region, aws_access_key_id=key,
        aws_secret_access_key=secret, config=NO_RETRY)


@pytest.fixture(scope="module")
def function(server: LaminaServer) -> str:
    name = unique_name("sig")
    create_function(client(server), name, CODE)
    return name


def test_lambda_good_wrong_unknown_region(server: LaminaServer, function: str) -> None:
    assert client(server).get_function(FunctionName=function)["Configuration"]["FunctionName"] == function
    status, code, message = failure(client(server, secret="wrong").get_function, FunctionName=function)
    assert (status, code) == (403, "InvalidSignatureException") and "does not match" in message
    status, code, _ = failure(client(server, key="AKIDNOBODY").list_functions)
    assert (status, code) == (403, "UnrecognizedClientException")
    status, code, _ = failure(client(server, region="eu-west-1").list_functions)
    assert (status, code) == (403, "InvalidSignatureException")


def test_invoke_on_the_hot_path(server: LaminaServer, function: str) -> None:
    resp = client(server).invoke(FunctionName=function, Payload=b"{}")
    assert json.loads(resp["Payload"].read()) == {"ok": True}
    status, code, _ = failure(client(server, secret="wrong").invoke, FunctionName=function, Payload=b"{}")
    assert (status, code) == (403, "InvalidSignatureException")
    # Refused before anything about the function is looked at: no "not found" for a bad signature.
    status, code, _ = failure(client(server, secret="wrong").invoke, FunctionName="nope", Payload=b"{}")
    assert (status, code) == (403, "InvalidSignatureException")
    unsigned = raw_request(server.endpoint, "POST", f"/2015-03-31/functions/{function}/invocations", b"{}",
                           sign=False)
    assert unsigned.status == 403 and unsigned.error_type == "MissingAuthenticationTokenException"


def test_missing_and_expired(server: LaminaServer) -> None:
    resp = raw_request(server.endpoint, "GET", "/2015-03-31/functions/", sign=False)
    assert resp.status == 403 and resp.error_type == "MissingAuthenticationTokenException", resp.describe()
    old = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) - datetime.timedelta(minutes=10)
    with mock.patch("botocore.auth.get_current_datetime", return_value=old):
        status, code, message = failure(client(server).list_functions)
    assert (status, code) == (403, "InvalidSignatureException") and "Signature expired" in message


def test_presigned_url(server: LaminaServer, function: str) -> None:
    url = client(server).generate_presigned_url("get_function", Params={"FunctionName": function}, ExpiresIn=60)
    with urllib.request.urlopen(url, timeout=30) as resp:
        assert json.loads(resp.read())["Configuration"]["FunctionName"] == function
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(url.replace(function, function + "x"), timeout=30)
    assert info.value.code == 403


def test_sqs_json_and_query(server: LaminaServer) -> None:
    sqs = client(server, "sqs")
    url = sqs.create_queue(QueueName=unique_name("q"))["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="hi")
    status, code, _ = failure(client(server, "sqs", secret="wrong").list_queues)
    assert (status, code) == (403, "SignatureDoesNotMatch")
    status, code, _ = failure(client(server, "sqs", key="AKIDNOBODY").list_queues)
    assert (status, code) == (403, "InvalidClientTokenId")
    session = botocore.session.get_session()
    session.get_component("data_loader").search_paths.insert(0, str(QUERY_MODEL))
    query = client(server, "sqs", session=session)
    assert query.meta.service_model.protocol == "query"
    assert url in query.list_queues()["QueueUrls"]
    session = botocore.session.get_session()
    session.get_component("data_loader").search_paths.insert(0, str(QUERY_MODEL))
    status, code, _ = failure(client(server, "sqs", secret="wrong", session=session).list_queues)
    assert (status, code) == (403, "SignatureDoesNotMatch")


def test_ec2_and_logs(server: LaminaServer) -> None:
    assert "Vpcs" in client(server, "ec2").describe_vpcs()
    status, code, _ = failure(client(server, "ec2", secret="wrong").describe_vpcs)
    assert (status, code) == (403, "SignatureDoesNotMatch")
    status, code, _ = failure(client(server, "ec2", key="AKIDNOBODY").describe_vpcs)
    assert (status, code) == (401, "AuthFailure")
    assert "logGroups" in client(server, "logs").describe_log_groups()
    status, code, _ = failure(client(server, "logs", secret="wrong").describe_log_groups)
    assert (status, code) == (403, "InvalidSignatureException")


def test_cross_account_invoke_needs_a_policy_and_the_functions_arn(server: LaminaServer) -> None:
    name = unique_name("xacct")
    owner = client(server)
    create_function(owner, name, CODE)
    arn = f"arn:aws:lambda:{REGION}:000000000000:function:{name}"
    other = client(server, key=OTHER[0], secret=OTHER[1])
    # A name alone is a function of the caller's own account (as AWS resolves it): not found, whether or not this
    # account has one of that name; this account's ARN is refused alike whether the function exists or not.
    for invocation in ("RequestResponse", "Event"):   # the hot path and the ASGI one
        for fn in (name, name + "-none"):
            status, code, message = failure(other.invoke, FunctionName=fn, InvocationType=invocation, Payload=b"{}")
            assert (status, code) == (404, "ResourceNotFoundException"), (invocation, fn, message)
            assert f"arn:aws:lambda:{REGION}:{OTHER[2]}:function:{fn}" in message
        for fn in (arn, arn + "-none"):
            status, code, message = failure(other.invoke, FunctionName=fn, InvocationType=invocation, Payload=b"{}")
            assert (status, code) == (403, "AccessDeniedException") and OTHER[3] in message, (invocation, fn)
    owner.add_permission(FunctionName=name, StatementId="other", Action="lambda:InvokeFunction",
                         Principal=OTHER[2])
    assert json.loads(other.invoke(FunctionName=arn, Payload=b"{}")["Payload"].read()) == {"ok": True}
    assert other.invoke(FunctionName=arn, InvocationType="Event", Payload=b"{}")["StatusCode"] == 202
    status, code, _ = failure(other.invoke, FunctionName=name, Payload=b"{}")   # still not by its name alone
    assert (status, code) == (404, "ResourceNotFoundException")
    owner.remove_permission(FunctionName=name, StatementId="other")
    status, code, _ = failure(other.invoke, FunctionName=arn, Payload=b"{}")
    assert (status, code) == (403, "AccessDeniedException")


def test_another_account_sees_nothing_else_of_this_one(server: LaminaServer, function: str) -> None:
    """Another account's credentials act in that account: its own (empty) functions, MicroVMs, EventBridge,
    Scheduler and Logs; this account's functions only to invoke, by ARN, where a policy allows (nothing more), and
    alike for what exists and what does not; EC2 networks are the server's own account's."""
    arn = f"arn:aws:lambda:{REGION}:000000000000:function:{function}"
    owner = client(server)
    owner.add_permission(FunctionName=function, StatementId="other-invoke", Action="lambda:InvokeFunction",
                         Principal=OTHER[2])
    other = client(server, key=OTHER[0], secret=OTHER[1])
    try:
        assert function not in [f["FunctionName"] for f in other.list_functions()["Functions"]]
        for call, kwargs in [(other.get_function, {"FunctionName": arn}),
                             (other.get_function, {"FunctionName": arn + "-none"}),
                             (other.get_policy, {"FunctionName": arn}),
                             (other.update_function_configuration, {"FunctionName": arn, "Timeout": 9}),
                             (other.delete_function, {"FunctionName": arn})]:
            status, code, _ = failure(call, **kwargs)
            assert (status, code) == (403, "AccessDeniedException"), (call, kwargs)
        status, code, _ = failure(other.get_function, FunctionName=function)   # a name: the caller's own account's
        assert (status, code) == (404, "ResourceNotFoundException")
        assert owner.get_function(FunctionName=function)["Configuration"]["Timeout"] != 9
        assert client(server, "events", key=OTHER[0], secret=OTHER[1]).list_rules()["Rules"] == []
        assert client(server, "scheduler", key=OTHER[0], secret=OTHER[1]).list_schedules()["Schedules"] == []
        groups = client(server, "logs", key=OTHER[0], secret=OTHER[1]).describe_log_groups()["logGroups"]
        assert all(":222222222222:" in g["arn"] for g in groups)
        status, code, _ = failure(client(server, "ec2", key=OTHER[0], secret=OTHER[1]).describe_vpcs)
        assert (status, code) == (403, "UnauthorizedOperation")
        request = AWSRequest(method="GET", url=f"{server.endpoint}/2025-09-09/microvms")
        SigV4Auth(Credentials(OTHER[0], OTHER[1]), "lambda", REGION).add_auth(request)
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        try:
            conn.request("GET", "/2025-09-09/microvms", headers=dict(request.headers.items()))
            resp = conn.getresponse()
            assert resp.status == 200 and json.loads(resp.read())["items"] == []
        finally:
            conn.close()
    finally:
        owner.remove_permission(FunctionName=function, StatementId="other-invoke")


def test_each_account_has_its_own_functions(server: LaminaServer) -> None:
    """Two accounts each create a function of the same name: each invokes its own (hot path, ASGI path, Event),
    ARNs carry the account, neither lists nor reads the other's, and deleting one leaves the other."""
    name = unique_name("same")
    owner, other = client(server), client(server, key=OTHER[0], secret=OTHER[1])
    create_function(owner, name, {"app.py": "def handler(event, context):\n    return {'who': 'owner'}\n"})
    created = create_function(other, name, {"app.py": "def handler(event, context):\n    return {'who': 'other'}\n"},
                              Role="arn:aws:iam::222222222222:role/r")
    assert created["FunctionArn"] == f"arn:aws:lambda:{REGION}:{OTHER[2]}:function:{name}"
    own_arn = f"arn:aws:lambda:{REGION}:000000000000:function:{name}"
    assert owner.get_function(FunctionName=name)["Configuration"]["FunctionArn"] == own_arn
    for caller, who, fn in ((owner, "owner", name), (other, "other", name), (other, "other", created["FunctionArn"])):
        assert json.loads(caller.invoke(FunctionName=fn, Payload=b"{}")["Payload"].read()) == {"who": who}
        assert caller.invoke(FunctionName=fn, InvocationType="Event", Payload=b"{}")["StatusCode"] == 202
        stream = caller.invoke_with_response_stream(FunctionName=fn, Payload=b"{}")   # the ASGI path
        body = b"".join(e["PayloadChunk"]["Payload"] for e in stream["EventStream"] if "PayloadChunk" in e)
        assert json.loads(body) == {"who": who}
    status, code, _ = failure(owner.get_function, FunctionName=created["FunctionArn"])
    assert (status, code) == (403, "AccessDeniedException")
    status, code, _ = failure(owner.invoke, FunctionName=created["FunctionArn"], Payload=b"{}")
    assert (status, code) == (403, "AccessDeniedException")
    assert [f["FunctionArn"] for f in other.list_functions()["Functions"] if f["FunctionName"] == name] == [
        created["FunctionArn"]]
    # Its function URL: reached without credentials (AuthType NONE) by its own id, whichever account holds it.
    url = other.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"]
    url_id = url.split("://", 1)[1].split(".", 1)[0]
    with urllib.request.urlopen(f"{server.endpoint}/lamina/v1/url/{url_id}/", timeout=30) as resp:
        assert json.loads(resp.read()) == {"who": "other"}
    assert _url_request(server, url, None, None) == 200
    # /metrics: one family, the other account's series labelled with it.
    text = raw_request(server.endpoint, "GET", "/metrics", sign=False).body.decode()
    series = [line for line in text.splitlines() if line.startswith("lamina_invocations_total{")
              and f'function="{name}"' in line]
    assert len(series) == 2 and sum(f'account="{OTHER[2]}"' in line for line in series) == 1, series
    assert text.count("# TYPE lamina_invocations_total counter") == 1
    other.delete_function(FunctionName=name)
    assert json.loads(owner.invoke(FunctionName=name, Payload=b"{}")["Payload"].read()) == {"who": "owner"}
    owner.delete_function(FunctionName=name)


def test_another_accounts_queue_feeds_its_own_functions_only(server: LaminaServer) -> None:
    """An account's event source mapping reads its own queue; another account's queue ARN is refused with a clear
    error; its EventBridge rule and schedule deliver to its own function."""
    name = unique_name("feed")
    other = client(server, key=OTHER[0], secret=OTHER[1])
    create_function(other, name, {"app.py": "def handler(event, context):\n    print('GOT', event)\n"},
                    Role="arn:aws:iam::222222222222:role/r")
    sqs_other, sqs_owner = client(server, "sqs", key=OTHER[0], secret=OTHER[1]), client(server, "sqs")
    theirs = sqs_other.create_queue(QueueName=unique_name("q"))["QueueUrl"]
    mine = sqs_owner.create_queue(QueueName=unique_name("q"))["QueueUrl"]

    def arn_of(sqs, url: str) -> str:
        return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    status, code, message = failure(other.create_event_source_mapping, FunctionName=name,
                                    EventSourceArn=arn_of(sqs_owner, mine))
    assert (status, code) == (400, "InvalidParameterValueException") and "own account" in message
    mapping = other.create_event_source_mapping(FunctionName=name, EventSourceArn=arn_of(sqs_other, theirs),
                                                BatchSize=1)
    assert mapping["FunctionArn"].startswith(f"arn:aws:lambda:{REGION}:{OTHER[2]}:function:")
    logs = client(server, "logs", key=OTHER[0], secret=OTHER[1])

    def logged(word: str) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(ClientError):   # the log group appears with the first line
                found = logs.filter_log_events(logGroupName=f"/aws/lambda/{name}", filterPattern=f'"{word}"')
                if found["events"]:
                    return
            time.sleep(0.2)
        raise AssertionError(f"{word} never reached the other account's function log")

    sqs_other.send_message(QueueUrl=theirs, MessageBody="from-the-queue")
    logged("from-the-queue")   # the mapping ran in its account
    # An Event invoke's success goes to its own queue as the destination; the owner's queue is refused.
    status, code, _ = failure(other.put_function_event_invoke_config, FunctionName=name,
                              DestinationConfig={"OnSuccess": {"Destination": arn_of(sqs_owner, mine)}})
    assert (status, code) == (400, "InvalidParameterValueException")
    done = sqs_other.create_queue(QueueName=unique_name("done"))["QueueUrl"]
    other.put_function_event_invoke_config(FunctionName=name,
                                           DestinationConfig={"OnSuccess": {"Destination": arn_of(sqs_other, done)}})
    other.invoke(FunctionName=name, InvocationType="Event", Payload=b'{"async": "yes"}')
    got = sqs_other.receive_message(QueueUrl=done, WaitTimeSeconds=20)["Messages"]
    assert json.loads(got[0]["Body"])["requestPayload"] == {"async": "yes"}
    # Its event bus and its rule: PutEvents in its account reaches its function.
    events = client(server, "events", key=OTHER[0], secret=OTHER[1])
    events.put_rule(Name="to-fn", EventPattern=json.dumps({"source": ["accounts.test"]}))
    events.put_targets(Rule="to-fn", Targets=[{"Id": "fn", "Arn": created_arn(name)}])
    refused = events.put_targets(Rule="to-fn", Targets=[{"Id": "q", "Arn": arn_of(sqs_owner, mine)}])
    assert refused["FailedEntryCount"] == 1   # the owner's queue is no target of this account's rules
    events.put_events(Entries=[{"Source": "accounts.test", "DetailType": "t", "Detail": '{"on": "the-bus"}'}])
    logged("the-bus")
    events.remove_targets(Rule="to-fn", Ids=["fn"])
    events.delete_rule(Name="to-fn")
    other.delete_event_source_mapping(UUID=mapping["UUID"])
    other.delete_function(FunctionName=name)


def created_arn(name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{OTHER[2]}:function:{name}"

def _url_request(server: LaminaServer, url: str, key: str | None, secret: str | None) -> int:
    """GET a function URL over 127.0.0.1 by its host name; signed for lambda when a key is given."""
    host = url.split("://", 1)[1].rstrip("/")
    headers = {"Host": host}
    if key is not None:
        request = AWSRequest(method="GET", url=f"http://{host}/path?x=1", headers=headers)
        SigV4Auth(Credentials(key, secret or ""), "lambda", REGION).add_auth(request)
        headers = dict(request.headers.items())
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("GET", "/path?x=1", headers=headers)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def test_aws_iam_function_url(server: LaminaServer) -> None:
    name = unique_name("iamurl")
    owner = client(server)
    create_function(owner, name, CODE)
    url = owner.create_function_url_config(FunctionName=name, AuthType="AWS_IAM")["FunctionUrl"]
    assert _url_request(server, url, None, None) == 403
    assert _url_request(server, url, ACCESS_KEY, "wrong") == 403
    assert _url_request(server, url, ACCESS_KEY, SECRET_KEY) == 200
    assert _url_request(server, url, OTHER[0], OTHER[1]) == 403
    owner.add_permission(FunctionName=name, StatementId="url", Action="lambda:InvokeFunctionUrl",
                         Principal=OTHER[2], FunctionUrlAuthType="AWS_IAM")
    assert _url_request(server, url, OTHER[0], OTHER[1]) == 200


def test_health_and_metrics_stay_unsigned(server: LaminaServer) -> None:
    assert raw_request(server.endpoint, "GET", "/lamina/v1/health", sign=False).status == 200


def test_non_loopback_bind_without_keys_refuses_to_start(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "lamina", "serve", "--host", "0.0.0.0", "--port", str(free_port()),
                           "--data-dir", str(tmp_path / "data")], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert proc.returncode != 0
    assert "refusing to listen on 0.0.0.0 with no credentials configured" in proc.stderr


def test_cli_signs_with_the_environments_credentials(server: LaminaServer, function: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LAMINA_", "AWS_")) and k != "COLUMNS"}
    env.update(LAMINA_ENDPOINT=server.endpoint, NO_COLOR="1", TERM="dumb", COLUMNS="250")
    unsigned = subprocess.run([sys.executable, "-m", "lamina", "ls"], capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=90)
    assert unsigned.returncode != 0 and "MissingAuthenticationToken" in unsigned.stdout + unsigned.stderr
    env.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
    signed = subprocess.run([sys.executable, "-m", "lamina", "ls"], capture_output=True, text=True, env=env,
                            cwd=tmp_path, timeout=90)
    assert signed.returncode == 0 and function in signed.stdout, signed.stdout + signed.stderr


def test_open_server_takes_any_signed_aws_iam_url_request(lambda_client, lamina_server: LaminaServer) -> None:
    """The session's server has no keys (open, loopback): any credentials sign an AWS_IAM URL request; unsigned is
    still 403."""
    name = unique_name("openiam")
    create_function(lambda_client, name, CODE)
    try:
        url = lambda_client.create_function_url_config(FunctionName=name, AuthType="AWS_IAM")["FunctionUrl"]
        assert _url_request(lamina_server, url, None, None) == 403
        assert _url_request(lamina_server, url, "anything", "at-all") == 200
    finally:
        lambda_client.delete_function(FunctionName=name)


def test_queues_belong_to_accounts(server: LaminaServer) -> None:
    owner, other = client(server, "sqs"), client(server, "sqs", key=OTHER[0], secret=OTHER[1])
    mine = owner.create_queue(QueueName=unique_name("mine"))["QueueUrl"]
    theirs = other.create_queue(QueueName=unique_name("theirs"))["QueueUrl"]
    assert "/000000000000/" in mine and "/222222222222/" in theirs
    arn = other.get_queue_attributes(QueueUrl=theirs, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    assert arn.startswith("arn:aws:sqs:us-east-1:222222222222:")
    assert theirs not in owner.list_queues().get("QueueUrls", [])
    assert mine not in other.list_queues().get("QueueUrls", [])
    # Lamina's own view (`lamina queue ls`) lists the caller's account's queues too.
    request = AWSRequest(method="GET", url=f"{server.endpoint}/lamina/v1/queues")
    SigV4Auth(Credentials(OTHER[0], OTHER[1]), "lambda", REGION).add_auth(request)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request("GET", "/lamina/v1/queues", headers=dict(request.headers.items()))
        listed = json.loads(conn.getresponse().read())
    finally:
        conn.close()
    urls = [q.get("QueueUrl") or q.get("Url") or json.dumps(q) for q in listed["Queues"]]
    assert any(theirs.rsplit("/", 1)[1] in u for u in urls) and not any(mine.rsplit("/", 1)[1] in u for u in urls)
    assert "Totals" not in listed
    status, code, _ = failure(other.send_message, QueueUrl=mine, MessageBody="x")
    assert (status, code) == (403, "AccessDenied")
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": OTHER[2]},
                                                      "Action": "sqs:SendMessage", "Resource": "*"}]}
    owner.set_queue_attributes(QueueUrl=mine, Attributes={"Policy": json.dumps(policy)})
    other.send_message(QueueUrl=mine, MessageBody="allowed")
    status, code, _ = failure(other.receive_message, QueueUrl=mine)   # only SendMessage was allowed
    assert (status, code) == (403, "AccessDenied")
    assert owner.receive_message(QueueUrl=mine)["Messages"][0]["Body"] == "allowed"


def test_function_credentials_are_verified_scoped_and_expire(server: LaminaServer, function: str) -> None:
    """Credentials as the server issues them to a function's environment (auth/keys.py, under the data directory's
    credentials.key): verified like any key, held to the function policy, refused once expired."""
    secret = (server.data_dir / "credentials.key").read_bytes()
    keys = KeyTable([], secret)
    arn = f"arn:aws:lambda:{REGION}:000000000000:function:{function}"
    issued = keys.issue("000000000000", "arn:aws:iam::000000000000:role/fn", arn, seconds=600)

    def as_function(creds: dict, service: str = "lambda"):
        return boto3.client(service, endpoint_url=server.endpoint, region_name=REGION, config=NO_RETRY,
                            aws_access_key_id=creds["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=creds["AWS_SECRET_ACCESS_KEY"],
                            aws_session_token=creds["AWS_SESSION_TOKEN"])

    fn = as_function(issued)
    assert json.loads(fn.invoke(FunctionName=function, Payload=b"{}")["Payload"].read()) == {"ok": True}
    assert fn.get_function(FunctionName=function)["Configuration"]["FunctionName"] == function
    as_function(issued, "sqs").list_queues()
    status, code, _ = failure(fn.delete_function, FunctionName=function)   # not in a function's policy
    assert (status, code) == (403, "AccessDeniedException")
    expired = keys.issue("000000000000", "arn:aws:iam::000000000000:role/fn", arn, seconds=-1)
    status, code, _ = failure(as_function(expired).get_function, FunctionName=function)
    assert (status, code) == (403, "ExpiredTokenException")
    forged = dict(issued, AWS_SESSION_TOKEN=KeyTable([], b"another server").issue(
        "000000000000", "arn:aws:iam::000000000000:role/fn", arn)["AWS_SESSION_TOKEN"])
    status, code, _ = failure(as_function(forged).get_function, FunctionName=function)
    assert (status, code) == (403, "UnrecognizedClientException")


def test_another_accounts_queue_by_arn_is_refused(server: LaminaServer) -> None:
    owner, other = client(server, "sqs"), client(server, "sqs", key=OTHER[0], secret=OTHER[1])
    mine = owner.create_queue(QueueName=unique_name("src"))["QueueUrl"]
    arn = owner.get_queue_attributes(QueueUrl=mine, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    status, code, _ = failure(other.start_message_move_task, SourceArn=arn)
    assert (status, code) == (403, "AccessDenied")
    status, code, _ = failure(other.list_message_move_tasks, SourceArn=arn)
    assert (status, code) == (403, "AccessDenied")


def test_a_function_acts_in_its_own_account(server: LaminaServer) -> None:
    """boto3 inside another account's function (its credentials, AWS_ENDPOINT_URL) reaches that account: it invokes
    a function of its account by name and lists only its account's functions."""
    other = client(server, key=OTHER[0], secret=OTHER[1])
    callee, caller = unique_name("callee"), unique_name("caller")
    create_function(other, callee, {"app.py": "def handler(event, context):\n    return {'callee': event}\n"},
                    Role="arn:aws:iam::222222222222:role/r")
    code = ("import json, boto3\n"
            "def handler(event, context):\n"
            "    lam = boto3.client('lambda')\n"
            "    got = json.loads(lam.invoke(FunctionName=event['target'], Payload=b'1')['Payload'].read())\n"
            "    return {'got': got, 'names': [f['FunctionName'] for f in lam.list_functions()['Functions']]}\n")
    create_function(other, caller, {"app.py": code}, Role="arn:aws:iam::222222222222:role/r", Timeout=60)
    out = json.loads(other.invoke(FunctionName=caller, Payload=json.dumps({"target": callee}))["Payload"].read())
    assert out["got"] == {"callee": 1}, out
    assert sorted(out["names"]) == sorted(f["FunctionName"] for f in other.list_functions()["Functions"])
    for name in (caller, callee):
        other.delete_function(FunctionName=name)


def test_another_accounts_resources_outlive_a_restart(tmp_path: Path) -> None:
    keys = f"{ACCESS_KEY}:{SECRET_KEY}:000000000000,{':'.join(OTHER)}"
    srv = LaminaServer(data_dir=tmp_path / "data", log_path=tmp_path / "server.log",
                       extra_env={"LAMINA_CREDENTIALS": keys})
    srv.start()
    try:
        name = unique_name("kept")
        create_function(client(srv, key=OTHER[0], secret=OTHER[1]), name, CODE, Role="arn:aws:iam::222222222222:role/r")
        srv.stop()
        assert (tmp_path / "data" / "accounts" / OTHER[2] / "lamina.db").is_file()
        srv.start()
        other = client(srv, key=OTHER[0], secret=OTHER[1])
        assert json.loads(other.invoke(FunctionName=name, Payload=b"{}")["Payload"].read()) == {"ok": True}
        assert name not in [f["FunctionName"] for f in client(srv).list_functions()["Functions"]]
    finally:
        srv.stop()
        srv.kill_leftovers()


def test_a_layer_is_shared_with_another_account_by_its_policy(server: LaminaServer) -> None:
    owner, other = client(server), client(server, key=OTHER[0], secret=OTHER[1])
    layer = unique_name("shared")
    published = owner.publish_layer_version(LayerName=layer, Content={"ZipFile": make_zip(
        {"python/shared_mod.py": "VALUE = 'from the owner'\n"})})
    arn = published["LayerVersionArn"]
    code = {"app.py": "def handler(event, context):\n    import shared_mod\n    return shared_mod.VALUE\n"}
    name = unique_name("uses")
    status, code_, message = failure(other.create_function, FunctionName=name, Runtime="python3.11",
                                     Role="arn:aws:iam::222222222222:role/r", Handler="app.handler",
                                     Code={"ZipFile": make_zip(code)}, Layers=[arn])
    assert (status, code_) == (400, "InvalidParameterValueException") and "does not exist" in message
    status, code_, _ = failure(other.get_layer_version_by_arn, Arn=arn)
    assert (status, code_) == (404, "ResourceNotFoundException")
    owner.add_layer_version_permission(LayerName=layer, VersionNumber=published["Version"], StatementId="other",
                                       Action="lambda:GetLayerVersion", Principal=OTHER[2])
    assert other.get_layer_version_by_arn(Arn=arn)["LayerVersionArn"] == arn
    create_function(other, name, code, Role="arn:aws:iam::222222222222:role/r", Layers=[arn])
    assert json.loads(other.invoke(FunctionName=name, Payload=b"{}")["Payload"].read()) == "from the owner"
    assert layer not in [item["LayerName"] for item in other.list_layers()["Layers"]]
    other.delete_function(FunctionName=name)
    owner.delete_layer_version(LayerName=layer, VersionNumber=published["Version"])
