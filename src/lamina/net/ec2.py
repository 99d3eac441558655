"""The VPC model behind the EC2 subset: VPCs, subnets (each bound to a host network), security groups and the
shared Lambda network interfaces, kept in memory and in the store. Requests arrive as the EC2 query protocol's
members (api/ec2_api.py parses and renders them); answers are AWS-shaped dicts. Errors are EC2's (NetError)."""

from __future__ import annotations

import copy
import fnmatch
import ipaddress
import time
from collections.abc import Callable

from lamina.net import rules as r
from lamina.net.errors import NetError, not_found
from lamina.net.ids import new_id
from lamina.store.ec2 import Ec2Repo

# The tag that binds a subnet to an existing host interface (a bridge, a VLAN or an ethernet device) instead of a
# bridge Lamina makes for it.
HOST_INTERFACE_TAG = "lamina:host-interface"
RESERVED_ADDRESSES = 5  # network, router (+1), DNS (+2), +3 and broadcast, as on AWS


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


def public(doc: dict) -> dict:
    """The AWS-shaped part of a stored document (internal keys start with '_')."""
    return {k: copy.deepcopy(v) for k, v in doc.items() if not k.startswith("_")}


def _tags(params: dict, resource_type: str) -> list[dict]:
    tags = []
    for spec in params.get("TagSpecification") or []:
        if spec.get("ResourceType") not in (None, resource_type):
            raise NetError("InvalidParameterValue", f"'{spec.get('ResourceType')}' is not a valid taggable "
                           f"resource type for this operation.")
        for tag in spec.get("Tag") or []:
            tags.append({"Key": str(tag.get("Key", "")), "Value": str(tag.get("Value", ""))})
    return tags


def _cidr(value: object, kind: str) -> ipaddress.IPv4Network:
    if not value:
        raise NetError("MissingParameter", "The request must contain the parameter CidrBlock")
    try:
        net = ipaddress.IPv4Network(str(value), strict=False)
    except ValueError:
        raise NetError(f"Invalid{kind}.Range", f"The CIDR '{value}' is invalid.") from None
    if not 16 <= net.prefixlen <= 28:
        raise NetError(f"Invalid{kind}.Range", f"The CIDR '{value}' is invalid.")
    return net


def _ids(params: dict, key: str) -> list[str]:
    return [str(x) for x in params.get(key) or []]


def _matches(doc: dict, filters: list[dict], fields: dict[str, Callable[[dict], list[str]]]) -> bool:
    """EC2 filters: every filter must match; a filter matches when any of its values matches (* and ? wildcards)."""
    for flt in filters:
        name = str(flt.get("Name", ""))
        values = [str(v) for v in flt.get("Value") or []]
        if name.startswith("tag:"):
            have = [t["Value"] for t in doc.get("Tags", doc.get("TagSet", [])) if t["Key"] == name[4:]]
        elif name == "tag-key":
            have = [t["Key"] for t in doc.get("Tags", doc.get("TagSet", []))]
        elif name in fields:
            have = fields[name](doc)
        else:
            raise NetError("InvalidParameterValue", f"The filter '{name}' is invalid")
        if not any(fnmatch.fnmatchcase(h, v) for h in have for v in values):
            return False
    return True


