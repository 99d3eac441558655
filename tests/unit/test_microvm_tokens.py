"""MicroVM endpoint tokens: issue, verify, and every way a token must be refused."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import jwt
import pytest

from lamina.microvm.tokens import TokenError, TokenSigner, load_secret, port_ranges

MVM = "mvm-11111111-2222-3333-4444-555555555555"


@pytest.fixture
def signer(tmp_path: Path) -> TokenSigner:
    return TokenSigner(load_secret(tmp_path))


def test_secret_is_private_and_stable(tmp_path: Path) -> None:
    first = load_secret(tmp_path)
    assert len(first) == 32 and load_secret(tmp_path) == first
    mode = stat.S_IMODE((tmp_path / "microvm-token.key").stat().st_mode)
    assert mode == 0o600


def test_valid_token_for_port(signer: TokenSigner) -> None:
    token = signer.issue(MVM, port_ranges([{"port": 8080}]), 5)
    claims = signer.verify(token, MVM, 8080)
    assert claims["mvm"] == MVM and claims["exp"] - claims["iat"] == 300 and claims["jti"]


def test_ranges_and_all_ports(signer: TokenSigner) -> None:
    token = signer.issue(MVM, port_ranges([{"range": {"startPort": 3000, "endPort": 3010}}, {"port": 22}]), 1)
    for port in (3000, 3005, 3010, 22):
        signer.verify(token, MVM, port)
    with pytest.raises(TokenError):
        signer.verify(token, MVM, 3011)
    everything = signer.issue(MVM, port_ranges([{"port": 1}, {"allPorts": {}}]), 1)
    signer.verify(everything, MVM, 65535)


def test_wrong_port(signer: TokenSigner) -> None:
    token = signer.issue(MVM, port_ranges([{"port": 8080}]), 5)
    with pytest.raises(TokenError, match="port 5000"):
        signer.verify(token, MVM, 5000)


def test_wrong_port_names_the_allowed_ones(signer: TokenSigner) -> None:
    # A token for 5000 sent without X-aws-proxy-port (so: 8080) must say which header fixes it.
    token = signer.issue(MVM, port_ranges([{"port": 5000}, {"range": {"startPort": 7000, "endPort": 7002}}]), 5)
    with pytest.raises(TokenError) as info:
        signer.verify(token, MVM, 8080)
    assert "does not allow port 8080 (it allows 5000, 7000-7002)" in str(info.value)
    assert "X-aws-proxy-port" in str(info.value)


def test_other_instance(signer: TokenSigner) -> None:
    token = signer.issue("mvm-other", port_ranges([{"allPorts": {}}]), 5)
    with pytest.raises(TokenError, match="another MicroVM"):
        signer.verify(token, MVM, 8080)


def test_expired(signer: TokenSigner) -> None:
    token = signer.issue(MVM, "all", 1, now=time.time() - 120)
    with pytest.raises(TokenError, match="expired"):
        signer.verify(token, MVM, 8080)


def test_expiry_capped_at_sixty_minutes(signer: TokenSigner) -> None:
    claims = signer.verify(signer.issue(MVM, "all", 500), MVM, 1)
    assert claims["exp"] - claims["iat"] == 3600


def test_tampered_and_foreign(signer: TokenSigner, tmp_path: Path) -> None:
    token = signer.issue(MVM, port_ranges([{"port": 8080}]), 5)
    head, body, sig = token.split(".")
    forged_body = jwt.utils.base64url_encode(b'{"mvm":"' + MVM.encode() + b'","ports":"all","exp":9999999999}')
    for bad in (f"{head}.{forged_body.decode()}.{sig}", token[:-2] + ("AA" if token[-2:] != "AA" else "BB"),
                "not-a-token", ""):
        with pytest.raises(TokenError):
            signer.verify(bad, MVM, 8080)
    other = TokenSigner(load_secret(tmp_path / "other"))
    with pytest.raises(TokenError, match="not valid"):
        other.verify(token, MVM, 8080)
    unsigned = jwt.encode({"mvm": MVM, "ports": "all", "exp": int(time.time()) + 60}, key=None, algorithm="none")
    with pytest.raises(TokenError):
        signer.verify(unsigned, MVM, 8080)


def test_missing(signer: TokenSigner) -> None:
    with pytest.raises(TokenError, match="Missing"):
        signer.verify(None, MVM, 8080)


def test_cached_token_still_expires(signer: TokenSigner, monkeypatch: pytest.MonkeyPatch) -> None:
    token = signer.issue(MVM, "all", 1)
    signer.verify(token, MVM, 8080)  # verified once, now cached
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 61)
    with pytest.raises(TokenError, match="expired"):
        signer.verify(token, MVM, 8080)
    with pytest.raises(TokenError, match="another MicroVM"):
        signer.verify(signer.issue("mvm-x", "all", 1, now=real()), MVM, 8080)
