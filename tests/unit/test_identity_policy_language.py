"""Identity policies: what each request asks to do in IAM's terms (auth/actions.py), how a policy document decides it
(auth/policy.identity_allows), and how keys and roles are configured with one (auth/keys.py)."""

from __future__ import annotations

import json

import pytest

from lamina.auth.actions import request_action
from lamina.auth.keys import KeyTable, parse_keys, parse_roles
from lamina.auth.policy import identity_allows

R, A = "us-east-1", "111111111111"
FORM = [(b"content-type", b"application/x-www-form-urlencoded")]


def target(name: str) -> list[tuple[bytes, bytes]]:
    return [(b"x-amz-target", name.encode()), (b"content-type", b"application/x-amz-json-1.1")]


@pytest.mark.parametrize(("method", "path", "query", "headers", "body", "service", "action", "resource"), [
    ("POST", "/2015-03-31/functions/fn/invocations", b"", [], b"", "lambda", "lambda:InvokeFunction",
     f"arn:aws:lambda:{R}:{A}:function:fn"),
    ("POST", "/2015-03-31/functions/arn:aws:lambda:us-east-1:222222222222:function:x:live/invocations", b"", [], b"",
     "lambda", "lambda:InvokeFunction", f"arn:aws:lambda:{R}:222222222222:function:x"),
    ("POST", "/2021-11-15/functions/fn/response-streaming-invocations", b"", [], b"", "lambda",
     "lambda:InvokeFunction", f"arn:aws:lambda:{R}:{A}:function:fn"),
    ("POST", "/2014-11-13/functions/fn/invoke-async/", b"", [], b"", "lambda", "lambda:InvokeAsync",
     f"arn:aws:lambda:{R}:{A}:function:fn"),
    ("GET", "/2015-03-31/functions/", b"", [], b"", "lambda", "lambda:ListFunctions", "*"),
    ("GET", "/2015-03-31/functions/fn", b"", [], b"", "lambda", "lambda:GetFunction",
     f"arn:aws:lambda:{R}:{A}:function:fn"),
    ("GET", "/2015-03-31/functions/fn/configuration", b"", [], b"", "lambda", "lambda:GetFunctionConfiguration",
     f"arn:aws:lambda:{R}:{A}:function:fn"),
    ("DELETE", "/2015-03-31/functions/fn", b"", [], b"", "lambda", "lambda:DeleteFunction",
     f"arn:aws:lambda:{R}:{A}:function:fn"),
    ("POST", "/2018-10-31/layers/lib/versions", b"", [], b"", "lambda", "lambda:PublishLayerVersion",
     f"arn:aws:lambda:{R}:{A}:layer:lib"),
    ("POST", "/schedules/nightly", b"", [], b'{"GroupName": "ops"}', "scheduler", "scheduler:CreateSchedule",
     f"arn:aws:scheduler:{R}:{A}:schedule/ops/nightly"),
    ("DELETE", "/schedules/nightly", b"", [], b"", "scheduler", "scheduler:DeleteSchedule",
     f"arn:aws:scheduler:{R}:{A}:schedule/default/nightly"),
    ("POST", "/", b"", target("AmazonSQS.SendMessage"), b'{"QueueUrl": "http://h:1/111111111111/jobs"}', "sqs",
     "sqs:SendMessage", f"arn:aws:sqs:{R}:{A}:jobs"),
    ("POST", "/111111111111/jobs", b"", FORM, b"Action=ReceiveMessage", "sqs", "sqs:ReceiveMessage",
     f"arn:aws:sqs:{R}:{A}:jobs"),
    ("POST", "/", b"", FORM, b"Action=DescribeVpcs&Version=2016-11-15", "ec2", "ec2:DescribeVpcs", "*"),
    ("POST", "/", b"", target("AWSEvents.PutEvents"), b"{}", "events", "events:PutEvents", "*"),
    ("POST", "/", b"", target("Logs_20140328.GetLogEvents"), b'{"logGroupName": "/aws/lambda/fn"}', "logs",
     "logs:GetLogEvents", f"arn:aws:logs:{R}:{A}:log-group:/aws/lambda/fn"),
    ("POST", "/2025-09-09/microvms/m-1/suspend", b"", [], b"", "lambda", "lambda:SuspendMicrovm", "*"),
    ("GET", "/lamina/v1/functions", b"", [], b"", "lambda", "lamina:Read", "*"),
    ("DELETE", "/lamina/v1/functions/fn/environments", b"", [], b"", "lambda", "lamina:Write", "*"),
])
def test_request_action(method: str, path: str, query: bytes, headers: list, body: bytes, service: str,
                        action: str, resource: str) -> None:
    got = request_action(method, path, query, headers, body, service, R, A)
    assert (got.name, got.resource) == (action, resource)


