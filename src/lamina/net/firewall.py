"""nftables rulesets (JSON, for `nft -j`) of Lamina's namespaces: a VPC pair's (security groups as stateful,
allow-only chains, SNAT to the pair's one address, nothing in from the VPC), the default outbound network's, and the
host's (the outbound network never reaches the host itself or a VPC segment). A hub's `api` (address, port) is where
Lamina's API listens inside it for the hub's environments (plumbing.py): only they may connect, only to that port.

Every ruleset is one table, replaced atomically (add; delete; add ... in one batch): conntrack entries outlive the
replace, so established connections survive a rule change while new ones see the new rules."""

from __future__ import annotations

TABLE = "lamina"
ENV_PREFIX = "v"   # the environments' veths in a hub namespace: v<hex>
UPLINK = "eth0"    # the hub's own link (into the subnet, or to the host)


def _match(left: dict, right: object, op: str = "==") -> dict:
    return {"match": {"op": op, "left": left, "right": right}}


def _meta(key: str) -> dict:
    return {"meta": {"key": key}}


def _payload(protocol: str, field: str) -> dict:
    return {"payload": {"protocol": protocol, "field": field}}


def _addr(cidr: str) -> object:
    base, _, length = cidr.partition("/")
    if not length or length == "32":
        return base
    return {"prefix": {"addr": base, "len": int(length)}}


def _replace(family: str, table: str) -> list[dict]:
    ident = {"family": family, "name": table}
    return [{"add": {"table": ident}}, {"delete": {"table": ident}}, {"add": {"table": ident}}]


def _chain(table: str, name: str, hook: str | None = None, kind: str = "filter", priority: int = 0,
           policy: str = "accept") -> dict:
    chain: dict = {"family": "inet", "table": table, "name": name}
    if hook is not None:
        chain.update(type=kind, hook=hook, prio=priority, policy=policy)
    return {"add": {"chain": chain}}


def _rule(table: str, chain: str, *expr: dict) -> dict:
    return {"add": {"rule": {"family": "inet", "table": table, "chain": chain, "expr": list(expr)}}}


_ESTABLISHED = _match({"ct": {"key": "state"}}, ["established", "related"], "in")
_INVALID = _match({"ct": {"key": "state"}}, "invalid", "in")
_ACCEPT = {"accept": None}


def _sg_rule(rule: dict, peer_field: str) -> list[dict] | None:
    """One security group rule as an accept rule's matches (peer_field: daddr for egress, saddr for ingress); None
    for what an IPv4-only environment never sends (IPv6 ranges)."""
    expr: list[dict] = []
    proto = rule["proto"]
    if "cidr6" in rule or proto in ("icmpv6", "58"):
        return None
    if proto in ("tcp", "udp"):
        expr.append(_match(_meta("l4proto"), proto))
        low, high = rule["from"], rule["to"]
        expr.append(_match(_payload("th", "dport"), low if low == high else {"range": [low, high]}))
    elif proto == "icmp":
        expr.append(_match(_meta("l4proto"), "icmp"))
        if rule["from"] is not None and rule["from"] >= 0:
            expr.append(_match(_payload("icmp", "type"), rule["from"]))
    elif proto != "-1":
        expr.append(_match(_meta("l4proto"), int(proto)))
    if "cidr" in rule:
        if rule["cidr"] != "0.0.0.0/0":
            expr.append(_match(_payload("ip", peer_field), _addr(rule["cidr"])))
    else:
        expr.append(_match(_payload("ip", peer_field), f"@{set_name(rule['group'])}"))
    return expr


def set_name(group_id: str) -> str:
    return "sg_" + group_id.replace("-", "_")


def _api_rules(table: str, api: tuple[str, int] | None) -> list[dict]:
    """A hub's input rules for Lamina's API listener: its environments (v*) to that address and port; nothing else
    reaches the address (not the VPC, whatever a security group's ingress allows)."""
    if api is None:
        return []
    address, port = api
    to_api = _match(_payload("ip", "daddr"), address)
    return [_rule(table, "input", _match(_meta("iifname"), ENV_PREFIX + "*"), to_api,
                  _match(_meta("l4proto"), "tcp"), _match(_payload("th", "dport"), port), _ACCEPT),
            _rule(table, "input", to_api, {"drop": None})]


