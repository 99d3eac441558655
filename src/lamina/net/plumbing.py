"""The networks on this host (linux sandbox, root), after spec/networking.md §5 (c + pool):

- a subnet's segment: a bridge Lamina makes in the host's namespace (lsb<8 hex of the subnet id>, no address:
  the operator may enslave a NIC or VLAN to it, tests attach their hosts to it), or the host interface the subnet's
  `lamina:host-interface` tag names (a bridge is joined with a veth, anything else with a macvlan);
- a VPC pair (one security-group set and subnet): a namespace holding the interface's one subnet address on its
  eth0, the environments behind it on veths (v<hex>, 100.64.0.0/10, each /32 routed), SNAT to the subnet address,
  and the pair's security groups as nftables rules (firewall.py);
- the default outbound network: the same kind of hub namespace, joined to the host by a veth (lmo<pid hex>) and
  masqueraded out of the host's other interfaces; the host's own table keeps it from the host itself and from VPC
  segments;
- Lamina's API inside every hub: a listening socket the server makes in the hub's namespace at the environment
  gateway's address (http://169.254.1.1:<api_port>, the AWS_ENDPOINT_URL environments get) and serves with its own
  front door (server.py: every request signed, whatever the server's keys); only the hub's environments may connect
  (firewall.py). Made with the hub (server start, a pair's set-up), so nothing is added to a cold start; a function
  with no network (function_network = none) has no path to it;
- environment namespaces, pre-wired in pools (a zygote's own, made by its namespace maker so that its forks may
  join them; the host's for sandboxes the launcher starts) and joined with setns: nothing is created on a cold start
  while a pool has one ready. An environment's namespace goes when its last process does; its veth goes with it.

Everything is named after this server's pid and listed in /run/lamina-net/<pid>.json, so a later server removes
what a dead one left (sweep) and close() removes the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import ipaddress
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Protocol

from lamina.net import firewall, nsops, rtnl
from lamina.net.ec2 import Ec2Model

log = logging.getLogger("lamina.net")

ENV_RANGE = "100.64.0.0/10"          # environments inside every hub namespace (hubs never see each other)
ENV_GATEWAY = "169.254.1.1"          # an environment's next hop: the hub's own address on its loopback
STATE_DIR = "/run/lamina-net"
PREFIX = "lamina-"                   # named namespaces: lamina-<pid>-...
SEGMENT_PREFIX = "ls"                # host links of VPC segments: lsb<id> bridges, lsp<id> pair uplinks
MAKE_TIMEOUT_S = 5.0
BURST_POOL_MAX = 16                  # a pool that ran dry grows (doubling) up to this for the rest of a burst ...
BURST_OVER_S = 30.0                  # ... and is back to its size once no take found it empty for this long


class Closable(Protocol):
    def close(self) -> None: ...


# Serves a listening socket (made in a hub) with Lamina's API, on the event loop; None if it cannot (the socket closed).
ApiServe = Callable[[socket.socket], Awaitable[Closable | None]]


def _hex(resource_id: str) -> str:
    return resource_id.split("-", 1)[1][:8]


class Hub:
    """A namespace environments are wired into (a VPC pair's, or the outbound network's). Used on the namespace
    thread only."""

    def __init__(self, name: str, fd: int) -> None:
        self.name = name
        self.fd = fd
        self.next = 2
        self.ruleset: str = ""
        self._ipr = nsops.ipr(fd)
        self._rtnl = rtnl.Rtnl(nsops.netlink_socket(fd))   # wire()'s: a request there costs far less CPU
        self.api_sock: socket.socket | None = None   # Lamina's API listener in this hub (listen_api)
        self.api_server: Closable | None = None      # what serves it (on the event loop)

    def wire(self, env_fd: int) -> str:
        """A veth from this hub into the environment namespace env_fd (made in place: never moved), with the
        environment's address, routes and loopback; returns the address."""
        base = ipaddress.IPv4Network(ENV_RANGE)
        index = self.next
        self.next = self.next + 1 if self.next + 2 < base.num_addresses else 2
        address = str(base.network_address + index)
        ifname = f"{firewall.ENV_PREFIX}{index:x}"
        # Once per cold start on the server's process, so the requests go batched through rtnl (4 sends in all).
        link = self._rtnl.run(rtnl.add_veth(ifname, "eth0", env_fd), rtnl.get_link(ifname))[1]
        self._rtnl.run(rtnl.link_up(link), rtnl.add_route(address, 32, link, rtnl.RT_SCOPE_LINK))
        with rtnl.Rtnl(nsops.netlink_socket(env_fd)) as env:
            links = env.run(rtnl.get_link("eth0"), rtnl.get_link("lo"))
            eth0, lo = links[0], links[1]
            env.run(rtnl.add_addr(eth0, address, 32), rtnl.link_up(eth0), rtnl.link_up(lo),
                    rtnl.add_route(ENV_GATEWAY, 32, eth0, rtnl.RT_SCOPE_LINK),
                    rtnl.add_route("0.0.0.0", 0, eth0, rtnl.RT_SCOPE_UNIVERSE, gateway=ENV_GATEWAY))
        return address

    def prepare(self) -> None:
        """The hub's own settings: forwarding on, strict reverse-path filtering (an environment can only send
        from its own address: each is routed by its /32), the environments' gateway address on loopback."""
        nsops.sysctl(self.fd, "net.ipv4.ip_forward", "1")
        nsops.sysctl(self.fd, "net.ipv4.conf.all.rp_filter", "1")
        nsops.sysctl(self.fd, "net.ipv4.conf.default.rp_filter", "1")
        lo = self._ipr.link_lookup(ifname="lo")[0]
        self._ipr.link("set", index=lo, state="up")
        self._ipr.addr("add", index=lo, address=ENV_GATEWAY, prefixlen=32)

    def listen_api(self, port: int) -> None:
        """A listening socket for Lamina's API at the environments' gateway address, made inside this hub (a socket
        stays in the namespace it was made in): reachable from this hub's environments only. After prepare()."""
        with nsops.inside(self.fd):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((ENV_GATEWAY, port))
            sock.listen(1024)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self.api_sock = sock

    def stop_api(self) -> None:
        """Stop serving Lamina's API here (on the event loop: the server is the loop's)."""
        if self.api_server is not None:
            self.api_server.close()
            self.api_server = None
        if self.api_sock is not None:
            self.api_sock.close()
            self.api_sock = None

    def close(self) -> None:
        if self.api_server is None and self.api_sock is not None:
            self.api_sock.close()   # made, never served (a set-up that failed after it)
        self._ipr.close()
        self._rtnl.close()
        os.close(self.fd)
        nsops.remove_named(self.name)


