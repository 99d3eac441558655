"""The direct canonical request of auth/sigv4.py (Verifier.fast_string_to_sign) against botocore's
(Verifier.reference_string_to_sign) on generated requests: different signed header sets, repeated headers, values
with runs of whitespace and latin-1 bytes, query strings, unicode and dot-segment paths, sent payload hashes
(right, wrong, UNSIGNED-PAYLOAD). Where the fast path is not taken (presigned URLs, signed header names not in lower
case) the reference is, and what the verifier accepts is what botocore's own signer signed."""

from __future__ import annotations

import calendar
import datetime
import hashlib
from dataclasses import dataclass
from unittest import mock
from urllib.parse import quote

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lamina.auth.keys import KeyTable, StaticKey
from lamina.auth.sigv4 import Pending, SignatureError, Verifier

OWNER = StaticKey("AKIDOWNER", "owner-secret", "111111111111", "arn:aws:iam::111111111111:user/owner")
DATE = "20261207T050123Z"
NOW = float(calendar.timegm((2026, 12, 7, 5, 1, 23, 0, 0, 0)))
CREDENTIAL = f"AKIDOWNER/{DATE[:8]}/us-east-1/lambda/aws4_request"
HOST = b"127.0.0.1:8800"
NAMES = ["content-type", "x-amz-invocation-type", "x-amz-log-type", "x-amz-client-context", "user-agent",
         "amz-sdk-request", "amz-sdk-invocation-id", "x-amz-security-token", "accept-encoding", "x-custom"]


def verifier() -> Verifier:
    return Verifier(KeyTable([OWNER], b"k" * 32), "us-east-1", "000000000000")


@dataclass
class Generated:
    method: str
    path: bytes
    query: bytes
    headers: list[tuple[bytes, bytes]]   # without authorization
    signed: list[str]
    body: bytes
    sha: str | None                       # x-amz-content-sha256 sent


_value_chars = st.sampled_from([" ", "  ", "\t", "a", "Z", "0", ";", ",", "=", "/", ":", "é", "\xa0", "\x85", "\x1f",
                                "ü", "json"])
_values = st.lists(_value_chars, max_size=12).map("".join)
_segment = st.one_of(st.sampled_from(["..", ".", ""]), st.text(alphabet=list("abcAB09-_.~:$@%!* é日"), max_size=8))


@st.composite
def paths(draw: st.DrawFn) -> bytes:
    segments = draw(st.lists(_segment, min_size=1, max_size=5))
    path = "/" + "/".join(segments)
    if draw(st.booleans()):
        path = "/2015-03-31/functions/" + quote(draw(_segment), safe="") + "/invocations"
    how = draw(st.sampled_from(["quoted", "raw", "quoted-colon"]))
    if how == "quoted":
        return quote(path, safe="/").encode()
    if how == "quoted-colon":
        return quote(path, safe="/:~").encode()
    return path.encode("utf-8", "surrogatepass")


@st.composite
def queries(draw: st.DrawFn) -> bytes:
    pairs = draw(st.lists(st.tuples(st.sampled_from(["Qualifier", "MaxItems", "Marker", "a", "B", "x%20y", ""]),
                                    st.sampled_from(["", "1", "prod", "%24LATEST", "a+b", "%E6%97%A5", "==", "#f"]),
                                    st.booleans()), max_size=4))
    return "&".join(f"{k}={v}" if eq else k for k, v, eq in pairs).encode()


