"""SigV4 verification (auth/sigv4.py) against requests signed by botocore's own signers, function credentials
(auth/keys.py) and the resource-policy evaluation (auth/policy.py)."""

from __future__ import annotations

import datetime
import hashlib
import time
from unittest import mock
from urllib.parse import urlsplit

import pytest
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from lamina.auth import errors as auth_errors
from lamina.auth import policy
from lamina.auth.keys import Caller, KeyTable, StaticKey, parse_keys, refuse_open_bind
from lamina.auth.sigv4 import SignatureError, Verifier

OWNER = StaticKey("AKIDOWNER", "owner-secret", "111111111111", "arn:aws:iam::111111111111:user/owner")
HOST = "127.0.0.1:8800"
PATH = "/2015-03-31/functions/f%3A1/invocations"


def verifier(*keys: StaticKey) -> Verifier:
    return Verifier(KeyTable(list(keys) or [OWNER], b"k" * 32), "us-east-1", "000000000000")


def signed(method: str = "POST", path: str = PATH, query: str = "Qualifier=x", body: bytes = b'{"a":1}',
           key: str = "AKIDOWNER", secret: str = "owner-secret", token: str | None = None, service: str = "lambda",
           region: str = "us-east-1", at: datetime.datetime | None = None, headers: dict | None = None
           ) -> list[tuple[bytes, bytes]]:
    request = AWSRequest(method=method, url=f"http://{HOST}{path}" + (f"?{query}" if query else ""), data=body,
                         headers={"User-Agent": "test", **(headers or {})})
    with mock.patch("botocore.auth.get_current_datetime",
                    return_value=at or datetime.datetime.now(datetime.UTC).replace(tzinfo=None)):
        SigV4Auth(Credentials(key, secret, token), service, region).add_auth(request)
    out = [(k.lower().encode(), v.encode() if isinstance(v, str) else v) for k, v in request.headers.items()]
    return [*out, (b"host", HOST.encode())]


def test_good_header_signature_gives_the_keys_caller() -> None:
    caller = verifier().verify("POST", PATH.encode(), b"Qualifier=x", signed(), b'{"a":1}')
    assert caller == Caller("111111111111", OWNER.principal, "AKIDOWNER")


@pytest.mark.parametrize("change", ["body", "path", "query", "header", "secret"])
def test_any_change_is_a_mismatch(change: str) -> None:
    headers = signed(secret="wrong" if change == "secret" else "owner-secret")
    path, query, body = PATH.encode(), b"Qualifier=x", b'{"a":1}'
    if change == "body":
        body = b'{"a":2}'
    elif change == "path":
        path = b"/2015-03-31/functions/g/invocations"
    elif change == "query":
        query = b"Qualifier=y"
    elif change == "header":
        headers = signed(headers={"X-Amz-Invocation-Type": "RequestResponse"})
        headers = [(k, b"Event" if k == b"x-amz-invocation-type" else v) for k, v in headers]
    with pytest.raises(SignatureError) as info:
        verifier().verify("POST", path, query, headers, body)
    assert info.value.kind == "mismatch"


def test_unknown_key_missing_and_incomplete() -> None:
    v = verifier()
    with pytest.raises(SignatureError) as info:
        v.verify("POST", PATH.encode(), b"Qualifier=x", signed(key="AKIDNOBODY"), b'{"a":1}')
    assert info.value.kind == "unknown_key"
    with pytest.raises(SignatureError) as info:
        v.verify("POST", PATH.encode(), b"", [(b"host", HOST.encode())], b"")
    assert info.value.kind == "missing"
    with pytest.raises(SignatureError) as info:
        v.verify("POST", PATH.encode(), b"", [(b"host", b"x"), (b"authorization", b"AWS4-HMAC-SHA256 Credential=x")],
                 b"")
    assert info.value.kind == "incomplete"


def test_clock_skew_region_and_service() -> None:
    v = verifier()
    old = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) - datetime.timedelta(minutes=6)
    with pytest.raises(SignatureError) as info:
        v.verify("POST", PATH.encode(), b"Qualifier=x", signed(at=old), b'{"a":1}')
    assert info.value.kind == "expired"
    # The same signature replayed inside the window is taken; beyond it, refused.
    headers = signed()
    v.verify("POST", PATH.encode(), b"Qualifier=x", headers, b'{"a":1}', now=time.time() + 200)
    with pytest.raises(SignatureError):
        v.verify("POST", PATH.encode(), b"Qualifier=x", headers, b'{"a":1}', now=time.time() + 400)
    with pytest.raises(SignatureError) as info:
        v.verify("POST", PATH.encode(), b"Qualifier=x", signed(region="eu-west-1"), b'{"a":1}')
    assert info.value.kind == "scope"
    with pytest.raises(SignatureError) as info:
        v.verify("POST", PATH.encode(), b"Qualifier=x", signed(service="s3"), b'{"a":1}')
    assert info.value.kind == "scope"