class EnvPool:
    """Pre-wired environment namespaces for one network, kept `size` ahead of demand; made by `make` (blocking, on
    the namespace thread) and wired into the network's hub. A take that finds none ready (a burst outran the pool)
    doubles the size, up to BURST_POOL_MAX, so the rest of the burst finds them made ahead; BURST_OVER_S after the
    last such take the pool is back to its own size (the extra namespaces closed)."""

    def __init__(self, hub: asyncio.Future, make: Callable[[], int], size: int,
                 on_close: Callable[[], None] | None = None) -> None:
        self.hub = hub
        self.make = make
        self.base = self.size = size
        self.ready: list[int] = []
        self.closed = False
        self.misses = 0
        self._task: asyncio.Task | None = None
        self._calm: asyncio.TimerHandle | None = None
        self._on_close = on_close
        self._refill()

    async def take(self) -> int:
        """A wired namespace's fd (the caller closes it once the environment joined it)."""
        if self.ready:
            fd = self.ready.pop()
            self._refill()
            return fd
        self.misses += 1
        if self.base > 0:
            self.size = min(max(self.size * 2, self.base), max(self.base, BURST_POOL_MAX))
            if self._calm is not None:
                self._calm.cancel()
            self._calm = asyncio.get_running_loop().call_later(BURST_OVER_S, self._burst_over)
        fd = await self._one()
        self._refill()
        return fd

    def _burst_over(self) -> None:
        self._calm = None
        self.size = self.base
        while len(self.ready) > self.size:
            os.close(self.ready.pop(0))

    async def _one(self) -> int:
        hub = await asyncio.shield(self.hub)
        made = asyncio.ensure_future(nsops.run(self._made_and_wired, hub))
        try:
            return await asyncio.shield(made)
        except asyncio.CancelledError:
            # The pool closed (or the taker gave up) while the namespace thread was making one: close it once made,
            # or it would live on in this process as an fd nobody holds.
            made.add_done_callback(_close_made)
            raise

    def _made_and_wired(self, hub: Hub) -> int:
        fd = self.make()
        try:
            hub.wire(fd)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _refill(self) -> None:
        if self.closed or self.size <= 0 or (self._task is not None and not self._task.done()):
            return

        async def fill() -> None:
            while not self.closed and len(self.ready) < self.size:
                fd = await self._one()
                if self.closed:
                    os.close(fd)
                    return
                self.ready.append(fd)

        self._task = asyncio.get_running_loop().create_task(fill())
        self._task.add_done_callback(_quiet)

    def close(self) -> None:
        self.closed = True
        if self._task is not None:
            self._task.cancel()
        if self._calm is not None:
            self._calm.cancel()
        for fd in self.ready:
            os.close(fd)
        self.ready.clear()
        if self._on_close is not None:
            self._on_close()


