"""Lamina's API listener in a function network's hub (net/firewall.py): only the hub's environments (v*) may connect,
only to its address and port; nothing else reaches that address, not even what a VPC security group lets in."""

from __future__ import annotations

from lamina.net import firewall

API = ("169.254.1.1", 8800)
GROUP = {"_ingress": [{"proto": "-1", "from": None, "to": None, "cidr": "0.0.0.0/0"}],
         "_egress": [{"proto": "-1", "from": None, "to": None, "cidr": "0.0.0.0/0"}]}


def _input(rules: list[dict]) -> list[list[dict]]:
    added = [r["add"]["rule"] for r in rules if "rule" in r.get("add", {})]
    return [rule["expr"] for rule in added if rule["chain"] == "input"]


def _accepts_api(expr: list[dict]) -> bool:
    matches = {(m["match"]["left"].get("meta", {}).get("key") or m["match"]["left"].get("payload", {}).get("field")):
               m["match"]["right"] for m in expr if "match" in m}
    return (matches.get("iifname") == "v*" and matches.get("daddr") == API[0] and matches.get("l4proto") == "tcp"
            and matches.get("dport") == API[1] and expr[-1] == {"accept": None})


def _drops_api_address(expr: list[dict]) -> bool:
    return len(expr) == 2 and expr[0]["match"]["right"] == API[0] and expr[1] == {"drop": None}


def test_a_pair_lets_its_environments_reach_the_api_and_drops_the_rest_before_security_groups() -> None:
    chain = _input(firewall.pair_ruleset("10.0.1.4", "100.64.0.0/10", [GROUP], {}, API))
    accept = next(i for i, e in enumerate(chain) if _accepts_api(e))
    drop = next(i for i, e in enumerate(chain) if _drops_api_address(e))
    ingress = next(i for i, e in enumerate(chain) if {"jump": {"target": "ingress"}} in e)
    assert accept < drop < ingress


def test_the_outbound_hub_lets_its_environments_reach_the_api() -> None:
    chain = _input(firewall.outbound_ruleset("100.100.0.2", "100.64.0.0/10", ["127.0.0.0/8"], API))
    assert any(_accepts_api(e) for e in chain) and any(_drops_api_address(e) for e in chain)


def test_without_a_listener_no_rule_names_it() -> None:
    for rules in (firewall.pair_ruleset("10.0.1.4", "100.64.0.0/10", [GROUP], {}),
                  firewall.outbound_ruleset("100.100.0.2", "100.64.0.0/10", [])):
        assert not any(_accepts_api(e) or _drops_api_address(e) for e in _input(rules))
