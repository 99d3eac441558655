"""Client restrictions: the CIDR allow-list (IPv4, IPv6, IPv4-mapped senders) and its bounded cache."""

from __future__ import annotations

from lamina.gateway.udp import restrictions
from lamina.gateway.udp.restrictions import AllowList


def test_no_list_or_both_defaults_allow_everyone():
    assert AllowList([]).allow_all
    assert AllowList(["0.0.0.0/0", "::/0"]).allow_all
    assert not AllowList(["0.0.0.0/0"]).allow_all


def test_ipv4_blocks():
    allow = AllowList(["10.0.0.0/8", "192.0.2.7/32"])
    assert allow.allows("10.255.1.2") and allow.allows("192.0.2.7")
    assert not allow.allows("192.0.2.8") and not allow.allows("127.0.0.1")
    assert not allow.allows("2001:db8::1")


def test_ipv6_blocks_and_zones():
    allow = AllowList(["2001:db8::/32", "fe80::/10"])
    assert allow.allows("2001:db8:1::5") and allow.allows("fe80::1%eth0")
    assert not allow.allows("2001:db9::1") and not allow.allows("10.0.0.1")


def test_ipv4_mapped_sender_matches_ipv4_block():
    allow = AllowList(["127.0.0.0/8"])
    assert allow.allows("::ffff:127.0.0.1")
    assert not allow.allows("::ffff:10.0.0.1")


def test_garbage_is_refused():
    assert not AllowList(["0.0.0.0/0"]).allows("not-an-ip")


def test_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(restrictions, "CACHE_LIMIT", 10)
    allow = AllowList(["10.0.0.0/8"])
    for i in range(100):
        assert allow.allows(f"10.0.0.{i}")
        assert not allow.allows(f"11.0.0.{i}")
        assert len(allow._cache) <= 10