def _close_made(made: asyncio.Future) -> None:
    if not made.cancelled() and made.exception() is None:
        os.close(made.result())


def _quiet(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("could not pre-wire an environment namespace: %s", task.exception())


def zygote_maker(sock: socket.socket) -> Callable[[], int]:
    """A zygote's namespace maker (runtime/netns_maker.py) as a `make`: one byte asks, one fd comes back (a network
    namespace owned by the zygote's user namespace, which its forks can join)."""

    def make() -> int:
        sock.settimeout(MAKE_TIMEOUT_S)
        sock.sendall(b"N")
        _data, fds, _flags, _addr = socket.recv_fds(sock, 1, 1)
        if not fds:
            raise OSError("the zygote's namespace maker is gone")
        return fds[0]

    return make


class Plumbing:
    def __init__(self, pool_size: int = 2) -> None:
        self.pool_size = pool_size
        self.pid = os.getpid()
        self.model: Ec2Model | None = None
        self.hubs: dict[str, asyncio.Future] = {}          # network key -> Future[Hub]
        self.pair_networks: dict[str, str] = {}            # eni id -> network key
        self.bridges: dict[str, str] = {}                  # subnet id -> bridge Lamina made
        self.host_pools: dict[str, EnvPool] = {}
        self.pools: set[EnvPool] = set()
        self.state: dict = {"links": [], "table": None, "ip_forward": None}
        self.outbound_link = f"lmo{self.pid:x}"
        self.host_table = f"lamina_{self.pid}"
        self._outbound: tuple[str, str] | None = None     # (host address, hub address)
        self._outbound_applied = ""                        # what the outbound rulesets were last made from
        # Lamina's API in every hub (Hub.listen_api): its port, and how the server serves a listener (server.py);
        # unset, environments have no path to Lamina.
        self.api_port: int | None = None
        self.serve_api: ApiServe | None = None

    def _api(self) -> tuple[str, int] | None:
        return (ENV_GATEWAY, self.api_port) if self.api_port else None

    async def _serve_api(self, hub: Hub) -> None:
        sock = hub.api_sock
        if sock is None:
            return
        server = await self.serve_api(sock) if self.serve_api is not None else None
        if server is None:
            hub.stop_api()   # closed: a connection is refused at once rather than left unanswered
        else:
            hub.api_server = server

    # ------------------------------------------------------------------ lifecycle

    async def start(self, model: Ec2Model, outbound: bool) -> None:
        self.model = model
        await nsops.run(sweep)
        self._save_state()
        for subnet_id in list(model.subnets):
            await nsops.run(self._ensure_segment, subnet_id)
        if outbound:
            await self._start_outbound()

    async def close(self) -> None:
        for pool in list(self.pools) + list(self.host_pools.values()):
            pool.close()
        hubs = [f.result() for f in self.hubs.values() if f.done() and not f.cancelled() and f.exception() is None]
        for fut in self.hubs.values():
            fut.cancel()
        for hub in hubs:
            hub.stop_api()
        await nsops.run(self._teardown, hubs)

    def _teardown(self, hubs: list[Hub]) -> None:
        for hub in hubs:
            with contextlib.suppress(OSError):
                hub.close()
        _remove_state(self.state)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{STATE_DIR}/{self.pid}.json")

    def _save_state(self) -> None:
        os.makedirs(STATE_DIR, exist_ok=True)
        with open(f"{STATE_DIR}/{self.pid}.json", "w") as fh:
            json.dump(self.state, fh)

    def _track_link(self, name: str) -> None:
        if name not in self.state["links"]:
            self.state["links"].append(name)
            self._save_state()

    def _untrack_link(self, name: str) -> None:
        if name in self.state["links"]:
            self.state["links"].remove(name)
            self._save_state()

    # ------------------------------------------------------------------ subnets

    def subnet_changed(self, subnet_id: str) -> None:
        loop = asyncio.get_running_loop()
        task = loop.create_task(nsops.run(self._ensure_segment, subnet_id))
        task.add_done_callback(_quiet)
        if self._outbound is not None:
            loop.create_task(self.apply_rules()).add_done_callback(_quiet)

    def _ensure_segment(self, subnet_id: str) -> None:
        """The subnet's bridge exists while the subnet does (unless an operator's interface is its segment)."""
        assert self.model is not None
        subnet = self.model.subnets.get(subnet_id)
        name = f"lsb{_hex(subnet_id)}"
        with nsops.ipr() as host:
            if subnet is not None and not subnet.get("_host_interface"):
                if not host.link_lookup(ifname=name):
                    self._track_link(name)
                    host.link("add", ifname=name, kind="bridge")
                host.link("set", index=host.link_lookup(ifname=name)[0], state="up")
                self.bridges[subnet_id] = name
            elif subnet is None and subnet_id in self.bridges:
                with contextlib.suppress(Exception):
                    host.link("del", index=host.link_lookup(ifname=name)[0])
                self._untrack_link(name)
                del self.bridges[subnet_id]

    def segment_of(self, subnet_id: str) -> str:
        """The host interface a subnet's pairs attach to."""
        assert self.model is not None
        subnet = self.model.subnet(subnet_id)
        return subnet.get("_host_interface") or f"lsb{_hex(subnet_id)}"

    # ------------------------------------------------------------------ VPC pairs

    def _hub_future(self, key: str) -> asyncio.Future:
        fut = self.hubs.get(key)
        if fut is None or fut.cancelled():
            fut = self.hubs[key] = asyncio.get_running_loop().create_future()
        return fut

    async def add_pair(self, eni: dict) -> None:
        key = eni["_key"]
        fut = self._hub_future(key)
        if fut.done():
            return
        self.pair_networks[eni["NetworkInterfaceId"]] = key
        try:
            hub = await nsops.run(self._make_pair, eni)
            hub.ruleset = ""
            await nsops.run(self._apply_pair, hub, eni)
            await self._serve_api(hub)
        except Exception as exc:
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()
            raise
        if not fut.done():
            fut.set_result(hub)

    def _make_pair(self, eni: dict) -> Hub:
        """The pair's namespace: eth0 on the subnet's segment with the interface's address and the subnet's router
        as default route (spec: 29-42 ms measured)."""
        assert self.model is not None
        subnet = self.model.subnet(eni["SubnetId"])
        net = ipaddress.IPv4Network(subnet["CidrBlock"])
        name = f"{PREFIX}{self.pid}-p{_hex(eni['NetworkInterfaceId'])}"
        hub = Hub(name, nsops.named_netns(name))
        try:
            segment = self.segment_of(eni["SubnetId"])
            with nsops.ipr() as host:
                parent = host.link_lookup(ifname=segment)
                if not parent:
                    raise OSError(f"the host interface {segment} of {eni['SubnetId']} does not exist")
                info = host.get_links(parent[0])[0].get_attr("IFLA_LINKINFO")
                kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
                if kind == "bridge":
                    uplink = f"lsp{_hex(eni['NetworkInterfaceId'])}"
                    host.link("add", ifname=uplink, kind="veth",
                              peer={"ifname": firewall.UPLINK, "net_ns_fd": hub.fd, "address": eni["MacAddress"]})
                    index = host.link_lookup(ifname=uplink)[0]
                    host.link("set", index=index, master=parent[0])
                    host.link("set", index=index, state="up")
                else:
                    host.link("add", ifname=f"lsp{_hex(eni['NetworkInterfaceId'])}", kind="macvlan",
                              link=parent[0], macvlan_mode="bridge", net_ns_fd=hub.fd, address=eni["MacAddress"])
            pair = hub._ipr
            if kind != "bridge":
                pair.link("set", index=pair.link_lookup(ifname=f"lsp{_hex(eni['NetworkInterfaceId'])}")[0],
                          ifname=firewall.UPLINK)
            eth0 = pair.link_lookup(ifname=firewall.UPLINK)[0]
            pair.addr("add", index=eth0, address=eni["PrivateIpAddress"], prefixlen=net.prefixlen)
            pair.link("set", index=eth0, state="up")
            pair.route("add", dst="0.0.0.0/0", gateway=str(net.network_address + 1), oif=eth0)
            hub.prepare()
            if self.api_port:
                hub.listen_api(self.api_port)
        except BaseException:
            hub.close()
            raise
        return hub

    def _members(self) -> dict[str, list[str]]:
        assert self.model is not None
        members: dict[str, list[str]] = {}
        for eni in self.model.interfaces.values():
            for g in eni["Groups"]:
                members.setdefault(g["GroupId"], []).append(eni["PrivateIpAddress"])
        return members

    def _apply_pair(self, hub: Hub, eni: dict) -> None:
        assert self.model is not None
        groups = [self.model.groups[g["GroupId"]] for g in eni["Groups"] if g["GroupId"] in self.model.groups]
        rules = firewall.pair_ruleset(eni["PrivateIpAddress"], ENV_RANGE, groups, self._members(), self._api())
        text = json.dumps(rules, sort_keys=True)
        if text != hub.ruleset:
            nsops.nft(hub.name, rules)
            hub.ruleset = text

    async def apply_rules(self) -> None:
        """Rebuild what security groups and subnets decide: every pair's table, the outbound network's blocks."""
        assert self.model is not None
        for eni_id, key in list(self.pair_networks.items()):
            eni = self.model.interfaces.get(eni_id)
            fut = self.hubs.get(key)
            if eni is None or fut is None or not fut.done() or fut.cancelled() or fut.exception() is not None:
                continue
            await nsops.run(self._apply_pair, fut.result(), eni)
        if self._outbound is not None:
            await nsops.run(self._apply_outbound)

    async def remove_pair(self, eni_id: str) -> None:
        key = self.pair_networks.pop(eni_id, None)
        if key is None:
            return
        fut = self.hubs.pop(key, None)
        for pool in [p for p in self.pools if p.hub is fut] + [p for k, p in self.host_pools.items() if k == key]:
            pool.close()
        self.host_pools.pop(key, None)
        if fut is None:
            return
        if not fut.done():
            fut.cancel()
            return
        if fut.cancelled() or fut.exception() is not None:
            return
        # The namespace (and its eth0, the host end of its veth with it) goes once its environments have.
        fut.result().stop_api()
        await nsops.run(fut.result().close)

    # ------------------------------------------------------------------ the outbound network

    async def _start_outbound(self) -> None:
        fut = self._hub_future("outbound")
        try:
            hub = await nsops.run(self._make_outbound)
        except Exception as exc:
            fut.set_exception(exc)
            fut.exception()
            log.error("the outbound network for functions could not be set up: %s", exc)
            return
        await self._serve_api(hub)
        fut.set_result(hub)

    def _make_outbound(self) -> Hub:
        # A /30 per server from 100.100.0.0/16 (by pid), so several servers on one host do not collide.
        block = ipaddress.IPv4Network("100.100.0.0/16")
        base = block.network_address + (self.pid % (block.num_addresses // 4)) * 4
        host_address, hub_address = str(base + 1), str(base + 2)
        name = f"{PREFIX}{self.pid}-out"
        hub = Hub(name, nsops.named_netns(name))
        try:
            self._track_link(self.outbound_link)
            with nsops.ipr() as host:
                host.link("add", ifname=self.outbound_link, kind="veth",
                          peer={"ifname": firewall.UPLINK, "net_ns_fd": hub.fd})
                index = host.link_lookup(ifname=self.outbound_link)[0]
                host.addr("add", index=index, address=host_address, prefixlen=30)
                host.link("set", index=index, state="up")
            pair = hub._ipr
            eth0 = pair.link_lookup(ifname=firewall.UPLINK)[0]
            pair.addr("add", index=eth0, address=hub_address, prefixlen=30)
            pair.link("set", index=eth0, state="up")
            pair.route("add", dst="0.0.0.0/0", gateway=host_address, oif=eth0)
            hub.prepare()
            if self.api_port:
                hub.listen_api(self.api_port)
            self._outbound = (host_address, hub_address)
            self.state["table"] = self.host_table
            self._save_state()
            self._apply_outbound()
            # The host forwards for the outbound network (as Docker's bridge needs too); put back at close.
            old = nsops.sysctl(None, "net.ipv4.ip_forward", "1")
            if self.state["ip_forward"] is None:
                self.state["ip_forward"] = old
                self._save_state()
        except BaseException:
            hub.close()
            raise
        return hub

    def _apply_outbound(self) -> None:
        assert self.model is not None and self._outbound is not None
        host_address, hub_address = self._outbound
        ranges = sorted({s["CidrBlock"] for s in self.model.subnets.values()})
        fut = self.hubs.get("outbound")
        hub = fut.result() if fut is not None and fut.done() and not fut.cancelled() and not fut.exception() \
            else None
        # Only subnets change these (not security groups): unchanged, they are not replaced (an nft run each).
        wanted = json.dumps([ranges, hub is not None or self.hubs.get("outbound") is not None])
        if wanted == self._outbound_applied:
            return
        nsops.nft(None, firewall.host_ruleset(self.host_table, self.outbound_link, hub_address, SEGMENT_PREFIX,
                                              ranges))
        if hub is not None or self.hubs.get("outbound") is not None:
            name = f"{PREFIX}{self.pid}-out"
            nsops.nft(name, firewall.outbound_ruleset(hub_address, ENV_RANGE,
                                                      [*ranges, f"{host_address}/30", "127.0.0.0/8"], self._api()))
        self._outbound_applied = wanted

    # ------------------------------------------------------------------ environments

    def zygote_pool(self, network: str, maker: socket.socket) -> EnvPool:
        def closed() -> None:
            self.pools.discard(pool)
            maker.close()

        pool = EnvPool(self._hub_future(network), zygote_maker(maker), self.pool_size, on_close=closed)
        self.pools.add(pool)
        return pool

    async def host_netns(self, network: str) -> int:
        pool = self.host_pools.get(network)
        if pool is None:
            pool = self.host_pools[network] = EnvPool(self._hub_future(network), nsops.new_netns, self.pool_size)
        return await pool.take()


def _alive(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


def _remove_state(state: dict) -> None:
    """Remove what a server's state lists: its host links, its host table; put ip_forward back if it changed it and
    no other server of ours runs."""
    with nsops.ipr() as host:
        for name in state.get("links", []):
            for index in host.link_lookup(ifname=name):
                with contextlib.suppress(Exception):
                    host.link("del", index=index)
    if state.get("table"):
        with contextlib.suppress(OSError):
            nsops.nft(None, [{"delete": {"table": {"family": "inet", "name": state["table"]}}}])
    others = [p for p in glob.glob(f"{STATE_DIR}/*.json")
              if p.rsplit("/", 1)[1][:-5].isdigit() and _alive(int(p.rsplit("/", 1)[1][:-5]))
              and int(p.rsplit("/", 1)[1][:-5]) != os.getpid()]
    if state.get("ip_forward") is not None and not others:
        with contextlib.suppress(OSError):
            nsops.sysctl(None, "net.ipv4.ip_forward", state["ip_forward"])


def sweep() -> list[str]:
    """Remove what servers that are no longer running left behind (named namespaces, host links, host tables);
    returns what was removed."""
    removed: list[str] = []
    for path in glob.glob(f"{nsops.NETNS_DIR}/{PREFIX}*"):
        owner = os.path.basename(path)[len(PREFIX):].split("-", 1)[0]
        if owner.isdigit() and not _alive(int(owner)):
            nsops.remove_named(os.path.basename(path))
            removed.append(os.path.basename(path))
    for path in glob.glob(f"{STATE_DIR}/*.json"):
        owner = os.path.basename(path)[:-5]
        if not owner.isdigit() or _alive(int(owner)):
            continue
        try:
            with open(path) as fh:
                state = json.load(fh)
        except (OSError, ValueError):
            state = {}
        _remove_state(state)
        removed += state.get("links", []) + ([state["table"]] if state.get("table") else [])
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    return removed
