"""The EC2 subset (API 2016-11-15, the `ec2` query protocol) on Lamina's one endpoint: VPCs, subnets, security
groups and network interfaces (lamina/net/ec2.py holds the model).

boto3's `ec2` client POSTs a form (Action=CreateVpc&Version=2016-11-15&...) to `/`, as other query-protocol
services do (SQS's query protocol too), so the route takes only requests signed for the `ec2` service (the SigV4
credential scope's service, in the Authorization header or a presigned query) and leaves every other POST to `/`
to the routes after it. Answers are EC2's XML; errors are EC2's <Response><Errors> documents."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from starlette.datastructures import URLPath
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

from lamina.net.ec2 import Ec2Model
from lamina.net.errors import NetError

log = logging.getLogger("lamina.api.ec2")

VERSION = "2016-11-15"
XMLNS = f"http://ec2.amazonaws.com/doc/{VERSION}/"
_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/[^/]+/([^/]+)/aws4_request")
# Output members whose XML names are not the member name with a lowercase first letter (botocore's ec2 model).
_XML_NAMES = {
    "Description": "description", "Groups": "groupSet", "Tags": "tagSet", "UserIdGroupPairs": "groups",
    "Vpcs": "vpcSet", "Subnets": "subnetSet", "SecurityGroups": "securityGroupInfo",
    "NetworkInterfaces": "networkInterfaceSet", "PrivateIpAddresses": "privateIpAddressesSet",
    "Ipv6Addresses": "ipv6AddressesSet", "SecurityGroupRules": "securityGroupRuleSet",
    "RevokedSecurityGroupRules": "revokedSecurityGroupRuleSet",
}


def signed_service(scope: Scope) -> str | None:
    """The service a SigV4 request was signed for (the credential scope), or None when unsigned."""
    for key, value in scope.get("headers") or ():
        if key == b"authorization":
            m = _SCOPE.search(value.decode("latin-1"))
            return m.group(1) if m else None
    query = scope.get("query_string", b"").decode("latin-1")
    m = re.search(r"X-Amz-Credential=[^&/]+(?:/|%2F)\d{8}(?:/|%2F)[^&/%]+(?:/|%2F)([^&/%]+)", query)
    return m.group(1) if m else None


def parse_params(pairs: list[tuple[str, str]]) -> dict:
    """The query protocol's flattened members (IpPermissions.1.IpRanges.1.CidrIp=...) as nested dicts and lists."""
    root: dict = {}
    for key, value in pairs:
        parts = key.split(".")
        node = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            k: str | int = int(part) if part.isdigit() else part
            if last:
                node[k] = value
            else:
                node = node.setdefault(k, {})
    out = _listify(root)
    assert isinstance(out, dict)
    return out


def _listify(node: object) -> object:
    if not isinstance(node, dict):
        return node
    if node and all(isinstance(k, int) for k in node):
        return [_listify(node[k]) for k in sorted(node)]
    return {k: _listify(v) for k, v in node.items()}


def _xml(value: object, out: list[str], parent: str = "") -> None:
    """`parent`: the member this value belongs to (a security group's Description is groupDescription on the wire;
    a rule's or an interface's is description)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if item is None:
                continue
            if key == "Description" and parent == "SecurityGroups":
                tag = "groupDescription"
            else:
                tag = _XML_NAMES.get(key, key[:1].lower() + key[1:])
            out.append(f"<{tag}>")
            _xml(item, out, key)
            out.append(f"</{tag}>")
    elif isinstance(value, list):
        for item in value:
            out.append("<item>")
            _xml(item, out, parent)
            out.append("</item>")
    elif isinstance(value, bool):
        out.append("true" if value else "false")
    else:
        out.append(escape(str(value)))


def render(action: str, result: dict, request_id: str) -> bytes:
    out = [f'<?xml version="1.0" encoding="UTF-8"?>\n<{action}Response xmlns="{XMLNS}">',
           f"<requestId>{request_id}</requestId>"]
    if not result:
        result = {"Return": True}
    _xml(result, out)
    out.append(f"</{action}Response>")
    return "".join(out).encode()


def error_response(err: NetError, request_id: str) -> Response:
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{escape(err.code)}</Code>'
            f"<Message>{escape(err.message)}</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>")
    return Response(body, status_code=err.status, media_type="text/xml")


class Ec2Endpoint:
    def __init__(self, model: Ec2Model) -> None:
        m = model
        self.actions: dict[str, Callable[[dict], dict]] = {
            "CreateVpc": m.create_vpc, "DescribeVpcs": m.describe_vpcs, "DeleteVpc": m.delete_vpc,
            "CreateSubnet": m.create_subnet, "DescribeSubnets": m.describe_subnets, "DeleteSubnet": m.delete_subnet,
            "CreateSecurityGroup": m.create_security_group, "DescribeSecurityGroups": m.describe_security_groups,
            "DeleteSecurityGroup": m.delete_security_group,
            "AuthorizeSecurityGroupIngress": lambda p: m.authorize(p, egress=False),
            "AuthorizeSecurityGroupEgress": lambda p: m.authorize(p, egress=True),
            "RevokeSecurityGroupIngress": lambda p: m.revoke(p, egress=False),
            "RevokeSecurityGroupEgress": lambda p: m.revoke(p, egress=True),
            "DescribeNetworkInterfaces": m.describe_network_interfaces,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        request_id = str(uuid.uuid4())
        body = (await request.body()).decode("utf-8", "replace")
        pairs = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        pairs += parse_qsl(body, keep_blank_values=True)
        params = parse_params(pairs)
        action = str(params.pop("Action", ""))
        params.pop("Version", None)
        operation = self.actions.get(action)
        try:
            if operation is None:
                raise NetError("InvalidAction", f"The action {action or '(none)'} is not valid for this web service.")
            if str(params.get("DryRun", "")).lower() == "true":
                raise NetError("DryRunOperation", "Request would have succeeded, but DryRun flag is set.", 412)
            response = Response(render(action, operation(params), request_id), media_type="text/xml")
        except NetError as err:
            response = error_response(err, request_id)
        except Exception as exc:
            log.exception("EC2 %s failed", action)
            response = error_response(NetError("InternalError", f"An internal error has occurred: {exc}", 500),
                                      request_id)
        await response(scope, receive, send)


class Ec2Route(BaseRoute):
    """POST / signed for `ec2`; any other request is left to the next route."""

    def __init__(self, endpoint: Ec2Endpoint) -> None:
        self.endpoint = endpoint

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if (scope["type"] == "http" and scope.get("path") == "/" and scope.get("method") == "POST"
                and signed_service(scope) == "ec2"):
            return Match.FULL, {}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.endpoint(scope, receive, send)


def routes(model: Ec2Model) -> list[BaseRoute]:
    return [Ec2Route(Ec2Endpoint(model))]