def test_presigned_url() -> None:
    request = AWSRequest(method="GET", url=f"http://{HOST}/2015-03-31/functions?MaxItems=5")
    SigV4QueryAuth(Credentials("AKIDOWNER", "owner-secret"), "lambda", "us-east-1", expires=60).add_auth(request)
    url = urlsplit(request.prepare().url)
    v = verifier()
    headers = [(b"host", HOST.encode())]
    assert v.verify("GET", url.path.encode(), url.query.encode(), headers, b"").account == "111111111111"
    with pytest.raises(SignatureError) as info:
        v.verify("GET", url.path.encode(), url.query.encode(), headers, b"", now=time.time() + 120)
    assert info.value.kind == "expired"
    with pytest.raises(SignatureError) as info:
        v.verify("GET", url.path.encode(), url.query.replace("MaxItems=5", "MaxItems=6").encode(), headers, b"")
    assert info.value.kind == "mismatch"


def test_function_credentials_verify_until_they_expire() -> None:
    keys = KeyTable([OWNER], b"k" * 32)
    v = Verifier(keys, "us-east-1", "000000000000")
    creds = keys.issue("111111111111", "arn:aws:iam::111111111111:role/r",
                       "arn:aws:lambda:us-east-1:111111111111:function:f", seconds=60)
    key, secret, token = creds["AWS_ACCESS_KEY_ID"], creds["AWS_SECRET_ACCESS_KEY"], creds["AWS_SESSION_TOKEN"]
    assert isinstance(key, str) and isinstance(secret, str) and isinstance(token, str)
    headers = signed(key=key, secret=secret, token=token)
    caller = v.verify("POST", PATH.encode(), b"Qualifier=x", headers, b'{"a":1}')
    assert caller.function == "arn:aws:lambda:us-east-1:111111111111:function:f"
    assert caller.principal == "arn:aws:iam::111111111111:role/r"
    with pytest.raises(SignatureError) as info:
        v.verify("POST", PATH.encode(), b"Qualifier=x", headers, b'{"a":1}', now=time.time() + 61)
    assert info.value.kind == "expired_token"
    # A token MAC'd under another server's secret, or tampered with, is no key at all.
    other = Verifier(KeyTable([OWNER], b"o" * 32), "us-east-1", "000000000000")
    with pytest.raises(SignatureError) as info:
        other.verify("POST", PATH.encode(), b"Qualifier=x", headers, b'{"a":1}')
    assert info.value.kind == "unknown_key"
    forged = signed(key=key, secret=secret, token=token[:-2] + ("AA" if token[-2:] != "AA" else "BB"))
    with pytest.raises(SignatureError) as info:
        v.verify("POST", PATH.encode(), b"Qualifier=x", forged, b'{"a":1}')
    assert info.value.kind == "unknown_key"


def test_open_verifier_takes_anything_and_binds_only_loopback() -> None:
    v = Verifier(KeyTable([], b"k" * 32), "us-east-1", "000000000000")
    assert v.verify("POST", PATH.encode(), b"", [], b"").account == "000000000000"
    empty = KeyTable([], b"")
    assert refuse_open_bind("127.0.0.1", empty) is None
    assert refuse_open_bind("::1", empty) is None
    assert "refusing" in (refuse_open_bind("0.0.0.0", empty) or "")
    assert "refusing" in (refuse_open_bind("192.168.1.5", empty) or "")
    assert refuse_open_bind("0.0.0.0", KeyTable([OWNER], b"")) is None


def test_keys_from_settings() -> None:
    keys = parse_keys("A:s1, B:s2:222222222222:arn:aws:iam::222222222222:user/b", "000000000000")
    assert keys[0] == StaticKey("A", "s1", "000000000000", "arn:aws:iam::000000000000:root")
    assert keys[1].principal == "arn:aws:iam::222222222222:user/b"
    with pytest.raises(ValueError):
        parse_keys([{"access_key_id": "A"}], "000000000000")
    with pytest.raises(ValueError):
        parse_keys("A:s:123", "000000000000")