READER = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["lambda:Get*", "lambda:List*"], "Resource": "*"},
    {"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": f"arn:aws:lambda:{R}:{A}:function:public-*"},
    {"Effect": "Deny", "Action": "lambda:GetFunction", "Resource": f"arn:aws:lambda:{R}:{A}:function:secret"},
]}


@pytest.mark.parametrize(("action", "resource", "allowed"), [
    ("lambda:ListFunctions", "*", True),
    ("lambda:getfunction", f"arn:aws:lambda:{R}:{A}:function:fn", True),   # action names are case-insensitive
    ("lambda:GetFunction", f"arn:aws:lambda:{R}:{A}:function:secret", False),   # an explicit Deny wins
    ("lambda:GetFunctionConfiguration", f"arn:aws:lambda:{R}:{A}:function:secret", True),
    ("lambda:InvokeFunction", f"arn:aws:lambda:{R}:{A}:function:public-api", True),
    ("lambda:InvokeFunction", f"arn:aws:lambda:{R}:{A}:function:private", False),
    ("lambda:DeleteFunction", f"arn:aws:lambda:{R}:{A}:function:public-api", False),
    ("sqs:SendMessage", "*", False),
])
def test_identity_allows(action: str, resource: str, allowed: bool) -> None:
    assert identity_allows(READER, action, resource) is allowed


def test_not_action_not_resource_and_conditions() -> None:
    everything_but_delete = {"Statement": {"Effect": "Allow", "NotAction": "lambda:Delete*", "Resource": "*"}}
    assert identity_allows(everything_but_delete, "sqs:SendMessage", "*")
    assert not identity_allows(everything_but_delete, "lambda:DeleteFunction", "x")
    not_prod = {"Statement": [{"Effect": "Allow", "Action": "*", "NotResource": "arn:aws:lambda:*:*:function:prod-*"}]}
    assert identity_allows(not_prod, "lambda:UpdateFunctionCode", "arn:aws:lambda:r:1:function:dev-x")
    assert not identity_allows(not_prod, "lambda:UpdateFunctionCode", "arn:aws:lambda:r:1:function:prod-x")
    conditional = {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*",
                                  "Condition": {"Bool": {"aws:SecureTransport": "true"}}}]}
    assert not identity_allows(conditional, "lambda:ListFunctions", "*")   # not evaluated: fails closed
    denied_if = {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"},
                               {"Effect": "Deny", "Action": "*", "Resource": "*",
                                "Condition": {"StringEquals": {"aws:RequestedRegion": "eu-west-1"}}}]}
    assert not identity_allows(denied_if, "lambda:ListFunctions", "*")


def test_keys_and_roles_take_policies_and_refuse_bad_ones() -> None:
    keys = parse_keys([{"access_key_id": "AKID", "secret_access_key": "s", "policy": json.dumps(READER)}], A)
    table = KeyTable(keys, b"secret", parse_roles([{"arn": f"arn:aws:iam::{A}:role/worker", "policy": READER}]))
    assert table.lookup("AKID", None)[0].policy == READER
    issued = table.issue(A, f"arn:aws:iam::{A}:role/worker", f"arn:aws:lambda:{R}:{A}:function:fn")
    caller, _ = table.lookup(str(issued["AWS_ACCESS_KEY_ID"]), str(issued["AWS_SESSION_TOKEN"]))
    assert caller.policy == READER
    other = table.issue(A, f"arn:aws:iam::{A}:role/other", f"arn:aws:lambda:{R}:{A}:function:fn")
    assert table.lookup(str(other["AWS_ACCESS_KEY_ID"]), str(other["AWS_SESSION_TOKEN"]))[0].policy is None
    assert parse_roles(json.dumps([{"arn": f"arn:aws:iam::{A}:role/w", "policy": READER}])) == {
        f"arn:aws:iam::{A}:role/w": READER}
    for bad, words in ((["x"], "needs arn and policy"),
                       ([{"arn": "role/w", "policy": READER}], "not an IAM role ARN"),
                       ([{"arn": f"arn:aws:iam::{A}:role/w", "policy": "{"}], "not JSON"),
                       ([{"arn": f"arn:aws:iam::{A}:role/w", "policy": {"Statement": [{"Effect": "Allow"}]}}],
                        "Action or NotAction"),
                       ([{"arn": f"arn:aws:iam::{A}:role/w", "policy": READER, "extra": 1}], "unknown roles field")):
        with pytest.raises(ValueError, match=words):
            parse_roles(bad)
    with pytest.raises(ValueError, match="Resource or NotResource"):
        parse_keys([{"access_key_id": "K", "secret_access_key": "s",
                     "policy": {"Statement": {"Effect": "Deny", "Action": "*"}}}], A)
