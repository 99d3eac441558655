"""Security group rules: EC2's IpPermissions in, one flat rule per (protocol, ports, peer) inside, IpPermissions and
SecurityGroupRules out. Allow-only; ingress and egress are separate lists (spec/networking.md §3)."""

from __future__ import annotations

import ipaddress

from lamina.net.errors import NetError, not_found
from lamina.net.ids import new_id

_NAMES = {"6": "tcp", "17": "udp", "1": "icmp", "58": "icmpv6", "all": "-1"}
_PORTED = ("tcp", "udp")


def protocol(value: object) -> str:
    """tcp, udp, icmp, icmpv6, -1 (all), or another protocol number (all of its traffic)."""
    text = str(value).strip().lower() if value is not None else ""
    text = _NAMES.get(text, text)
    if text in ("tcp", "udp", "icmp", "icmpv6", "-1"):
        return text
    if text.isdigit() and 0 <= int(text) <= 255:
        return text
    raise NetError("InvalidParameterValue", f"Invalid value '{value}' for IP protocol. Unknown protocol.")


def _port(value: object, name: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        port = int(str(value))
    except ValueError:
        raise NetError("InvalidParameterValue", f"Invalid value '{value}' for {name}.") from None
    return port


def _cidr(value: object, v6: bool) -> str:
    try:
        net = ipaddress.ip_network(str(value), strict=False)
    except ValueError:
        net = None
    if net is None or net.version != (6 if v6 else 4) or "/" not in str(value):
        param = "cidrIpv6" if v6 else "cidrIp"
        raise NetError("InvalidParameterValue",
                       f"Value ({value}) for parameter {param} is invalid. This is not a valid CIDR block.")
    return str(net)


def parse_permissions(permissions: list[dict], group_exists: object) -> list[dict]:
    """EC2 IpPermissions (the API's member names) -> flat rules. group_exists(id) says whether a referenced security
    group exists (an unknown one is InvalidGroup.NotFound)."""
    rules: list[dict] = []
    for perm in permissions:
        proto = protocol(perm.get("IpProtocol"))
        low, high = _port(perm.get("FromPort"), "FromPort"), _port(perm.get("ToPort"), "ToPort")
        if proto in _PORTED:
            if low is None or high is None:
                raise NetError("InvalidParameterValue",
                               "Invalid value 'Must specify both from and to ports with TCP/UDP.' for portRange.")
            if not (0 <= low <= 65535 and 0 <= high <= 65535) or low > high:
                raise NetError("InvalidParameterValue",
                               f"Invalid value '{low}-{high}' for portRange. Must be a range within 0-65535.")
        elif proto in ("icmp", "icmpv6"):
            # FromPort is the ICMP type, ToPort the code; -1 means all.
            low = -1 if low is None else low
            high = -1 if high is None else high
        else:
            low = high = None
        peers: list[dict] = []
        for r in perm.get("IpRanges") or []:
            peers.append({"cidr": _cidr(r.get("CidrIp"), False), "description": r.get("Description") or ""})
        for r in perm.get("Ipv6Ranges") or []:
            peers.append({"cidr6": _cidr(r.get("CidrIpv6"), True), "description": r.get("Description") or ""})
        for r in perm.get("UserIdGroupPairs") or []:
            gid = r.get("GroupId")
            if not gid:
                raise NetError("InvalidParameterValue", "A security group reference needs a GroupId in this VPC.")
            if not group_exists(gid):  # type: ignore[operator]
                raise not_found("sg", gid)
            peers.append({"group": gid, "description": r.get("Description") or ""})
        for r in perm.get("PrefixListIds") or []:
            raise NetError("InvalidParameterValue",
                           f"Prefix list '{r.get('PrefixListId')}' is not supported by Lamina: use CIDR ranges.")
        if not peers:
            raise NetError("InvalidParameterValue",
                           "The request must contain a source or destination: IpRanges, Ipv6Ranges or "
                           "UserIdGroupPairs.")
        for peer in peers:
            rules.append({"proto": proto, "from": low, "to": high, **peer})
    return rules


def same_rule(a: dict, b: dict) -> bool:
    return all(a.get(k) == b.get(k) for k in ("proto", "from", "to", "cidr", "cidr6", "group"))


def to_permissions(rules: list[dict], user_id: str) -> list[dict]:
    """Flat rules -> IpPermissions, grouped by protocol and port range as EC2 lists them."""
    out: dict[tuple, dict] = {}
    for rule in rules:
        key = (rule["proto"], rule["from"], rule["to"])
        perm = out.get(key)
        if perm is None:
            perm = out[key] = {"IpProtocol": rule["proto"], "IpRanges": [], "Ipv6Ranges": [], "PrefixListIds": [],
                               "UserIdGroupPairs": []}
            if rule["from"] is not None:
                perm.update(FromPort=rule["from"], ToPort=rule["to"])
        described = {"Description": rule["description"]} if rule.get("description") else {}
        if "cidr" in rule:
            perm["IpRanges"].append({"CidrIp": rule["cidr"], **described})
        elif "cidr6" in rule:
            perm["Ipv6Ranges"].append({"CidrIpv6": rule["cidr6"], **described})
        else:
            perm["UserIdGroupPairs"].append({"GroupId": rule["group"], "UserId": user_id, **described})
    return list(out.values())


def to_rule_records(group_id: str, owner: str, rules: list[dict], egress: bool) -> list[dict]:
    """SecurityGroupRules, as Authorize* answers them."""
    records = []
    for rule in rules:
        rule.setdefault("id", new_id("sgr"))
        rec: dict = {"SecurityGroupRuleId": rule["id"], "GroupId": group_id, "GroupOwnerId": owner,
                     "IsEgress": egress, "IpProtocol": rule["proto"],
                     "FromPort": rule["from"] if rule["from"] is not None else -1,
                     "ToPort": rule["to"] if rule["to"] is not None else -1}
        if "cidr" in rule:
            rec["CidrIpv4"] = rule["cidr"]
        elif "cidr6" in rule:
            rec["CidrIpv6"] = rule["cidr6"]
        else:
            rec["ReferencedGroupInfo"] = {"GroupId": rule["group"], "UserId": owner}
        if rule.get("description"):
            rec["Description"] = rule["description"]
        records.append(rec)
    return records


def describe_rule(rule: dict) -> str:
    """The rule as EC2's InvalidPermission messages name it."""
    peer = rule.get("cidr") or rule.get("cidr6") or rule.get("group")
    proto = rule["proto"].upper() if rule["proto"] != "-1" else "ALL"
    if rule["from"] is None:
        return f"peer: {peer}, {proto}, ALLOW"
    return f"peer: {peer}, {proto}, from port: {rule['from']}, to port: {rule['to']}, ALLOW"