def test_errors_in_each_protocols_shape() -> None:
    err = SignatureError("mismatch", "no", "lambda")
    status, headers, body = auth_errors.render(err, [])
    assert status == 403 and (b"x-amzn-errortype", b"InvalidSignatureException") in headers
    status, headers, body = auth_errors.render(SignatureError("mismatch", "no", "sqs"),
                                               [(b"x-amz-target", b"AmazonSQS.ListQueues")])
    assert b'"__type":"InvalidSignatureException"' in body
    assert (b"x-amzn-query-error", b"SignatureDoesNotMatch;Sender") in headers
    status, headers, body = auth_errors.render(SignatureError("unknown_key", "no", "sqs"),
                                               [(b"content-type", b"application/x-www-form-urlencoded")])
    assert b"<Code>InvalidClientTokenId</Code>" in body and b"<ErrorResponse" in body
    status, headers, body = auth_errors.render(SignatureError("unknown_key", "no", "ec2"), [])
    assert status == 401 and b"<Code>AuthFailure</Code>" in body and b"<Response><Errors>" in body


def test_policy_evaluation() -> None:
    other = Caller("222222222222", "arn:aws:iam::222222222222:user/o", "K")
    allow = {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::222222222222:root"},
             "Action": "lambda:InvokeFunction"}
    assert policy.allows([allow], other, "lambda:InvokeFunction", {})
    assert not policy.allows([allow], other, "lambda:InvokeFunctionUrl", {})
    assert not policy.allows([allow], Caller("333333333333", "x", "K"), "lambda:InvokeFunction", {})
    deny = {**allow, "Effect": "Deny"}
    assert not policy.allows([allow, deny], other, "lambda:InvokeFunction", {})
    url = {"Effect": "Allow", "Principal": "*", "Action": "lambda:InvokeFunctionUrl",
           "Condition": {"StringEquals": {"lambda:FunctionUrlAuthType": "AWS_IAM"}}}
    assert policy.allows([url], other, "lambda:InvokeFunctionUrl", {"lambda:functionurlauthtype": "AWS_IAM"})
    assert not policy.allows([url], other, "lambda:InvokeFunctionUrl", {"lambda:functionurlauthtype": "NONE"})
    assert not policy.allows([{**url, "Condition": {"IpAddress": {"aws:SourceIp": "1.2.3.4"}}}], other,
                             "lambda:InvokeFunctionUrl", {"lambda:functionurlauthtype": "AWS_IAM"})
    assert policy.function_credentials_allow("POST", "/2015-03-31/functions/f/invocations", [], "lambda")
    assert not policy.function_credentials_allow("POST", "/2015-03-31/functions", [], "lambda")
    assert policy.function_credentials_allow("POST", "/", [(b"x-amz-target", b"AmazonSQS.SendMessage")], "sqs")
    assert not policy.function_credentials_allow("POST", "/", [], "ec2")
    assert policy.function_credentials_allow("POST", "/schedules/s1", [], "scheduler")
    assert policy.function_credentials_allow("DELETE", "/schedules/s1", [], "scheduler")
    assert not policy.function_credentials_allow("DELETE", "/schedule-groups/g1", [], "scheduler")


def test_a_sent_payload_hash_must_be_the_bodys() -> None:
    v = verifier()
    body = b'{"a":1}'
    headers = signed(headers={"X-Amz-Content-SHA256": hashlib.sha256(body).hexdigest()})
    assert v.verify("POST", PATH.encode(), b"Qualifier=x", headers, body).account == "111111111111"
    with pytest.raises(SignatureError) as info:   # the hash was signed, the body swapped
        v.verify("POST", PATH.encode(), b"Qualifier=x", headers, b'{"a":2}')
    assert info.value.kind == "mismatch"
    unsigned = signed(headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
    with pytest.raises(SignatureError):
        v.verify("POST", PATH.encode(), b"Qualifier=x", unsigned, b'{"a":2}')


def test_kept_canonical_headers_never_skip_a_missing_signed_header() -> None:
    v = verifier()
    headers = signed()
    assert v.verify("POST", PATH.encode(), b"Qualifier=x", headers, b'{"a":1}').account == "111111111111"
    # The same headers again, but claiming one more signed header that is not there.
    claimed = [(k, val.replace(b"SignedHeaders=host;", b"SignedHeaders=host;x-absent;") if k == b"authorization"
                else val) for k, val in headers]
    with pytest.raises(SignatureError) as info:
        v.verify("POST", PATH.encode(), b"Qualifier=x", claimed, b'{"a":1}')
    assert info.value.kind == "mismatch"
    # And the first request still verifies (what was kept is botocore's canonical form of those headers).
    assert v.verify("POST", PATH.encode(), b"Qualifier=x", headers, b'{"a":1}').account == "111111111111"
