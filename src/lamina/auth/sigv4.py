"""SigV4 verification of AWS-API requests: the expected signature is recomputed with botocore's own signing code
(its canonical request and string to sign) and compared with the one sent, in constant time.

Two steps, so that the HTTP hot path can refuse a request before its body arrives: `head()` reads the
Authorization header (or a presigned URL's X-Amz-* query parameters), finds the key, and checks the credential
scope and the clock; `check()` recomputes the signature over the body. The derived signing key (four HMACs) is
cached per key / date / region / service, so a request costs one canonical request, one SHA-256 of the body, one of
the canonical request and one HMAC.

Two ways to the canonical request, which must agree: botocore's (`reference_string_to_sign`), the reference and the
only one for presigned URLs and unusual shapes; and a direct one for header-signed requests
(`fast_string_to_sign`, every Invoke a client sends), which builds the same string from the raw request without
botocore's request objects (botocore's costs more than the rest of an Invoke's verification together: issue 20's
+50 us budget). The direct one takes botocore's canonical URI and query from botocore itself (kept per raw path and
query); tests/unit/test_sigv4_fast.py checks on generated requests that both give the same string to sign.

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
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import unquote, urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from lamina.auth.keys import Caller, ExpiredToken, KeyTable

if TYPE_CHECKING:
    from hashlib import _Hash

ALGORITHM = "AWS4-HMAC-SHA256"
SKEW_SECONDS = 300          # AWS's clock-skew window
MAX_PRESIGN_SECONDS = 7 * 24 * 3600
# Signing names of the APIs Lamina serves (botocore's service models' signingName).
SERVICES = frozenset({"lambda", "sqs", "ec2", "logs", "events", "scheduler"})
_AUTH = re.compile(r"AWS4-HMAC-SHA256\s+Credential=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-f]{64})$")
_IPAD = bytes(x ^ 0x36 for x in range(256))   # HMAC's key pads, as translate() tables
_OPAD = bytes(x ^ 0x5C for x in range(256))
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


class SignedHeaders(NamedTuple):
    """A SignedHeaders list, parsed once per distinct list."""

    names: list[str]                     # as sent, lower case
    wanted: frozenset[bytes]
    # For the direct canonical request: the names in botocore's (sorted) order with their "name:" prefixes, and
    # botocore's signed-header list; None when a name is not lower case (botocore treats a signed header named
    # exactly "X-Amz-Content-SHA256" specially): such requests take the reference.
    order: tuple[tuple[bytes, str], ...] | None
    listed: str | None


@dataclass(slots=True)
class Pending:
    """A request whose head passed: what check() needs once the body is in."""

    caller: Caller
    secret: str
    date: str           # X-Amz-Date
    region: str
    service: str
    signed: SignedHeaders
    signature: str
    mac: tuple[_Hash, _Hash]   # the signing key's HMAC-SHA256 inner and outer hashes, to copy (Verifier._mac)
    presigned: bool
    content_sha256: str | None


class _Headers(dict):
    """The signed headers, lower-cased name -> values, in the shape botocore's canonical_headers reads."""

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

    def url_parts(self, url: str) -> tuple[str, str]:
        """botocore's canonical URI and canonical query string of a URL."""
        return (self._normalize_url_path(urlsplit(url).path),
                self.canonical_query_string(_Request("GET", url, _Headers(), b"", {})))

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
        self._open = not always and not keys.configured   # keys are fixed at start-up
        self.region = region
        self.default = Caller(default_account, f"arn:aws:iam::{default_account}:root", "")
        self.skew = skew
        self._signers: dict[tuple[str, str], _Canonical] = {}
        # The derived signing key per key / date / region / service, as HMAC-SHA256's keyed hashes (Verifier._mac).
        self._macs: dict[tuple[str, str, str, str], tuple[_Hash, _Hash]] = {}
        # Per-request parsing that repeats: an Authorization header's part before the signature, a configured key's
        # checked credential scope, signed-header lists, the last X-Amz-Date parsed (clients sign many requests in
        # the same second), botocore's canonical URI and query string per raw path and query.
        self._auth_heads: dict[str, tuple[str, str]] = {}
        self._scopes: dict[str, tuple[Caller, str, str, str, str, tuple[_Hash, _Hash]]] = {}
        self._signed_lists: dict[str, SignedHeaders] = {}
        self._last_date: tuple[str, float] = ("", 0.0)
        self._url_parts: dict[tuple[bytes, bytes], tuple[str, str]] = {}

    @property
    def open(self) -> bool:
        """No keys configured (and not `always`): every request is accepted as the default account."""
        return self._open

    # ------------------------------------------------------------------ head

    def head(self, headers: list[tuple[bytes, bytes]], query: bytes, now: float | None = None) -> Pending | None:
        """Check what the head carries; None when the verifier is open. Raises SignatureError."""
        if self._open:
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
            credential, signed_list, signature = self._authorization(auth)
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
        if token is None:   # a configured key's scope checks hold for the whole day: kept, with its signing key
            scope = self._scopes.get(credential)
            if scope is None:
                caller, secret, day, region, service = self._scope(credential, None, now)
                scope = (caller, secret, day, region, service, self._mac(secret, day, region, service))
                if len(self._scopes) > 4096:
                    self._scopes.clear()
                self._scopes[credential] = scope
        else:               # function credentials: their expiry is checked every time
            caller, secret, day, region, service = self._scope(credential, token, now)
            scope = (caller, secret, day, region, service, self._mac(secret, day, region, service))
        caller, secret, day, region, service, mac = scope
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
            signed = _signed_headers(names)
            if len(self._signed_lists) > 1024:
                self._signed_lists.clear()
            self._signed_lists[signed_list] = signed
        return Pending(caller, secret, date, region, service, signed, signature, mac, presigned, sha)

    def _authorization(self, auth: str) -> tuple[str, str, str]:
        """(credential, signed header list, signature) of an Authorization header; raises SignatureError. What comes
        before the signature is the same in every request a client signs that day: matched by _AUTH once and kept
        (with a well-formed signature, _AUTH's last group is exactly what follows the last 'Signature=')."""
        head, sep, signature = auth.rpartition("Signature=")
        kept = self._auth_heads.get(head) if sep and len(signature) == 64 else None
        if kept is not None:
            try:   # 64 lower-case hex digits, as _AUTH's last group takes (the regex engine costs more, cold)
                if bytes.fromhex(signature).hex() == signature:
                    return kept[0], kept[1], signature
            except ValueError:
                pass
        m = _AUTH.match(auth.strip())
        if m is None:
            if not auth.startswith(ALGORITHM):
                raise SignatureError("incomplete", f"Authorization header requires existence of either a "
                                     f"'X-Amz-Date' or a 'Date' header. Authorization={auth[:64]}")
            raise SignatureError("incomplete", "Authorization header requires 'Credential', 'Signature' and "
                                 f"'SignedHeaders' parameters. Authorization={auth[:64]}")
        credential, signed_list, signature = m.groups()
        if len(self._auth_heads) > 1024:
            self._auth_heads.clear()
        self._auth_heads[head] = (credential, signed_list)
        return credential, signed_list, signature

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
        if pending.presigned:
            string_to_sign = self.reference_string_to_sign(pending, method, raw_path, query, headers, body)
        else:
            payload_hash = sha256(body).hexdigest()
            sha = pending.content_sha256
            # A sent payload hash must be the body's (UNSIGNED-PAYLOAD is S3's, not taken here: the body is always
            # signed); so the body's hash is the payload's either way.
            if sha is not None and not hmac.compare_digest(sha, payload_hash):
                err = SignatureError("mismatch", "The provided 'x-amz-content-sha256' header does not match what "
                                     "was computed.")
                err.service = pending.service
                raise err
            if pending.signed.order is not None:
                string_to_sign = self.fast_string_to_sign(pending, method, raw_path, query, headers, payload_hash)
            else:
                string_to_sign = self.reference_string_to_sign(pending, method, raw_path, query, headers, body)
        # HMAC-SHA256 (RFC 2104) from the key's two keyed hashes, copied: hmac's own copy() costs twice as much in the
        # server (Python layers around OpenSSL's HMAC context; issue 20's measurements), the result is the same.
        inner = pending.mac[0].copy()
        inner.update(string_to_sign.encode())
        outer = pending.mac[1].copy()
        outer.update(inner.digest())
        if not hmac.compare_digest(outer.hexdigest(), pending.signature):
            err = SignatureError("mismatch", MISMATCH)
            err.service = pending.service
            raise err
        return pending.caller

    def fast_string_to_sign(self, pending: Pending, method: str, raw_path: bytes, query: bytes,
                            headers: list[tuple[bytes, bytes]], payload_hash: str) -> str:
        """The string to sign of a header-signed request whose signed header names are lower case, built directly:
        what reference_string_to_sign gives, given the body's SHA-256 (hex)."""
        order = pending.signed.order
        assert order is not None and not pending.presigned
        wanted = pending.signed.wanted
        values: dict[bytes, str] = {}
        for name, value in headers:
            if name in wanted:
                trimmed = " ".join(value.decode("latin-1").split())   # botocore's _header_value, of the same str
                seen = values.get(name)
                values[name] = trimmed if seen is None else seen + "," + trimmed
        if len(values) != len(wanted):
            err = SignatureError("mismatch", MISMATCH)   # a signed header is not there
            err.service = pending.service
            raise err
        parts = self._url_parts.get((raw_path, query))
        if parts is None:
            parts = self._signer(pending).url_parts(_url(raw_path, query))
            if len(self._url_parts) > 4096:
                self._url_parts.clear()
            self._url_parts[(raw_path, query)] = parts
        canonical_headers = "\n".join([prefix + values[name] for name, prefix in order])
        canonical = (f"{method.upper()}\n{parts[0]}\n{parts[1]}\n{canonical_headers}\n\n{pending.signed.listed}\n"
                     f"{payload_hash}")
        return (f"{ALGORITHM}\n{pending.date}\n{pending.date[:8]}/{pending.region}/{pending.service}/aws4_request\n"
                f"{sha256(canonical.encode()).hexdigest()}")

    def reference_string_to_sign(self, pending: Pending, method: str, raw_path: bytes, query: bytes,
                                 headers: list[tuple[bytes, bytes]], body: bytes) -> str:
        """The string to sign by botocore's SigV4 signer (its canonical request), over the headers the client
        signed. For a header-signed request, a sent payload hash must have been checked against the body."""
        if pending.presigned:
            query = b"&".join(p for p in query.split(b"&") if not p.startswith(b"X-Amz-Signature="))
        wanted = pending.signed.wanted
        signed = _Headers()
        for name, value in headers:
            if name in wanted:
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
        if pending.content_sha256 is not None and not pending.presigned:
            context["content_sha256"] = pending.content_sha256
        request = _Request(method, _url(raw_path, query), signed, body, context)
        signer = self._signer(pending)
        return signer.string_to_sign(request, signer.canonical_request(request))

    def _signer(self, p: Pending) -> _Canonical:
        signer = self._signers.get((p.region, p.service))
        if signer is None:
            signer = _Canonical(Credentials("-", "-"), p.service, p.region)
            self._signers[(p.region, p.service)] = signer
        return signer

    def _mac(self, secret: str, day: str, region: str, service: str) -> tuple[_Hash, _Hash]:
        """The derived signing key (botocore's derivation: four HMACs) as HMAC-SHA256's inner and outer hashes of
        the padded key, to copy for each request."""
        cache_key = (secret, day, region, service)
        mac = self._macs.get(cache_key)
        if mac is None:
            if len(self._macs) > 4096:   # dates roll over; function credentials come and go
                self._macs.clear()
            key = ("AWS4" + secret).encode()
            for part in (day, region, service, "aws4_request"):
                key = hmac.new(key, part.encode(), sha256).digest()
            key = key.ljust(64, b"\0")   # SHA-256's block size; the derived key is 32 bytes
            mac = (sha256(key.translate(_IPAD)), sha256(key.translate(_OPAD)))
            self._macs[cache_key] = mac
        return mac

    def verify(self, method: str, raw_path: bytes, query: bytes, headers: list[tuple[bytes, bytes]],
               body: bytes, now: float | None = None) -> Caller:
        """head() and check() in one step."""
        return self.check(self.head(headers, query, now), method, raw_path, query, headers, body)


def _signed_headers(names: list[str]) -> SignedHeaders:
    wanted = frozenset(n.encode("latin-1") for n in names)
    if any(n != n.lower() for n in names):
        return SignedHeaders(names, wanted, None, None)
    unique = sorted(set(names))   # botocore's order: sorted names (the same order as their latin-1 bytes)
    return SignedHeaders(names, wanted, tuple((n.encode("latin-1"), n + ":") for n in unique),
                         ";".join(sorted(n.lower().strip() for n in unique)))


def _url(raw_path: bytes, query: bytes) -> str:
    """The URL botocore's signer reads a request's path and query from (the host is not part of either)."""
    return "http://lamina" + raw_path.decode("latin-1") + ("?" + query.decode("latin-1") if query else "")


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
