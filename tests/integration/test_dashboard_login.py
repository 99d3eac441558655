"""The dashboard's sign-in over plain HTTP: on a server with access keys every page, fragment, JSON endpoint and
action needs a session from the sign-in form (a wrong secret, a tampered, forged or expired cookie are refused; the
cookie is HttpOnly, SameSite=Strict, scoped to /lamina/ui; signing out ends it); the API still needs SigV4; a server
with no keys (loopback, open) has an open dashboard and no sign-in."""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest

from helpers import LaminaServer
from lamina.auth.keys import KeyTable, parse_keys
from lamina.gateway.http.dashboard.login import COOKIE, DashboardLogin

pytestmark = pytest.mark.timeout(120)

KEY, SECRET = "AKIDDASHBOARDTEST", "dashboard-secret-key"
OTHER_KEY, OTHER_SECRET = "AKIDANOTHERACCOUNT", "another-accounts-secret"   # of account 222222222222
UI = "/lamina/ui"


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaminaServer]:
    tmp = tmp_path_factory.mktemp("dashboard-login")
    server = LaminaServer(data_dir=tmp / "data", log_path=tmp / "server.log",
                          extra_env={"LAMINA_CREDENTIALS": f"{KEY}:{SECRET}:000000000000,"
                                                                f"{OTHER_KEY}:{OTHER_SECRET}:222222222222"})
    server.start()
    yield server
    server.stop()
    server.kill_leftovers()


def request(endpoint: str, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
    host, port = endpoint.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def sign_in(endpoint: str, secret: str, next_page: str = f"{UI}/", origin: str | None = None):
    form = urlencode({"access_key_id": KEY, "secret_access_key": secret, "next": next_page}).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if origin:
        headers["Origin"] = origin
    return request(endpoint, "POST", f"{UI}/login", form, headers)


def cookie_of(headers: http.client.HTTPMessage) -> str:
    set_cookie = headers["set-cookie"]
    assert set_cookie and set_cookie.startswith(f"{COOKIE}="), headers
    return set_cookie.split(";", 1)[0].split("=", 1)[1]


def with_cookie(token: str) -> dict[str, str]:
    return {"Cookie": f"{COOKIE}={token}"}


def test_everything_needs_a_session(keyed: LaminaServer) -> None:
    status, headers, _ = request(keyed.endpoint, "GET", f"{UI}/functions/x?y=1")
    assert status == 303 and headers["location"] == f"{UI}/login?next=/lamina/ui/functions/x"
    for path in ("/fragments/functions", "/api/stats", "/fragments/events", "/fragments/udp"):
        status, headers, _ = request(keyed.endpoint, "GET", UI + path, headers={"HX-Request": "true"})
        assert status == 401 and headers["hx-redirect"].startswith(f"{UI}/login"), path
    status, _, _ = request(keyed.endpoint, "POST", f"{UI}/microvms/x/suspend", headers={"HX-Request": "true"})
    assert status == 401
    status, _, body = request(keyed.endpoint, "GET", f"{UI}/login")
    assert status == 200 and b'name="secret_access_key"' in body
    status, _, _ = request(keyed.endpoint, "GET", f"{UI}/static/dashboard.css")   # the sign-in page's own style
    assert status == 200


def test_wrong_secret_or_unknown_key_is_refused(keyed: LaminaServer) -> None:
    status, headers, body = sign_in(keyed.endpoint, "not-the-secret")
    assert status == 401 and "set-cookie" not in headers
    assert b"The access key ID or secret access key is not valid." in body
    # An unknown key, and another account's (the dashboard shows the server's own account).
    for key, secret in (("AKIDUNKNOWN", SECRET), (OTHER_KEY, OTHER_SECRET)):
        form = urlencode({"access_key_id": key, "secret_access_key": secret}).encode()
        status, headers, _ = request(keyed.endpoint, "POST", f"{UI}/login", form,
                                     {"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 401 and "set-cookie" not in headers, key


def test_sign_in_session_and_sign_out(keyed: LaminaServer) -> None:
    status, headers, _ = sign_in(keyed.endpoint, SECRET, next_page=f"{UI}/events")
    assert status == 303 and headers["location"] == f"{UI}/events"
    attrs = [a.strip().lower() for a in headers["set-cookie"].split(";")[1:]]
    assert "httponly" in attrs and "samesite=strict" in attrs and "path=/lamina/ui" in attrs
    token = cookie_of(headers)
    status, _, body = request(keyed.endpoint, "GET", f"{UI}/", headers=with_cookie(token))
    assert status == 200 and KEY.encode() in body and b'id="sign-out"' in body
    status, headers, _ = request(keyed.endpoint, "GET", f"{UI}/api/stats", headers=with_cookie(token))
    assert status == 200 and headers["content-type"] == "application/json"
    # The dashboard's cookie is not a way into the API: that still needs a SigV4 signature.
    status, _, _ = request(keyed.endpoint, "GET", "/2015-03-31/functions", headers=with_cookie(token))
    assert status == 403
    status, headers, _ = request(keyed.endpoint, "POST", f"{UI}/logout", headers=with_cookie(token))
    assert status == 303 and headers["location"] == f"{UI}/login"
    assert "max-age=0" in headers["set-cookie"].lower() and cookie_of(headers) in ("", '""')


def test_tampered_forged_and_expired_cookies_are_refused(keyed: LaminaServer) -> None:
    _, headers, _ = sign_in(keyed.endpoint, SECRET)
    token = cookie_of(headers)
    head, payload, sig = token.split(".")
    tampered = f"{head}.{payload}.{sig[:-3]}{'AAA' if not sig.endswith('AAA') else 'BBB'}"
    keys = KeyTable(parse_keys(f"{KEY}:{SECRET}", "000000000000"), b"")
    forged = DashboardLogin(keys, b"\x00" * 32).sign_in(KEY, SECRET)   # signed with another server's secret
    # Expired: issued by this server's own secret (in its data dir) 13 hours ago, so only its age is wrong.
    real = DashboardLogin(keys, (keyed.data_dir / "credentials.key").read_bytes())
    expired = real.sign_in(KEY, SECRET, now=time.time() - 13 * 3600)
    assert real.session(token) is not None   # the same secret verifies the server's genuine cookie
    for bad in (tampered, forged, expired, "garbage"):
        assert bad is not None
        status, headers, _ = request(keyed.endpoint, "GET", f"{UI}/", headers=with_cookie(bad))
        assert status == 303 and headers["location"].startswith(f"{UI}/login"), bad
        status, _, _ = request(keyed.endpoint, "GET", f"{UI}/api/stats", headers=with_cookie(bad))
        assert status == 401


def test_sign_in_from_another_site_or_to_another_site_is_refused(keyed: LaminaServer) -> None:
    status, headers, _ = sign_in(keyed.endpoint, SECRET, origin="http://evil.example")
    assert status == 403 and "set-cookie" not in headers
    status, headers, _ = sign_in(keyed.endpoint, SECRET, next_page="//evil.example/")
    assert status == 303 and headers["location"] == f"{UI}/"
    status, headers, _ = sign_in(keyed.endpoint, SECRET, next_page="https://evil.example/")
    assert status == 303 and headers["location"] == f"{UI}/"


def test_open_server_has_no_sign_in(endpoint: str) -> None:
    status, _, body = request(endpoint, "GET", f"{UI}/")
    assert status == 200 and b'id="sign-out"' not in body
    status, headers, _ = request(endpoint, "GET", f"{UI}/login")
    assert status == 303 and headers["location"] == f"{UI}/"
