"""Batched rtnetlink requests, for wiring the pools' environment namespaces (plumbing.Hub.wire).

A pool wires one namespace per cold start, on the server's own process (the namespace thread holds the GIL while it
works, so its CPU is taken from the event loop). pyroute2's IPRoute spends about a millisecond of CPU on each request
(its asyncio core, request filters, reply decoding) and more to be made, once per environment namespace. Here the
requests are pyroute2's own message classes, encoded as IPRoute would encode them, on a plain netlink socket; requests
that do not need each other's answers go in one send (the kernel runs them in order) and each one's ack is checked.
"""

from __future__ import annotations

import socket
import struct

from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NLMSG_ERROR, nlmsg_base
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTM_GETLINK, RTM_NEWADDR, RTM_NEWLINK, RTM_NEWROUTE
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import IFF_UP, ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

_HEADER = struct.Struct("=IHHII")   # struct nlmsghdr: length, type, flags, seq, pid
_ERROR = struct.Struct("=i")        # struct nlmsgerr's error (-errno; 0 is the ack)
_IFI_INDEX = struct.Struct("=i")    # struct ifinfomsg's ifi_index, after family, pad and type
_NEW = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
_SET = NLM_F_REQUEST | NLM_F_ACK
RT_TABLE_MAIN = 254
RTPROT_STATIC = 4
RTN_UNICAST = 1
RT_SCOPE_LINK = 253
RT_SCOPE_UNIVERSE = 0


def _msg(msg: nlmsg_base, kind: int, flags: int, attrs: list) -> nlmsg_base:
    msg["header"]["type"] = kind
    msg["header"]["flags"] = flags
    msg["attrs"] = attrs
    return msg


def add_veth(ifname: str, peer_ifname: str, peer_netns_fd: int) -> nlmsg_base:
    """`ip link add IFNAME type veth peer name PEER netns FD`: the peer is made in that namespace."""
    peer = {"attrs": [("IFLA_IFNAME", peer_ifname), ("IFLA_NET_NS_FD", peer_netns_fd)]}
    info = {"attrs": [("IFLA_INFO_KIND", "veth"), ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", peer)]})]}
    return _msg(ifinfmsg(), RTM_NEWLINK, _NEW, [("IFLA_IFNAME", ifname), ("IFLA_LINKINFO", info)])


def get_link(ifname: str) -> nlmsg_base:
    """The link named IFNAME (one link, not a dump)."""
    return _msg(ifinfmsg(), RTM_GETLINK, _SET, [("IFLA_IFNAME", ifname)])


def link_up(index: int) -> nlmsg_base:
    msg = _msg(ifinfmsg(), RTM_NEWLINK, _SET, [])
    msg["index"] = index
    msg["flags"] = msg["change"] = IFF_UP
    return msg


def add_addr(index: int, address: str, prefixlen: int) -> nlmsg_base:
    msg = _msg(ifaddrmsg(), RTM_NEWADDR, _NEW, [("IFA_ADDRESS", address), ("IFA_LOCAL", address)])
    msg["family"] = socket.AF_INET
    msg["prefixlen"] = prefixlen
    msg["index"] = index
    return msg


def add_route(dst: str, dst_len: int, oif: int, scope: int, gateway: str | None = None) -> nlmsg_base:
    """An IPv4 route in the main table (static, unicast), through interface OIF (and GATEWAY if given)."""
    attrs: list = [("RTA_DST", dst)] if dst_len else []
    if gateway is not None:
        attrs.append(("RTA_GATEWAY", gateway))
    attrs.append(("RTA_OIF", oif))
    msg = _msg(rtmsg(), RTM_NEWROUTE, _NEW, attrs)
    msg["family"] = socket.AF_INET
    msg["dst_len"] = dst_len
    msg["table"] = RT_TABLE_MAIN
    msg["proto"] = RTPROT_STATIC
    msg["scope"] = scope
    msg["type"] = RTN_UNICAST
    return msg


class Rtnl:
    """Requests on one rtnetlink socket (made in the namespace they act on; nsops.netlink_socket). Owns the socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.seq = 0

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def run(self, *requests: nlmsg_base) -> dict[int, int]:
        """Send the requests at once (the kernel runs them in order) and wait for every ack; raises NetlinkError for
        the first one refused (later ones were still run). Returns {request position: link index} for the links the
        requests got (get_link)."""
        first = self.seq + 1
        chunks = []
        for request in requests:
            self.seq += 1
            request["header"]["sequence_number"] = self.seq
            request.encode()
            chunks.append(request.data)
        self.sock.sendall(b"".join(chunks))
        links: dict[int, int] = {}
        errors: dict[int, int] = {}
        pending = len(requests)
        while pending:
            data = self.sock.recv(65536)
            offset = 0
            while offset + _HEADER.size <= len(data):
                length, kind, _flags, seq, _pid = _HEADER.unpack_from(data, offset)
                if length < _HEADER.size:
                    break
                position = seq - first
                if 0 <= position < len(requests):
                    if kind == NLMSG_ERROR:
                        code = -_ERROR.unpack_from(data, offset + _HEADER.size)[0]
                        if code:
                            errors[position] = code
                        pending -= 1
                    elif kind == RTM_NEWLINK:
                        links[position] = _IFI_INDEX.unpack_from(data, offset + _HEADER.size + 4)[0]
                offset += (length + 3) & ~3
        if errors:
            raise NetlinkError(errors[min(errors)])
        return links
