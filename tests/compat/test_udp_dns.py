"""A real app through the UDP gateway: a DNS server written as a Lambda function (src/lamina/examples/dns, with
dnslib shipped in its zip) answers `dig` (Debian's dnsutils) on a listener's port, with batching on."""

from __future__ import annotations

import subprocess

import pytest

from helpers import REPO_ROOT, installed_files, raw_request, require_command

pytestmark = pytest.mark.timeout(120)

# The README's example, as users deploy it.
DNS_APP = (REPO_ROOT / "src" / "lamina" / "examples" / "dns" / "app.py").read_text()


def dig(port: int, *args: str) -> str:
    binary = require_command("dig", "apt-get install dnsutils")
    proc = subprocess.run([binary, "@127.0.0.1", "-p", str(port), "+tries=1", "+time=10", *args],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_dig_gets_answers_from_a_dns_function(endpoint, functions):
    fn = functions({"app.py": DNS_APP, **installed_files("dnslib")}, prefix="udp-dns")
    body = b'{"Destinations": [{"Function": "%s", "Batching": {"Count": 50, "TimeoutInSeconds": 0.02}}]}' % (
        fn.encode())
    resp = raw_request(endpoint, "POST", "/lamina/v1/udp/listeners", body, {"content-type": "application/json"},
                       sign=False)
    assert resp.status == 201, resp.describe()
    listener = resp.json()
    try:
        out = dig(listener["Port"], "example.test", "A")
        assert "status: NOERROR" in out, out
        answer = out.split("ANSWER SECTION:", 1)[1]
        assert "example.test." in answer and "192.0.2.53" in answer, out

        out = dig(listener["Port"], "www.example.test")
        assert "192.0.2.80" in out.split("ANSWER SECTION:", 1)[1], out

        out = dig(listener["Port"], "nothing.test")
        assert "status: NXDOMAIN" in out, out
    finally:
        raw_request(endpoint, "DELETE", f"/lamina/v1/udp/listeners/{listener['Id']}", sign=False)
