"""The dashboard's sign-in when the server has access keys configured: a browser cannot sign requests with SigV4, so
the operator signs in once with an access key pair (checked against the configured keys in constant time) and gets
a session cookie.

The cookie is a JWT (PyJWT, HS256): the access key id, a fingerprint of that key's secret and an expiry, signed with
a key derived from the server's secret (auth/keys.server_secret, kept in the data directory). A session ends when it
expires, when the operator signs out, or when its access key is removed or its secret changes (the fingerprint no
longer matches). The cookie is HttpOnly, SameSite=Strict and scoped to the dashboard's path.

The dashboard shows the server's own account (the operator's view of the host), so only that account's keys sign
in; another account's key is refused like a wrong one.

With no keys configured (the loopback-only open mode) there is no sign-in: the dashboard is open, as the API is."""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass

import jwt

from lamina.auth.keys import KeyTable

COOKIE = "lamina_dashboard"
SESSION_SECONDS = 12 * 3600
_ALGORITHM = "HS256"


@dataclass(frozen=True, slots=True)
class Session:
    access_key_id: str
    principal: str
    expires: int


class DashboardLogin:
    def __init__(self, keys: KeyTable, server_secret: bytes, seconds: int = SESSION_SECONDS,
                 account: str | None = None) -> None:
        self.keys = keys
        self.seconds = seconds
        self.account = account   # whose keys sign in (None: any configured key)
        # Its own key, so a session token can never pass for another of the server's MACs (function credentials).
        self._key = hmac.new(server_secret, b"lamina dashboard session", hashlib.sha256).digest()

    @property
    def required(self) -> bool:
        """Sign-in is needed: the server has access keys (else it is open on loopback, the dashboard too)."""
        return self.keys.configured

    def _mine(self, account: str) -> bool:
        return self.account is None or account == self.account

    def _fingerprint(self, secret: str) -> str:
        return hmac.new(self._key, b"secret:" + secret.encode(), hashlib.sha256).hexdigest()[:32]

    def sign_in(self, access_key_id: str, secret_access_key: str, now: float | None = None) -> str | None:
        """A session token for a configured key pair, else None. The secret is compared in constant time, and an
        unknown key id costs the same comparison, so timing tells neither."""
        found = self.keys.static.get(access_key_id)
        expected = found[1] if found is not None else "\0" * 40
        same = hmac.compare_digest(secret_access_key.encode(), expected.encode())
        if found is None or not same or not self._mine(found[0].account):
            return None
        issued = int(time.time() if now is None else now)
        claims = {"sub": access_key_id, "fp": self._fingerprint(expected), "iat": issued, "exp": issued + self.seconds}
        return jwt.encode(claims, self._key, algorithm=_ALGORITHM)

    def session(self, token: str | None, now: float | None = None) -> Session | None:
        """The session a cookie holds, if it is genuine, unexpired and its key is still configured with the same
        secret; else None."""
        if not token:
            return None
        try:
            claims = jwt.decode(token, self._key, algorithms=[_ALGORITHM], options={"require": ["sub", "exp"]},
                                leeway=0)
        except jwt.InvalidTokenError:
            return None
        if now is not None and now >= claims["exp"]:   # (tests pass a time; PyJWT checks exp against the clock)
            return None
        found = self.keys.static.get(str(claims["sub"]))
        if found is None or not self._mine(found[0].account) or not hmac.compare_digest(
                str(claims.get("fp", "")), self._fingerprint(found[1])):
            return None
        return Session(str(claims["sub"]), found[0].principal, int(claims["exp"]))