@st.composite
def requests(draw: st.DrawFn) -> Generated:
    body = draw(st.binary(max_size=64))
    headers = [(b"host", HOST), (b"x-amz-date", DATE.encode())]
    for name, value in draw(st.lists(st.tuples(st.sampled_from(NAMES), _values), max_size=6)):
        headers.append((name.encode(), value.encode("latin-1", "replace") if draw(st.booleans()) else
                        value.encode("utf-8")))
    sha = draw(st.sampled_from([None, "body", "UNSIGNED-PAYLOAD", "wrong"]))
    if sha == "body":
        sha = hashlib.sha256(body).hexdigest()
    elif sha == "wrong":
        sha = hashlib.sha256(body + b"x").hexdigest()
    if sha is not None:
        headers.append((b"x-amz-content-sha256", sha.encode()))
    headers = draw(st.permutations(headers))
    present = sorted({n.decode() for n, _ in headers} - {"host"})
    signed = ["host", *draw(st.lists(st.sampled_from(present), unique=True) if present else st.just([]))]
    if draw(st.integers(0, 9)) == 0:
        signed.append("x-absent")               # claimed, not sent: both must refuse
    if draw(st.integers(0, 9)) == 0:
        signed = [n if n == "host" else n.title() for n in signed]   # not lower case: the reference's alone
    if draw(st.integers(0, 9)) == 0:
        signed = signed + signed[:1]            # listed twice
    signed = draw(st.permutations(signed))
    return Generated(draw(st.sampled_from(["POST", "GET", "PUT", "DELETE", "post"])), draw(paths()), draw(queries()),
                     headers, list(signed), body, sha)


def _with_auth(g: Generated, signature: str = "0" * 64) -> list[tuple[bytes, bytes]]:
    auth = f"AWS4-HMAC-SHA256 Credential={CREDENTIAL}, SignedHeaders={';'.join(g.signed)}, Signature={signature}"
    return [*g.headers, (b"authorization", auth.encode())]


def _outcome(f, *args) -> str:   # noqa: ANN001 - a string to sign, or the refusal's kind
    try:
        return f(*args)
    except SignatureError as err:
        return "refused: " + err.kind


def _botocore_signature(pending: Pending, string_to_sign: str) -> str:
    """The signature botocore's own signer makes of a string to sign (its key derivation, not the verifier's)."""
    request = AWSRequest(method="POST", url="http://lamina/")
    request.context["timestamp"] = pending.date
    return SigV4Auth(Credentials(OWNER.access_key_id, OWNER.secret_access_key), pending.service,
                     pending.region).signature(string_to_sign, request)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests())
@example(Generated("POST", b"/2015-03-31/functions/f/invocations", b"",
                   [(b"host", HOST), (b"x-amz-date", DATE.encode()), (b"content-type", b"application/json")],
                   ["content-type", "host", "x-amz-date"], b'{"n": 1}', None))
@example(Generated("POST", b"/2015-03-31/functions/f%3A1/invocations", b"Qualifier=prod",
                   [(b"x-amz-date", DATE.encode()), (b"host", HOST), (b"user-agent", b"  a \t b  "),
                    (b"user-agent", b"c"), (b"x-amz-content-sha256", b"UNSIGNED-PAYLOAD")],
                   ["host", "user-agent", "x-amz-content-sha256", "x-amz-date"], b"{}", "UNSIGNED-PAYLOAD"))
def test_fast_path_and_botocore_agree(g: Generated) -> None:
    v = verifier()
    headers = _with_auth(g)
    pending = v.head(headers, g.query, now=NOW)
    assert pending is not None
    reference = _outcome(v.reference_string_to_sign, pending, g.method, g.path, g.query, headers, g.body)
    body_hash = hashlib.sha256(g.body).hexdigest()
    if pending.signed.order is None:
        assert any(n != n.lower() for n in g.signed)   # only such lists leave the fast path
    elif g.sha is None or g.sha == body_hash:
        fast = _outcome(v.fast_string_to_sign, pending, g.method, g.path, g.query, headers, body_hash)
        assert fast == reference
    # End to end: signed with botocore's signature of the reference's string, check() takes the request exactly
    # when the reference could make that string and a sent payload hash is the body's.
    signature = "0" * 64 if reference.startswith("refused: ") else _botocore_signature(pending, reference)
    headers = _with_auth(g, signature)
    pending = v.head(headers, g.query, now=NOW)
    outcome = _outcome(lambda: v.check(pending, g.method, g.path, g.query, headers, g.body).account)
    if g.sha is not None and g.sha != body_hash:
        assert outcome == "refused: mismatch"
    elif reference.startswith("refused: "):
        assert outcome == reference
    else:
        assert outcome == "111111111111"
        # Any other signature is refused.
        wrong = _with_auth(g, ("1" if signature[0] == "0" else "0") + signature[1:])
        pending = v.head(wrong, g.query, now=NOW)
        assert _outcome(lambda: v.check(pending, g.method, g.path, g.query, wrong, g.body)) == "refused: mismatch"


