"""Who a request's access key is: the configured keys (access key id -> secret, account, principal) and the
short-lived credentials Lamina issues to functions for their execution role.

Function credentials are stateless: the session token is a MAC'd record (key id, account, role, function, expiry)
under a server secret kept in the data directory, and the secret access key is derived from the token, so any
server sharing that data directory verifies them without a table, and they stop working when they expire.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import orjson

from lamina.auth.policy import check_identity_policy

FUNCTION_CREDENTIALS_SECONDS = 3600   # as Lambda's execution-role sessions: renewed long before they expire
_KEY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


@dataclass(frozen=True, slots=True)
class Caller:
    """The identity a verified request acts as."""

    account: str
    principal: str                # an ARN: arn:aws:iam::ACCOUNT:root / user/NAME / role/NAME
    access_key: str
    function: str | None = None   # function credentials: the function's ARN (their scope)
    # The identity policy the caller is held to (its key's, or its role's); None: its account's everything (a key)
    # or the fixed policy of function credentials (auth/policy.py).
    policy: Mapping | None = None


class ExpiredToken(Exception):
    """Function credentials past their expiry."""


@dataclass(frozen=True)
class StaticKey:
    access_key_id: str
    secret_access_key: str
    account_id: str
    principal: str
    policy: Mapping | None = None


def parse_policy(raw: object, what: str) -> Mapping:
    """An identity policy as configured: a JSON string or a TOML table in IAM's shape; ValueError says what's wrong."""
    if isinstance(raw, str):
        try:
            raw = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"{what}: the policy is not JSON ({exc})") from None
    problem = check_identity_policy(raw)
    if problem is not None:
        raise ValueError(f"{what}: {problem}")
    assert isinstance(raw, Mapping)
    return raw


def parse_roles(entries: list[dict] | str) -> dict[str, Mapping]:
    """Execution roles' identity policies from lamina.toml's [[roles]] tables (arn, policy) or LAMINA_ROLES (a JSON
    list of such objects): role ARN -> policy. A function whose role is here gets credentials held to its policy."""
    if isinstance(entries, str):
        if not entries.strip():
            return {}
        try:
            entries = orjson.loads(entries)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"roles is not a JSON list ({exc})") from None
    if not isinstance(entries, list):
        raise ValueError("roles must be a list of {arn, policy} tables")
    roles: dict[str, Mapping] = {}
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("arn"), str) or "policy" not in entry:
            raise ValueError("each roles entry needs arn and policy")
        unknown = set(entry) - {"arn", "policy"}
        if unknown:
            raise ValueError(f"unknown roles field(s): {', '.join(sorted(unknown))}")
        if not entry["arn"].startswith("arn:aws:iam::") or ":role/" not in entry["arn"]:
            raise ValueError(f"roles arn {entry['arn']!r} is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)")
        roles[entry["arn"]] = parse_policy(entry["policy"], f"role {entry['arn']}")
    return roles


def parse_keys(entries: list[dict] | str, default_account: str) -> list[StaticKey]:
    """Keys from lamina.toml's [[credentials]] tables (access_key_id, secret_access_key, account_id, principal) or
    from LAMINA_CREDENTIALS: 'KEY:SECRET[:ACCOUNT[:PRINCIPAL]]' entries separated by commas or whitespace."""
    rows: list[dict] = []
    if isinstance(entries, str):
        for entry in entries.replace(",", " ").split():
            parts = entry.split(":", 3)
            if len(parts) < 2:
                raise ValueError(f"credentials entry {parts[0]!r} needs KEY:SECRET[:ACCOUNT[:PRINCIPAL]]")
            rows.append(dict(zip(("access_key_id", "secret_access_key", "account_id", "principal"), parts,
                                 strict=False)))
    else:
        rows = list(entries)
    keys = []
    for row in rows:
        if not isinstance(row, dict) or not row.get("access_key_id") or not row.get("secret_access_key"):
            raise ValueError("each credentials entry needs access_key_id and secret_access_key")
        unknown = set(row) - {"access_key_id", "secret_access_key", "account_id", "principal", "policy"}
        if unknown:
            raise ValueError(f"unknown credentials field(s): {', '.join(sorted(unknown))}")
        account = str(row.get("account_id") or default_account)
        if not (len(account) == 12 and account.isdigit()):
            raise ValueError(f"credentials account_id {account!r} is not 12 digits")
        policy = parse_policy(row["policy"], f"key {row['access_key_id']}") if row.get("policy") is not None else None
        keys.append(StaticKey(str(row["access_key_id"]), str(row["secret_access_key"]), account,
                              str(row.get("principal") or f"arn:aws:iam::{account}:root"), policy))
    return keys


class KeyTable:
    def __init__(self, keys: list[StaticKey], server_secret: bytes, roles: Mapping[str, Mapping] | None = None
                 ) -> None:
        self.static = {k.access_key_id: (Caller(k.account_id, k.principal, k.access_key_id, policy=k.policy),
                                         k.secret_access_key)
                       for k in keys}
        self.roles = dict(roles or {})   # role ARN -> its identity policy (function credentials are held to it)
        self._secret = server_secret

    @property
    def configured(self) -> bool:
        return bool(self.static)

    def lookup(self, access_key: str, token: str | None, now: float | None = None) -> tuple[Caller, str] | None:
        """(caller, secret access key) for a key, or None if unknown; raises ExpiredToken."""
        found = self.static.get(access_key)
        if found is not None:
            return found
        if token is None or not access_key.startswith("ASIA"):
            return None
        record = self._open(token)
        if record is None or record.get("k") != access_key:
            return None
        if (time.time() if now is None else now) >= record["e"]:
            raise ExpiredToken(access_key)
        caller = Caller(record["a"], record["r"], access_key, record["f"], self.roles.get(record["r"]))
        return caller, self._derive(token)

    def issue(self, account: str, role: str, function_arn: str, seconds: float = FUNCTION_CREDENTIALS_SECONDS,
              now: float | None = None) -> dict[str, str | int]:
        """Credentials for a function's environment: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN and
        their expiry (unix seconds)."""
        access_key = "ASIA" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(16))
        expires = int((time.time() if now is None else now) + seconds)
        payload = orjson.dumps({"k": access_key, "a": account, "r": role, "f": function_arn, "e": expires})
        mac = hmac.new(self._secret, b"token:" + payload, hashlib.sha256).digest()
        token = _b64(payload) + "." + _b64(mac)
        return {"AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": self._derive(token),
                "AWS_SESSION_TOKEN": token, "Expiration": expires}

    def _open(self, token: str) -> dict | None:
        payload_b64, _, mac_b64 = token.partition(".")
        try:
            payload, mac = _unb64(payload_b64), _unb64(mac_b64)
        except ValueError:
            return None
        want = hmac.new(self._secret, b"token:" + payload, hashlib.sha256).digest()
        if not hmac.compare_digest(want, mac):
            return None
        try:
            record = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return None
        return record if isinstance(record, dict) else None

    def _derive(self, token: str) -> str:
        return _b64(hmac.new(self._secret, b"secret:" + token.encode(), hashlib.sha256).digest())[:40]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise ValueError("bad token") from exc


def server_secret(data_dir: Path) -> bytes:
    """The secret function credentials are MAC'd with: made once per data directory, readable by its owner only."""
    path = data_dir / "credentials.key"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = os.urandom(32)
    tmp = data_dir / f".credentials.key.{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(secret)
    try:
        os.link(tmp, path)   # whole or not at all; a server starting at the same moment keeps the first one's
    except FileExistsError:
        secret = path.read_bytes()
    finally:
        os.unlink(tmp)
    return secret


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def refuse_open_bind(host: str, keys: KeyTable) -> str | None:
    """Why a server must not start (a non-loopback address with no keys configured), or None."""
    if keys.configured or is_loopback(host):
        return None
    return (f"refusing to listen on {host or '0.0.0.0'} with no credentials configured: anyone who reaches the port "
            "could run code on this host. Configure access keys ([[credentials]] in lamina.toml, or "
            "LAMINA_CREDENTIALS=KEY:SECRET[:ACCOUNT[:PRINCIPAL]]), or listen on 127.0.0.1.")
