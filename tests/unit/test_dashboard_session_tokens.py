"""The dashboard's sign-in tokens (gateway/http/dashboard/login.py): issued only for a configured key pair, refused
when tampered with, expired, signed by another server, or when their key is removed or its secret changes."""

from __future__ import annotations

import base64
import json
import time

from lamina.auth.keys import KeyTable, StaticKey
from lamina.gateway.http.dashboard.login import DashboardLogin

KEY = StaticKey("AKIDDASHBOARD", "s3cret-s3cret", "123456789012", "arn:aws:iam::123456789012:user/ops")
SECRET = b"\x01" * 32


def login(keys: list[StaticKey] | None = None, secret: bytes = SECRET, seconds: int = 3600) -> DashboardLogin:
    return DashboardLogin(KeyTable([KEY] if keys is None else keys, secret), secret, seconds)


def test_open_server_needs_no_sign_in() -> None:
    assert not login([]).required
    assert login().required


def test_only_the_configured_pair_signs_in() -> None:
    board = login()
    assert board.sign_in(KEY.access_key_id, "wrong") is None
    assert board.sign_in(KEY.access_key_id, "") is None
    assert board.sign_in("AKIDUNKNOWN", KEY.secret_access_key) is None
    token = board.sign_in(KEY.access_key_id, KEY.secret_access_key)
    assert token is not None
    session = board.session(token)
    assert session is not None and session.access_key_id == KEY.access_key_id and session.principal == KEY.principal


def test_tampered_tokens_are_refused() -> None:
    board = login()
    token = board.sign_in(KEY.access_key_id, KEY.secret_access_key)
    assert token is not None
    head, payload, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["exp"] += 10 ** 6   # a longer session, with the signature left as it was
    longer = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert board.session(f"{head}.{longer}.{sig}") is None
    flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
    assert board.session(f"{head}.{payload}.{flipped}") is None
    assert board.session("not-a-token") is None and board.session("") is None and board.session(None) is None
    none_alg = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    assert board.session(f"{none_alg}.{payload}.") is None


def test_expired_tokens_are_refused() -> None:
    board = login(seconds=60)
    old = board.sign_in(KEY.access_key_id, KEY.secret_access_key, now=time.time() - 120)
    assert old is not None and board.session(old) is None
    fresh = board.sign_in(KEY.access_key_id, KEY.secret_access_key)
    assert fresh is not None and board.session(fresh) is not None
    assert board.session(fresh, now=time.time() + 61) is None


def test_another_servers_or_a_rotated_keys_tokens_are_refused() -> None:
    token = login().sign_in(KEY.access_key_id, KEY.secret_access_key)
    assert token is not None
    assert login(secret=b"\x02" * 32).session(token) is None
    rotated = StaticKey(KEY.access_key_id, "new-secret", KEY.account_id, KEY.principal)
    assert login([rotated]).session(token) is None
    other = StaticKey("AKIDOTHER", "x", KEY.account_id, KEY.principal)
    assert login([other]).session(token) is None
