"""SigV4 verification of AWS-API requests: the expected signature is recomputed with botocore's own signing code
(its canonical request and string to sign) and compared with the one sent, in constant time.

Two steps, so that the HTTP hot path can refuse a request before its body arrives: `head()` reads the
Authorization header (or a presigned URL's X-Amz-* query parameters), finds the key, and checks the credential
scope and the clock; `check()` recomputes the signature over the body. The derived signing key (four HMACs) is
cached per key / date / region / service, so a request costs one canonical request, one SHA-256 of the body and one
HMAC.

With no keys configured the verifier is *open*: every request is accepted as the default account, signed or not
(what `make run` on loopback offers; server start-up refuses an open verifier on any other address).
"""

from __future__ import annotations

import calendar
import hmac
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from hashlib import sha256
from urllib.parse import unquote

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from lamina.auth.keys import Caller, ExpiredToken, KeyTable

ALGORITHM = "AWS4-HMAC-SHA256"
SKEW_SECONDS = 300          # AWS's clock-skew window
MAX_PRESIGN_SECONDS = 7 * 24 * 3600
# Signing names of the APIs Lamina serves (botocore's service models' signingName).
SERVICES = frozenset({"lambda", "sqs", "ec2", "logs", "events", "scheduler"})
_AUTH = re.compile(r"AWS4-HMAC-SHA256\s+Credential=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]{64})$")
_AMZ_DATE = "%Y%m%dT%H%M%SZ"


