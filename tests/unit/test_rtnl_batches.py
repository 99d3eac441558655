"""Batched rtnetlink requests (net/rtnl.py) against a datagram socketpair standing in for the kernel: the requests
go in one send with consecutive sequence numbers, every ack is waited for, a refused one raises pyroute2's
NetlinkError after the rest are drained, a link request's index comes back, and stale replies are ignored. The
requests decode (with pyroute2) to what `ip` would send."""

from __future__ import annotations

import errno
import socket
import struct

import pytest
from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NLMSG_ERROR
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.rtnl import RTM_GETLINK, RTM_NEWADDR, RTM_NEWLINK, RTM_NEWROUTE
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import rtmsg

from lamina.net import rtnl

HEADER = struct.Struct("=IHHII")


def _ack(seq: int, code: int = 0) -> bytes:
    payload = struct.pack("=i", -code) + HEADER.pack(16, 0, 0, seq, 0)
    return HEADER.pack(16 + len(payload), NLMSG_ERROR, 0, seq, 0) + payload


def _link(seq: int, index: int) -> bytes:
    payload = struct.pack("=BxHiII", socket.AF_UNSPEC, 1, index, 0, 0)
    return HEADER.pack(16 + len(payload), RTM_NEWLINK, 0, seq, 0) + payload


def _requests(data: bytes) -> list[tuple[int, int, int]]:
    """(type, flags, seq) of each request in one send."""
    out = []
    offset = 0
    while offset < len(data):
        length, kind, flags, seq, _pid = HEADER.unpack_from(data, offset)
        out.append((kind, flags, seq))
        offset += (length + 3) & ~3
    return out


@pytest.fixture
def kernel():
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    theirs.settimeout(5)
    yield rtnl.Rtnl(ours), theirs
    ours.close()
    theirs.close()


def test_one_send_every_ack_and_the_link_index(kernel) -> None:
    nl, k = kernel
    k.send(_link(1, 7))
    k.send(_ack(1))
    k.send(_ack(2))
    assert nl.run(rtnl.get_link("eth0"), rtnl.link_up(7)) == {0: 7}
    asked = NLM_F_REQUEST | NLM_F_ACK
    assert _requests(k.recv(65536)) == [(RTM_GETLINK, asked, 1), (RTM_NEWLINK, asked, 2)]
    k.send(_ack(3))   # the next batch goes on from there
    assert nl.run(rtnl.link_up(1)) == {}
    assert _requests(k.recv(65536)) == [(RTM_NEWLINK, asked, 3)]


def test_a_refused_request_raises_its_error_after_the_rest_are_read(kernel) -> None:
    nl, k = kernel
    k.send(_ack(1))
    k.send(_ack(2, errno.EEXIST))
    k.send(_ack(3, errno.ENODEV))
    with pytest.raises(NetlinkError) as err:
        nl.run(rtnl.link_up(2), rtnl.add_addr(2, "100.64.0.2", 32), rtnl.link_up(1))
    assert err.value.code == errno.EEXIST
    k.recv(65536)
    k.send(_ack(3))      # a stale reply (an earlier batch's) is not taken for this one's
    k.send(_ack(4))
    assert nl.run(rtnl.link_up(2)) == {}


def _decoded(cls, msg):
    msg["header"]["sequence_number"] = 1
    msg.encode()
    out = cls(msg.data)
    out.decode()
    return out


def test_requests_decode_to_what_ip_would_send() -> None:
    veth = _decoded(ifinfmsg, rtnl.add_veth("v2", "eth0", 9))
    assert veth["header"]["type"] == RTM_NEWLINK
    assert veth["header"]["flags"] == NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
    assert veth.get("IFLA_IFNAME") == "v2"
    assert veth.get(("IFLA_LINKINFO", "IFLA_INFO_KIND")) == "veth"
    peer = veth.get(("IFLA_LINKINFO", "IFLA_INFO_DATA", "VETH_INFO_PEER"))
    assert peer.get("IFLA_IFNAME") == "eth0" and peer.get("IFLA_NET_NS_FD") == 9

    up = _decoded(ifinfmsg, rtnl.link_up(5))
    assert (up["index"], up["flags"], up["change"]) == (5, 1, 1)

    addr = _decoded(ifaddrmsg, rtnl.add_addr(5, "100.64.0.9", 32))
    assert addr["header"]["type"] == RTM_NEWADDR
    assert (addr["index"], addr["prefixlen"], addr["family"]) == (5, 32, socket.AF_INET)
    assert addr.get("IFA_LOCAL") == addr.get("IFA_ADDRESS") == "100.64.0.9"

    host = _decoded(rtmsg, rtnl.add_route("100.64.0.9", 32, 5, rtnl.RT_SCOPE_LINK))
    assert host["header"]["type"] == RTM_NEWROUTE
    assert (host["dst_len"], host["scope"], host["table"]) == (32, rtnl.RT_SCOPE_LINK, 254)
    assert host.get("RTA_DST") == "100.64.0.9" and host.get("RTA_OIF") == 5 and host.get("RTA_GATEWAY") is None

    default = _decoded(rtmsg, rtnl.add_route("0.0.0.0", 0, 5, rtnl.RT_SCOPE_UNIVERSE, gateway="169.254.1.1"))
    assert default["dst_len"] == 0 and default.get("RTA_DST") is None
    assert default.get("RTA_GATEWAY") == "169.254.1.1" and default.get("RTA_OIF") == 5