class Ec2Model:
    """The EC2 resources of this server. `changed(kind, id)` is called after each change that matters to the
    network plumbing (net/service.py): 'subnet' created or deleted, 'sg' rules changed."""

    def __init__(self, repo: Ec2Repo, region: str, account: str) -> None:
        self.repo = repo
        self.region = region
        self.account = account
        self.vpcs: dict[str, dict] = {}
        self.subnets: dict[str, dict] = {}
        self.groups: dict[str, dict] = {}
        self.interfaces: dict[str, dict] = {}
        self.listeners: list[Callable[[str, str], None]] = []
        # Whether a function's VpcConfig names the group (such a group cannot be deleted); set by net/service.py.
        self.group_in_use: Callable[[str], bool] = lambda _gid: False

    def load(self) -> None:
        for kind, table in (("vpc", self.vpcs), ("subnet", self.subnets), ("sg", self.groups),
                            ("eni", self.interfaces)):
            for doc in self.repo.all(kind):
                table[doc[_ID_KEY[kind]]] = doc

    def _save(self, kind: str, doc: dict) -> None:
        self.repo.put(kind, doc[_ID_KEY[kind]], doc)

    def _changed(self, kind: str, resource_id: str) -> None:
        for listener in self.listeners:
            listener(kind, resource_id)

    # ------------------------------------------------------------------ lookups

    def vpc(self, vpc_id: object) -> dict:
        doc = self.vpcs.get(str(vpc_id))
        if doc is None:
            raise not_found("vpc", str(vpc_id))
        return doc

    def subnet(self, subnet_id: object) -> dict:
        doc = self.subnets.get(str(subnet_id))
        if doc is None:
            raise not_found("subnet", str(subnet_id))
        return doc

    def group(self, group_id: object) -> dict:
        doc = self.groups.get(str(group_id))
        if doc is None:
            raise not_found("sg", str(group_id))
        return doc

    # ------------------------------------------------------------------ VPCs

    def create_vpc(self, params: dict) -> dict:
        net = _cidr(params.get("CidrBlock"), "Vpc")
        vpc_id = new_id("vpc")
        doc = {"VpcId": vpc_id, "CidrBlock": str(net), "State": "available", "DhcpOptionsId": "default",
               "InstanceTenancy": params.get("InstanceTenancy") or "default", "IsDefault": False,
               "OwnerId": self.account, "Tags": _tags(params, "vpc"),
               "CidrBlockAssociationSet": [{"AssociationId": new_id("vpc-cidr-assoc"), "CidrBlock": str(net),
                                            "CidrBlockState": {"State": "associated"}}],
               "Ipv6CidrBlockAssociationSet": []}
        self.vpcs[vpc_id] = doc
        self._save("vpc", doc)
        # Every VPC has a default security group: inbound from itself, outbound anywhere; it cannot be deleted.
        self._new_group(vpc_id, "default", "default VPC security group", [], default=True)
        return {"Vpc": public(doc)}

    def describe_vpcs(self, params: dict) -> dict:
        ids = _ids(params, "VpcId")
        for vpc_id in ids:
            self.vpc(vpc_id)
        fields = {"vpc-id": lambda d: [d["VpcId"]], "cidr": lambda d: [d["CidrBlock"]],
                  "cidr-block-association.cidr-block": lambda d: [d["CidrBlock"]], "state": lambda d: [d["State"]],
                  "is-default": lambda d: ["false"], "owner-id": lambda d: [d["OwnerId"]]}
        found = [public(d) for d in self.vpcs.values()
                 if (not ids or d["VpcId"] in ids) and _matches(d, params.get("Filter") or [], fields)]
        return {"Vpcs": found}

    def delete_vpc(self, params: dict) -> dict:
        vpc = self.vpc(params.get("VpcId"))
        vpc_id = vpc["VpcId"]
        if any(s["VpcId"] == vpc_id for s in self.subnets.values()) or any(
                g["VpcId"] == vpc_id and not g.get("_default") for g in self.groups.values()):
            raise NetError("DependencyViolation", f"The vpc '{vpc_id}' has dependencies and cannot be deleted.")
        for gid in [g["GroupId"] for g in self.groups.values() if g["VpcId"] == vpc_id]:
            del self.groups[gid]
            self.repo.delete(gid)
        del self.vpcs[vpc_id]
        self.repo.delete(vpc_id)
        return {}

    # ------------------------------------------------------------------ subnets

    def create_subnet(self, params: dict) -> dict:
        if not params.get("VpcId"):
            raise NetError("MissingParameter", "The request must contain the parameter VpcId")
        vpc = self.vpc(params["VpcId"])
        net = _cidr(params.get("CidrBlock"), "Subnet")
        if not net.subnet_of(ipaddress.IPv4Network(vpc["CidrBlock"])):
            raise NetError("InvalidSubnet.Range", f"The CIDR '{params['CidrBlock']}' is invalid.")
        for other in self.subnets.values():
            if other["VpcId"] == vpc["VpcId"] and net.overlaps(ipaddress.IPv4Network(other["CidrBlock"])):
                raise NetError("InvalidSubnet.Conflict", f"The CIDR '{params['CidrBlock']}' conflicts with another "
                               "subnet")
        zone = params.get("AvailabilityZone") or f"{self.region}a"
        if not str(zone).startswith(self.region):
            raise NetError("InvalidParameterValue", f"Value ({zone}) for parameter availabilityZone is invalid. "
                           f"Subnets can currently only be created in the following availability zones: "
                           f"{self.region}a, {self.region}b, {self.region}c.")
        subnet_id = new_id("subnet")
        tags = _tags(params, "subnet")
        doc = {"SubnetId": subnet_id, "VpcId": vpc["VpcId"], "CidrBlock": str(net), "State": "available",
               "AvailabilityZone": zone, "AvailabilityZoneId": f"use1-az{ord(str(zone)[-1]) - ord('a') + 1}",
               "AvailableIpAddressCount": net.num_addresses - RESERVED_ADDRESSES, "DefaultForAz": False,
               "MapPublicIpOnLaunch": False, "AssignIpv6AddressOnCreation": False, "Ipv6Native": False,
               "Ipv6CidrBlockAssociationSet": [], "OwnerId": self.account, "Tags": tags,
               "SubnetArn": f"arn:aws:ec2:{self.region}:{self.account}:subnet/{subnet_id}",
               "_host_interface": next((t["Value"] for t in tags if t["Key"] == HOST_INTERFACE_TAG), "")}
        self.subnets[subnet_id] = doc
        self._save("subnet", doc)
        self._changed("subnet", subnet_id)
        return {"Subnet": public(doc)}

    def describe_subnets(self, params: dict) -> dict:
        ids = _ids(params, "SubnetId")
        for subnet_id in ids:
            self.subnet(subnet_id)
        fields = {"subnet-id": lambda d: [d["SubnetId"]], "vpc-id": lambda d: [d["VpcId"]],
                  "cidr-block": lambda d: [d["CidrBlock"]], "cidr": lambda d: [d["CidrBlock"]],
                  "availability-zone": lambda d: [d["AvailabilityZone"]], "state": lambda d: [d["State"]]}
        found = [public(d) for d in self.subnets.values()
                 if (not ids or d["SubnetId"] in ids) and _matches(d, params.get("Filter") or [], fields)]
        return {"Subnets": found}

    def delete_subnet(self, params: dict) -> dict:
        subnet = self.subnet(params.get("SubnetId"))
        subnet_id = subnet["SubnetId"]
        if any(i["SubnetId"] == subnet_id for i in self.interfaces.values()):
            raise NetError("DependencyViolation", f"The subnet '{subnet_id}' has dependencies and cannot be "
                           "deleted.")
        del self.subnets[subnet_id]
        self.repo.delete(subnet_id)
        self._changed("subnet", subnet_id)
        return {}

    # ------------------------------------------------------------------ security groups

    def _new_group(self, vpc_id: str, name: str, description: str, tags: list[dict], default: bool = False) -> dict:
        group_id = new_id("sg")
        egress = [{"proto": "-1", "from": None, "to": None, "cidr": "0.0.0.0/0", "description": "",
                   "id": new_id("sgr")}]
        ingress = [{"proto": "-1", "from": None, "to": None, "group": group_id, "description": "",
                    "id": new_id("sgr")}] if default else []
        doc = {"GroupId": group_id, "GroupName": name, "Description": description, "VpcId": vpc_id,
               "OwnerId": self.account, "Tags": tags,
               "SecurityGroupArn": f"arn:aws:ec2:{self.region}:{self.account}:security-group/{group_id}",
               "_ingress": ingress, "_egress": egress, "_default": default}
        self.groups[group_id] = doc
        self._save("sg", doc)
        return doc

    def create_security_group(self, params: dict) -> dict:
        name = params.get("GroupName")
        description = params.get("GroupDescription")
        if not name:
            raise NetError("MissingParameter", "The request must contain the parameter GroupName")
        if description is None:
            raise NetError("MissingParameter", "The request must contain the parameter GroupDescription")
        name = str(name)
        if len(name) > 255 or len(str(description)) > 255:
            raise NetError("InvalidParameterValue", "Group names and descriptions may be at most 255 characters.")
        if name.lower().startswith("sg-"):
            raise NetError("InvalidParameterValue", "Group names may not be in the format sg-*.")
        if not params.get("VpcId"):
            raise NetError("VPCIdNotSpecified", "No default VPC for this user")
        vpc = self.vpc(params["VpcId"])
        if any(g["VpcId"] == vpc["VpcId"] and g["GroupName"] == name for g in self.groups.values()):
            raise NetError("InvalidGroup.Duplicate", f"The security group '{name}' already exists for VPC "
                           f"'{vpc['VpcId']}'")
        doc = self._new_group(vpc["VpcId"], name, str(description), _tags(params, "security-group"))
        out = {"GroupId": doc["GroupId"], "SecurityGroupArn": doc["SecurityGroupArn"]}
        if doc["Tags"]:
            out["Tags"] = doc["Tags"]
        return out

    def _group_view(self, doc: dict) -> dict:
        out = public(doc)
        out["IpPermissions"] = r.to_permissions(doc["_ingress"], self.account)
        out["IpPermissionsEgress"] = r.to_permissions(doc["_egress"], self.account)
        return out

    def describe_security_groups(self, params: dict) -> dict:
        ids = _ids(params, "GroupId")
        names = _ids(params, "GroupName")
        for group_id in ids:
            self.group(group_id)
        fields = {"group-id": lambda d: [d["GroupId"]], "group-name": lambda d: [d["GroupName"]],
                  "vpc-id": lambda d: [d["VpcId"]], "description": lambda d: [d["Description"]],
                  "owner-id": lambda d: [d["OwnerId"]]}
        found = [self._group_view(d) for d in self.groups.values()
                 if (not ids or d["GroupId"] in ids) and (not names or d["GroupName"] in names)
                 and _matches(d, params.get("Filter") or [], fields)]
        for name in names:
            if not any(g["GroupName"] == name for g in found):
                raise NetError("InvalidGroup.NotFound", f"The security group '{name}' does not exist")
        return {"SecurityGroups": found}

    def _group_from(self, params: dict) -> dict:
        if params.get("GroupId"):
            return self.group(params["GroupId"])
        name = params.get("GroupName")
        if not name:
            raise NetError("MissingParameter", "The request must contain the parameter groupId")
        for doc in self.groups.values():
            if doc["GroupName"] == name:
                return doc
        raise NetError("InvalidGroup.NotFound", f"The security group '{name}' does not exist")

    def delete_security_group(self, params: dict) -> dict:
        group = self._group_from(params)
        gid = group["GroupId"]
        if group.get("_default"):
            raise NetError("CannotDelete", f"the specified group: \"{gid}\" name: \"default\" cannot be deleted by "
                           "a user")
        in_use = [i["NetworkInterfaceId"] for i in self.interfaces.values()
                  if gid in [g["GroupId"] for g in i["Groups"]]]
        referenced = [g["GroupId"] for g in self.groups.values() if g["GroupId"] != gid
                      and any(rule.get("group") == gid for rule in g["_ingress"] + g["_egress"])]
        if in_use or referenced or self.group_in_use(gid):
            raise NetError("DependencyViolation", f"resource {gid} has a dependent object")
        del self.groups[gid]
        self.repo.delete(gid)
        return {"Return": True, "GroupId": gid}

    def _permissions(self, params: dict) -> list[dict]:
        perms = params.get("IpPermissions")
        if perms:
            # The wire names UserIdGroupPairs "Groups".
            return [{**p, "UserIdGroupPairs": p.get("Groups") or p.get("UserIdGroupPairs") or []} for p in perms]
        if params.get("IpProtocol") is None and params.get("CidrIp") is None:
            raise NetError("MissingParameter", "The request must contain the parameter ipPermissions")
        single: dict = {"IpProtocol": params.get("IpProtocol", "-1"), "FromPort": params.get("FromPort"),
                        "ToPort": params.get("ToPort")}
        if params.get("CidrIp"):
            single["IpRanges"] = [{"CidrIp": params["CidrIp"]}]
        return [single]

    def authorize(self, params: dict, egress: bool) -> dict:
        group = self._group_from(params)
        new = r.parse_permissions(self._permissions(params), lambda gid: gid in self.groups)
        key = "_egress" if egress else "_ingress"
        for rule in new:
            if any(r.same_rule(rule, have) for have in group[key]) or sum(r.same_rule(rule, x) for x in new) > 1:
                raise NetError("InvalidPermission.Duplicate",
                               f"the specified rule \"{r.describe_rule(rule)}\" already exists")
        records = r.to_rule_records(group["GroupId"], self.account, new, egress)
        group[key].extend(new)
        self._save("sg", group)
        self._changed("sg", group["GroupId"])
        return {"Return": True, "SecurityGroupRules": records}

    def revoke(self, params: dict, egress: bool) -> dict:
        group = self._group_from(params)
        key = "_egress" if egress else "_ingress"
        ids = _ids(params, "SecurityGroupRuleId")
        if ids:
            gone = [rule for rule in group[key] if rule.get("id") in ids]
            if len(gone) != len(ids):
                missing = sorted(set(ids) - {rule.get("id") for rule in gone})
                raise NetError("InvalidSecurityGroupRuleId.NotFound",
                               f"The security group rule ID '{missing[0]}' does not exist")
        else:
            wanted = r.parse_permissions(self._permissions(params), lambda gid: gid in self.groups)
            gone = []
            for rule in wanted:
                match = next((have for have in group[key] if r.same_rule(rule, have)), None)
                if match is None:
                    raise NetError("InvalidPermission.NotFound",
                                   "The specified rule does not exist in this security group.")
                gone.append(match)
        group[key] = [rule for rule in group[key] if all(rule is not g for g in gone)]
        self._save("sg", group)
        self._changed("sg", group["GroupId"])
        return {"Return": True,
                "RevokedSecurityGroupRules": r.to_rule_records(group["GroupId"], self.account, gone, egress)}

    # ------------------------------------------------------------------ network interfaces

    def describe_network_interfaces(self, params: dict) -> dict:
        ids = _ids(params, "NetworkInterfaceId")
        for eni in ids:
            if eni not in self.interfaces:
                raise not_found("eni", eni)
        fields = {
            "network-interface-id": lambda d: [d["NetworkInterfaceId"]],
            "interface-type": lambda d: [d["InterfaceType"]], "description": lambda d: [d["Description"]],
            "group-id": lambda d: [g["GroupId"] for g in d["Groups"]],
            "group-name": lambda d: [g["GroupName"] for g in d["Groups"]],
            "subnet-id": lambda d: [d["SubnetId"]], "vpc-id": lambda d: [d["VpcId"]],
            "requester-id": lambda d: [d["RequesterId"]], "status": lambda d: [d["Status"]],
            "attachment.attachment-id": lambda d: [d["Attachment"]["AttachmentId"]],
            "attachment.status": lambda d: [d["Attachment"]["Status"]],
            "private-ip-address": lambda d: [d["PrivateIpAddress"]],
            "addresses.private-ip-address": lambda d: [d["PrivateIpAddress"]],
            "availability-zone": lambda d: [d["AvailabilityZone"]],
            "owner-id": lambda d: [d["OwnerId"]], "mac-address": lambda d: [d["MacAddress"]],
        }
        found = [public(d) for d in self.interfaces.values()
                 if (not ids or d["NetworkInterfaceId"] in ids) and _matches(d, params.get("Filter") or [], fields)]
        return {"NetworkInterfaces": found}

    def allocate_address(self, subnet: dict) -> str:
        """The lowest free address of the subnet past the five AWS reserves; SubnetOutOfIPAddresses when full."""
        net = ipaddress.IPv4Network(subnet["CidrBlock"])
        used = {i["PrivateIpAddress"] for i in self.interfaces.values() if i["SubnetId"] == subnet["SubnetId"]}
        for offset in range(4, net.num_addresses - 1):
            address = str(net.network_address + offset)
            if address not in used:
                return address
        raise NetError("SubnetOutOfIPAddresses", f"The subnet '{subnet['SubnetId']}' has no available IP addresses")

    def create_interface(self, key: str, subnet_id: str, group_ids: list[str], function_name: str) -> dict:
        """A Lambda (Hyperplane-shaped) interface: one subnet address for every environment behind it."""
        subnet = self.subnet(subnet_id)
        address = self.allocate_address(subnet)
        eni_id = new_id("eni")
        mac = "02:" + ":".join(eni_id[4 + i: 6 + i] for i in range(0, 10, 2))
        doc = {
            "NetworkInterfaceId": eni_id, "InterfaceType": "lambda", "Status": "in-use",
            "Description": f"AWS Lambda VPC ENI-{function_name}-{new_id('x')[2:10]}-{eni_id[4:8]}",
            "SubnetId": subnet_id, "VpcId": subnet["VpcId"], "AvailabilityZone": subnet["AvailabilityZone"],
            "AvailabilityZoneId": subnet["AvailabilityZoneId"], "OwnerId": self.account,
            "RequesterId": f"{self.account}:lamina", "RequesterManaged": False, "SourceDestCheck": True,
            "MacAddress": mac, "PrivateIpAddress": address,
            "PrivateIpAddresses": [{"Primary": True, "PrivateIpAddress": address}],
            "Groups": [{"GroupId": gid, "GroupName": self.group(gid)["GroupName"]} for gid in group_ids],
            "Attachment": {"AttachmentId": new_id("ela-attach"), "AttachTime": _now(), "DeleteOnTermination": False,
                           "DeviceIndex": 1, "InstanceOwnerId": "amazon-aws", "Status": "attached"},
            "Ipv6Addresses": [], "TagSet": [], "_key": key,
        }
        self.interfaces[eni_id] = doc
        subnet["AvailableIpAddressCount"] -= 1
        self._save("eni", doc)
        self._save("subnet", subnet)
        return doc

    def delete_interface(self, eni_id: str) -> None:
        doc = self.interfaces.pop(eni_id, None)
        if doc is None:
            return
        self.repo.delete(eni_id)
        subnet = self.subnets.get(doc["SubnetId"])
        if subnet is not None:
            subnet["AvailableIpAddressCount"] += 1
            self._save("subnet", subnet)


_ID_KEY = {"vpc": "VpcId", "subnet": "SubnetId", "sg": "GroupId", "eni": "NetworkInterfaceId"}