def pair_ruleset(address: str, env_range: str, groups: list[dict], members: dict[str, list[str]],
                 api: tuple[str, int] | None = None) -> list[dict]:
    """A VPC pair's table. groups: its security groups (with _ingress/_egress rules); members: for every group a rule
    references, the addresses of the interfaces carrying it; api: Lamina's API listener in the pair (address, port)."""
    t = TABLE
    out = _replace("inet", t)
    referenced = sorted({rule["group"] for g in groups for rule in g["_ingress"] + g["_egress"] if "group" in rule})
    for gid in referenced:
        spec: dict = {"family": "inet", "table": t, "name": set_name(gid), "type": "ipv4_addr"}
        if members.get(gid):
            spec["elem"] = sorted(members[gid])
        out.append({"add": {"set": spec}})
    out += [_chain(t, "egress"), _chain(t, "ingress"),
            _chain(t, "forward", "forward", policy="drop"), _chain(t, "input", "input", policy="drop"),
            _chain(t, "postrouting", "postrouting", kind="nat", priority=100)]
    out += [_rule(t, "forward", _ESTABLISHED, _ACCEPT), _rule(t, "forward", _INVALID, {"drop": None}),
            # Environments out to the subnet, through the groups' egress rules; nothing else is forwarded (not
            # environment to environment, not anything from the VPC in: one way, as on AWS).
            _rule(t, "forward", _match(_meta("iifname"), ENV_PREFIX + "*"), _match(_meta("oifname"), UPLINK),
                  {"jump": {"target": "egress"}})]
    out += [_rule(t, "input", _ESTABLISHED, _ACCEPT), _rule(t, "input", _match(_meta("iifname"), "lo"), _ACCEPT),
            *_api_rules(t, api), _rule(t, "input", _match(_meta("iifname"), UPLINK), {"jump": {"target": "ingress"}})]
    for group in groups:
        for rule in group["_egress"]:
            if (expr := _sg_rule(rule, "daddr")) is not None:
                out.append(_rule(t, "egress", *expr, _ACCEPT))
        for rule in group["_ingress"]:
            if (expr := _sg_rule(rule, "saddr")) is not None:
                out.append(_rule(t, "ingress", *expr, _ACCEPT))
    base, length = env_range.split("/")
    out.append(_rule(t, "postrouting", _match(_meta("oifname"), UPLINK),
                     _match(_payload("ip", "saddr"), {"prefix": {"addr": base, "len": int(length)}}),
                     {"snat": {"addr": address}}))
    return out


def outbound_ruleset(address: str, env_range: str, blocked: list[str],
                     api: tuple[str, int] | None = None) -> list[dict]:
    """The default network's hub: environments out through the host, never to `blocked` (VPC ranges, the link
    to the host); nothing in but its environments to Lamina's API listener (api); SNAT to the hub's address."""
    t = TABLE
    base, length = env_range.split("/")
    out = _replace("inet", t)
    out += [_chain(t, "forward", "forward", policy="drop"), _chain(t, "input", "input", policy="drop"),
            _chain(t, "postrouting", "postrouting", kind="nat", priority=100)]
    out += [_rule(t, "forward", _ESTABLISHED, _ACCEPT), _rule(t, "forward", _INVALID, {"drop": None})]
    for cidr in blocked:
        out.append(_rule(t, "forward", _match(_payload("ip", "daddr"), _addr(cidr)), {"drop": None}))
    out.append(_rule(t, "forward", _match(_meta("iifname"), ENV_PREFIX + "*"), _match(_meta("oifname"), UPLINK),
                     _ACCEPT))
    out += [_rule(t, "input", _ESTABLISHED, _ACCEPT), _rule(t, "input", _match(_meta("iifname"), "lo"), _ACCEPT),
            *_api_rules(t, api)]
    out.append(_rule(t, "postrouting", _match(_meta("oifname"), UPLINK),
                     _match(_payload("ip", "saddr"), {"prefix": {"addr": base, "len": int(length)}}),
                     {"snat": {"addr": address}}))
    return out


def host_ruleset(table: str, uplink: str, hub_address: str, segments_prefix: str, vpc_ranges: list[str]) -> list[dict]:
    """The host's side of the outbound network (its own table, other tables untouched): what comes in on `uplink`
    may not reach the host itself (its loopback, Lamina's API, any of its addresses) nor a VPC segment; it is
    masqueraded out of any other interface; nothing else is forwarded to it."""
    out = _replace("inet", table)
    out += [_chain(table, "input", "input", priority=-10), _chain(table, "forward", "forward", priority=-10),
            _chain(table, "postrouting", "postrouting", kind="nat", priority=100)]
    from_hub = _match(_meta("iifname"), uplink)
    out += [_rule(table, "input", from_hub, _ESTABLISHED, _ACCEPT), _rule(table, "input", from_hub, {"drop": None})]
    for cidr in vpc_ranges:
        out.append(_rule(table, "forward", from_hub, _match(_payload("ip", "daddr"), _addr(cidr)), {"drop": None}))
    out += [_rule(table, "forward", from_hub, _match(_meta("oifname"), segments_prefix + "*"), {"drop": None}),
            _rule(table, "forward", from_hub, _ACCEPT),
            _rule(table, "forward", _match(_meta("oifname"), uplink), _ESTABLISHED, _ACCEPT),
            _rule(table, "forward", _match(_meta("oifname"), uplink), {"drop": None}),
            _rule(table, "postrouting", _match(_payload("ip", "saddr"), hub_address),
                  _match(_meta("oifname"), uplink, "!="), {"masquerade": None})]
    return out