@settings(max_examples=150, deadline=None)
@given(headers=st.lists(st.tuples(st.sampled_from(["Content-Type", "X-Amz-Invocation-Type", "User-Agent",
                                                   "X-Amz-Client-Context", "X-Custom"]),
                                  st.lists(st.sampled_from([" ", "a", "B", "0", "=", ";", "\t", "  "]), min_size=1,
                                           max_size=10).map("".join).filter(str.strip)),
                        max_size=4, unique_by=lambda t: t[0]),
       qualifier=st.sampled_from([None, "1", "prod", "$LATEST", "a b"]),
       body=st.binary(max_size=64), content_sha=st.booleans())
def test_what_botocore_signs_verifies(headers: list[tuple[str, str]], qualifier: str | None, body: bytes,
                                      content_sha: bool) -> None:
    """Requests signed by botocore's client signer (as boto3 sends them) verify, through the fast path."""
    params = f"?Qualifier={quote(qualifier, safe='')}" if qualifier is not None else ""
    request = AWSRequest(method="POST", url=f"http://{HOST.decode()}/2015-03-31/functions/f%3A1/invocations{params}",
                         data=body, headers=dict(headers))
    if content_sha:
        request.headers["X-Amz-Content-SHA256"] = hashlib.sha256(body).hexdigest()
    at = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    with mock.patch("botocore.auth.get_current_datetime", return_value=at):
        SigV4Auth(Credentials(OWNER.access_key_id, OWNER.secret_access_key), "lambda", "us-east-1").add_auth(request)
    prepared = request.prepare()
    path, _, query = prepared.url.partition("//")[2].partition("/")[2].partition("?")
    sent = [(k.lower().encode(), v.encode("latin-1") if isinstance(v, str) else v) for k, v in prepared.headers.items()]
    sent.append((b"host", HOST))
    v = verifier()
    with mock.patch.object(Verifier, "reference_string_to_sign", side_effect=AssertionError("not the fast path")):
        caller = v.verify("POST", b"/" + path.encode(), query.encode(), sent, body)
    assert caller.account == "111111111111"


def test_unusual_shapes_take_the_reference() -> None:
    """Signed header names not in lower case (botocore reads a header named exactly X-Amz-Content-SHA256 as the
    payload hash) and presigned URLs are left to botocore's canonical request."""
    v = verifier()
    g = Generated("POST", b"/2015-03-31/functions/f/invocations", b"",
                  [(b"host", HOST), (b"x-amz-date", DATE.encode())], ["host", "X-Amz-Date"], b"{}", None)
    headers = _with_auth(g)
    pending = v.head(headers, b"", now=NOW)
    assert pending is not None and pending.signed.order is None
    with mock.patch.object(Verifier, "fast_string_to_sign", side_effect=AssertionError("fast path taken")), \
            mock.patch.object(Verifier, "reference_string_to_sign", wraps=v.reference_string_to_sign) as reference:
        outcome = _outcome(v.check, pending, g.method, g.path, g.query, headers, g.body)
    assert outcome == "refused: mismatch"   # the request's header names are lower case: "X-Amz-Date" is not there
    assert reference.call_count == 1


def test_a_kept_authorization_head_never_takes_a_malformed_signature() -> None:
    """The part before the signature is kept once matched; the signature itself is checked every time, as the full
    Authorization pattern would: 64 lower-case hex digits, else IncompleteSignature (not a mismatch)."""
    v = verifier()
    g = Generated("POST", b"/2015-03-31/functions/f/invocations", b"",
                  [(b"host", HOST), (b"x-amz-date", DATE.encode())], ["host", "x-amz-date"], b"{}", None)
    assert v.head(_with_auth(g), b"", now=NOW) is not None   # the head is kept from here on
    for bad in ("A" * 64, "0" * 63, "0" * 65, "g" * 64, "0" * 62 + " 0", "0" * 63 + "\n"):
        with pytest.raises(SignatureError) as info:
            v.head(_with_auth(g, bad), b"", now=NOW)
        assert info.value.kind == "incomplete", bad
