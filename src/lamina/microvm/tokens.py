"""MicroVM endpoint auth tokens (CreateMicrovmAuthToken): short-lived, port-scoped, signed.

AWS issues a JWE; Lamina issues a JWT signed HS256 with a random per-server secret kept 0600 in the
data directory, so tokens survive a server restart but no other server accepts them. Claims:
`mvm` (the instance), `ports` (a list of [start, end] ranges, or "all"), `exp` (at most 60 minutes
out), `iat` and `jti`.
"""

from __future__ import annotations

import os
import secrets
import time
import uuid
from pathlib import Path

import jwt

ALGORITHM = "HS256"
HEADER = "X-aws-proxy-auth"
MAX_MINUTES = 60
KEY_FILE = "microvm-token.key"
EXPIRED = "The auth token has expired: create a new one with CreateMicrovmAuthToken."


class TokenError(Exception):
    """The token does not grant this request; the message says why (sent back with the 403)."""


def load_secret(data_dir: Path) -> bytes:
    """The server's signing secret, created on first use (readable by the owner only)."""
    path = data_dir / KEY_FILE
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, secret)
    finally:
        os.close(fd)
    return secret


def port_ranges(allowed: list[dict]) -> list[list[int]] | str:
    """The API's allowedPorts (already validated) as the token's `ports` claim."""
    ranges: list[list[int]] = []
    for spec in allowed:
        if "allPorts" in spec:
            return "all"
        if "port" in spec:
            ranges.append([spec["port"], spec["port"]])
        else:
            ranges.append([spec["range"]["startPort"], spec["range"]["endPort"]])
    return ranges


CACHE_SIZE = 4096


class TokenSigner:
    def __init__(self, secret: bytes) -> None:
        self.secret = secret
        # Verified claims by token: checking the signature is most of a proxied request's auth cost,
        # and a client sends the same token many times. Expiry is still checked on every use.
        self._verified: dict[str, dict] = {}

    def issue(self, microvm_id: str, ports: list[list[int]] | str, minutes: int, now: float | None = None) -> str:
        issued = int(now if now is not None else time.time())
        claims = {"mvm": microvm_id, "ports": ports, "iat": issued, "exp": issued + 60 * min(minutes, MAX_MINUTES),
                  "jti": uuid.uuid4().hex}
        return jwt.encode(claims, self.secret, algorithm=ALGORITHM)

    def verify(self, token: str | None, microvm_id: str, port: int) -> dict:
        """The token's claims if it grants `port` on `microvm_id`; TokenError otherwise."""
        if not token:
            raise TokenError(f"Missing {HEADER} header: create a token with CreateMicrovmAuthToken and send it "
                             f"as the {HEADER} header.")
        claims = self._verified.get(token)
        if claims is None:
            try:
                claims = jwt.decode(token, self.secret, algorithms=[ALGORITHM], options={"require": ["exp", "mvm"]})
            except jwt.ExpiredSignatureError:
                raise TokenError(EXPIRED) from None
            except jwt.InvalidTokenError:
                raise TokenError("The auth token is not valid (malformed, or not signed by this server).") from None
            if len(self._verified) >= CACHE_SIZE:
                self._verified.pop(next(iter(self._verified)))
            self._verified[token] = claims
        elif claims["exp"] <= time.time():
            del self._verified[token]
            raise TokenError(EXPIRED)
        if claims.get("mvm") != microvm_id:
            raise TokenError("The auth token was issued for another MicroVM.")
        ports = claims.get("ports")
        if ports != "all" and not (isinstance(ports, list)
                                   and any(isinstance(r, list) and len(r) == 2 and r[0] <= port <= r[1]
                                           for r in ports)):
            raise TokenError(f"The auth token does not allow port {port}{_allowed_text(ports, port)}.")
        return claims


def _allowed_text(ports: object, port: int) -> str:
    # Name what the token does allow: the usual mistake is a missing X-aws-proxy-port (the default is 8080).
    shown = [f"{r[0]}" if r[0] == r[1] else f"{r[0]}-{r[1]}"
             for r in (ports if isinstance(ports, list) else []) if isinstance(r, list) and len(r) == 2]
    if not shown:
        return ""
    return (f" (it allows {', '.join(shown)}): send one of those as the X-aws-proxy-port header, or create a token "
            f"that allows port {port}")