class SignatureError(Exception):
    """A request the verifier refuses. `kind` is protocol-neutral; errors.py renders it in each API's shape."""

    def __init__(self, kind: str, message: str, service: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind    # missing | incomplete | unknown_key | expired_token | mismatch | expired | scope | denied
        self.message = message
        self.service = service


MISMATCH = ("The request signature we calculated does not match the signature you provided. Check your AWS Secret "
            "Access Key and signing method. Consult the service documentation for details.")


@dataclass(slots=True)
class Pending:
    """A request whose head passed: what check() needs once the body is in."""

    caller: Caller
    secret: str
    date: str           # X-Amz-Date
    region: str
    service: str
    signed: tuple[list[str], frozenset[bytes]]   # signed header names, lower case, as sent (and as bytes)
    signature: str
    presigned: bool
    content_sha256: str | None


class _Headers(dict):
    """The signed headers, lower-cased name -> values, in the shape botocore's canonical_headers reads; with the
    canonical forms botocore made of them, once made (kept for the same headers: see Verifier.check)."""

    canonical: str | None = None
    names: str | None = None

    def get_all(self, name: str) -> list[str]:
        return self[name]


class _Request:
    """The parts of a botocore AWSRequest its canonical request reads, without building one (an AWSRequest's
    email.message headers cost more than the rest of the verification together)."""

    __slots__ = ("method", "url", "headers", "params", "context", "data")

    def __init__(self, method: str, url: str, headers: _Headers, data: bytes, context: dict) -> None:
        self.method = method
        self.url = url
        self.headers = headers
        self.params: dict = {}
        self.context = context
        self.data = data


class _Canonical(SigV4Auth):
    """botocore's SigV4 signer, computing the canonical request over exactly the headers the client signed (botocore
    leaves some out when it signs, such as User-Agent; a verifier must take the client's list as given)."""

    def __init__(self, credentials: Credentials, service_name: str, region_name: str) -> None:
        super().__init__(credentials, service_name, region_name)
        self._paths: dict[str, str] = {}

    def _normalize_url_path(self, path: str) -> str:
        # botocore's (dot segments removed, quoted again), kept per path: the same few paths come again and again
        normalized = self._paths.get(path)
        if normalized is None:
            normalized = super()._normalize_url_path(path)
            if len(self._paths) > 4096:
                self._paths.clear()
            self._paths[path] = normalized
        return normalized

    def headers_to_sign(self, request: AWSRequest) -> _Headers:
        return request.headers  # _Request's: the signed headers only

    def canonical_headers(self, headers_to_sign: _Headers) -> str:
        if headers_to_sign.canonical is None:
            headers_to_sign.canonical = super().canonical_headers(headers_to_sign)
        return headers_to_sign.canonical

    def signed_headers(self, headers_to_sign: _Headers) -> str:
        if headers_to_sign.names is None:
            headers_to_sign.names = super().signed_headers(headers_to_sign)
        return headers_to_sign.names

    def payload(self, request: AWSRequest) -> str:
        sha = request.context.get("content_sha256")
        if sha is not None:
            return sha          # as botocore: a sent X-Amz-Content-SHA256 is the payload's hash
        # request.data: the bytes as they came, without botocore preparing the request again
        return sha256(request.data or b"").hexdigest()


class Verifier:
    def __init__(self, keys: KeyTable, region: str, default_account: str, skew: float = SKEW_SECONDS,
                 always: bool = False) -> None:
        self.keys = keys
        # Verify even with no keys configured (then only the credentials issued to functions verify): requests
        # from functions' networks (server.py).
        self.always = always
        self.region = region
        self.default = Caller(default_account, f"arn:aws:iam::{default_account}:root", "")
        self.skew = skew
        self._signers: dict[tuple[str, str], _Canonical] = {}
        self._signing_keys: dict[tuple[str, str, str, str], bytes] = {}
        # Per-request parsing that repeats: a configured key's checked credential scope, signed-header lists, the
        # last X-Amz-Date parsed (clients sign many requests in the same second).
        self._scopes: dict[str, tuple[Caller, str, str, str, str]] = {}
        self._signed_lists: dict[str, tuple[list[str], frozenset[bytes]]] = {}
        self._last_date: tuple[str, float] = ("", 0.0)
        self._canonical_headers: dict[tuple[frozenset[bytes], tuple[tuple[bytes, bytes], ...]],
                                      tuple[str | None, str | None]] = {}

    @property
    def open(self) -> bool:
        """No keys configured (and not `always`): every request is accepted as the default account."""
        return not self.always and not self.keys.configured

    # ------------------------------------------------------------------ head

    def head(self, headers: list[tuple[bytes, bytes]], query: bytes, now: float | None = None) -> Pending | None:
        """Check what the head carries; None when the verifier is open. Raises SignatureError."""
        if self.open:
            return None
        auth = token = date = sha = None
        for name, value in headers:
            if name == b"authorization":
                auth = value.decode("latin-1")
            elif name == b"x-amz-date":
                date = value.decode("latin-1")
            elif name == b"x-amz-security-token":
                token = value.decode("latin-1")
            elif name == b"x-amz-content-sha256":
                sha = value.decode("latin-1")
        presigned = False
        if auth is not None:
            m = _AUTH.match(auth.strip())
            if m is None:
                if not auth.startswith(ALGORITHM):
                    raise SignatureError("incomplete", f"Authorization header requires existence of either a "
                                         f"'X-Amz-Date' or a 'Date' header. Authorization={auth[:64]}")
                raise SignatureError("incomplete", "Authorization header requires 'Credential', 'Signature' and "
                                     f"'SignedHeaders' parameters. Authorization={auth[:64]}")
            credential, signed_list, signature = m.groups()
            expires = None
        elif b"X-Amz-Signature=" in query:
            params = _query_params(query)
            presigned = True
            if params.get("X-Amz-Algorithm") != ALGORITHM:
                raise SignatureError("incomplete", "X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\"")
            try:
                credential = params["X-Amz-Credential"]
                signed_list = params["X-Amz-SignedHeaders"]
                signature = params["X-Amz-Signature"]
                date = params["X-Amz-Date"]
                expires = int(params.get("X-Amz-Expires", "0"))
            except (KeyError, ValueError):
                raise SignatureError("incomplete", "AWS query-string parameters must include 'X-Amz-Algorithm', "
                                     "'X-Amz-Credential', 'X-Amz-Signature', 'X-Amz-Date', 'X-Amz-SignedHeaders', "
                                     "'X-Amz-Expires'. Re-examine the query-string parameters.") from None
            token = params.get("X-Amz-Security-Token", token)
        else:
            raise SignatureError("missing", "Missing Authentication Token")
        if date is None:
            raise SignatureError("incomplete", "Authorization header requires existence of either a 'X-Amz-Date' or "
                                 "a 'Date' header.")
        if token is None:   # a configured key's scope checks hold for the whole day: kept
            scope = self._scopes.get(credential)
            if scope is None:
                scope = self._scope(credential, None, now)
                if len(self._scopes) > 4096:
                    self._scopes.clear()
                self._scopes[credential] = scope
        else:               # function credentials: their expiry is checked every time
            scope = self._scope(credential, token, now)
        caller, secret, day, region, service = scope
        last = self._last_date
        if last[0] == date:
            signed_at = last[1]
        else:
            try:
                signed_at = _parse_amz_date(date)
            except ValueError:
                raise SignatureError("incomplete", f"Date must be in ISO-8601 'basic format'. Got '{date}'.") from None
            self._last_date = (date, signed_at)
        if day != date[:8]:
            raise SignatureError("scope", f"Credential should be scoped to a valid date: '{date[:8]}'.")
        now = time.time() if now is None else now
        if presigned:
            assert expires is not None
            if not 0 < expires <= MAX_PRESIGN_SECONDS:
                raise SignatureError("incomplete", "X-Amz-Expires must be between 1 and 604800 seconds")
            if now > signed_at + expires or signed_at > now + self.skew:
                err = SignatureError("expired", f"Signature expired: {date} is now earlier than "
                                     f"{_stamp(now - expires)} ({_stamp(now)} - {expires} sec.)")
                err.service = service
                raise err
        elif abs(now - signed_at) > self.skew:
            err = SignatureError("expired", f"Signature expired: {date} is now earlier than {_stamp(now - self.skew)} "
                                 f"({_stamp(now)} - 5 min.)")
            err.service = service
            raise err
        signed = self._signed_lists.get(signed_list)
        if signed is None:
            names = signed_list.split(";")
            if "host" not in names:
                raise SignatureError("incomplete", "'Host' must be a 'SignedHeader' in the AWS Authorization.")
            signed = (names, frozenset(n.encode("latin-1") for n in names))
            if len(self._signed_lists) > 1024:
                self._signed_lists.clear()
            self._signed_lists[signed_list] = signed
        return Pending(caller, secret, date, region, service, signed, signature, presigned, sha)

    def _scope(self, credential: str, token: str | None, now: float | None
               ) -> tuple[Caller, str, str, str, str]:
        """(caller, secret, day, region, service) of a credential scope, checked; raises SignatureError."""
        parts = credential.split("/")
        if len(parts) != 5 or parts[4] != "aws4_request":
            raise SignatureError("incomplete", f"Credential should be scoped to a valid region. ({credential})")
        access_key, day, region, service, _ = parts
        try:
            found = self.keys.lookup(access_key, token, now)
        except ExpiredToken:
            raise SignatureError("expired_token", "The security token included in the request is expired",
                                 service) from None
        if found is None:
            raise SignatureError("unknown_key", "The security token included in the request is invalid.", service)
        if region != self.region:
            raise SignatureError("scope", f"Credential should be scoped to a valid region, not '{region}'. ", service)
        if service not in SERVICES:
            raise SignatureError("scope", f"Credential should be scoped to correct service: '{service}'. ", service)
        return found[0], found[1], day, region, service

    # ------------------------------------------------------------------ body

    def check(self, pending: Pending | None, method: str, raw_path: bytes, query: bytes,
              headers: list[tuple[bytes, bytes]], body: bytes) -> Caller:
        """Recompute the signature over the whole request; the caller, or SignatureError."""
        if pending is None:
            return self.default
        sha = pending.content_sha256
        # A sent payload hash must be the body's (UNSIGNED-PAYLOAD is S3's, not taken here: the body is always signed).
        if sha is not None and not pending.presigned and not hmac.compare_digest(sha, sha256(body).hexdigest()):
            err = SignatureError("mismatch", "The provided 'x-amz-content-sha256' header does not match what was "
                                 "computed.")
            err.service = pending.service
            raise err
        signer = self._signers.get((pending.region, pending.service))
        if signer is None:
            signer = _Canonical(Credentials("-", "-"), pending.service, pending.region)
            self._signers[(pending.region, pending.service)] = signer
        if pending.presigned:
            query = b"&".join(p for p in query.split(b"&") if not p.startswith(b"X-Amz-Signature="))
        url = "http://lamina" + raw_path.decode("latin-1") + ("?" + query.decode("latin-1") if query else "")
        wanted = pending.signed[1]
        # The same signed headers (a client's requests within one second share X-Amz-Date) canonicalize alike:
        # botocore's canonical headers and signed-header list are kept for them.
        picked = tuple([pair for pair in headers if pair[0] in wanted])
        signed = _Headers()
        kept = self._canonical_headers.get((wanted, picked))
        if kept is not None:
            signed.canonical, signed.names = kept
        else:
            for name, value in picked:
                lname = name.decode("latin-1")
                values = signed.get(lname)
                if values is None:
                    signed[lname] = [value.decode("latin-1")]
                else:
                    values.append(value.decode("latin-1"))
            if len(signed) != len(wanted):
                err = SignatureError("mismatch", MISMATCH)   # a signed header is not there
                err.service = pending.service
                raise err
        context = {"timestamp": pending.date, "presigned": pending.presigned}
        if sha is not None and not pending.presigned:
            context["content_sha256"] = sha
        request = _Request(method, url, signed, body, context)
        string_to_sign = signer.string_to_sign(request, signer.canonical_request(request))
        if kept is None:
            if len(self._canonical_headers) > 1024:
                self._canonical_headers.clear()
            self._canonical_headers[(wanted, picked)] = (signed.canonical, signed.names)
        key = self._signing_key(pending)
        expected = hmac.digest(key, string_to_sign.encode(), "sha256").hex()
        if not hmac.compare_digest(expected, pending.signature):
            err = SignatureError("mismatch", MISMATCH)
            err.service = pending.service
            raise err
        return pending.caller

    def _signing_key(self, p: Pending) -> bytes:
        cache_key = (p.secret, p.date[:8], p.region, p.service)
        key = self._signing_keys.get(cache_key)
        if key is None:
            if len(self._signing_keys) > 4096:   # dates roll over; function credentials come and go
                self._signing_keys.clear()
            key = ("AWS4" + p.secret).encode()
            for part in (p.date[:8], p.region, p.service, "aws4_request"):
                key = hmac.new(key, part.encode(), sha256).digest()
            self._signing_keys[cache_key] = key
        return key

    def verify(self, method: str, raw_path: bytes, query: bytes, headers: list[tuple[bytes, bytes]],
               body: bytes, now: float | None = None) -> Caller:
        """head() and check() in one step."""
        return self.check(self.head(headers, query, now), method, raw_path, query, headers, body)


def _parse_amz_date(date: str) -> float:
    """YYYYMMDDTHHMMSSZ as unix seconds (strptime costs ten times more)."""
    if len(date) != 16 or date[8] != "T" or date[15] != "Z" or not (date[:8] + date[9:15]).isdigit():
        raise ValueError(date)
    return calendar.timegm((int(date[:4]), int(date[4:6]), int(date[6:8]), int(date[9:11]), int(date[11:13]),
                            int(date[13:15]), 0, 0, 0))


def _query_params(query: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in query.decode("latin-1").split("&"):
        name, _, value = pair.partition("=")
        if name.startswith("X-Amz-"):
            out[name] = unquote(value)
    return out


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime(_AMZ_DATE)
