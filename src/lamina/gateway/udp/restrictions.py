"""Client restrictions: which senders a listener accepts (a CIDR allow-list, IPv4 and IPv6)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

# Decisions are cached per sender address (parsing an address costs microseconds, a dict lookup
# nanoseconds); the cache is dropped when it grows past this, so a flood of spoofed sources costs
# time, never unbounded memory.
CACHE_LIMIT = 65536


class AllowList:
    """allows(ip) -> bool. No networks: everyone is allowed. An IPv4-mapped IPv6 sender (::ffff:a.b.c.d,
    seen on a dual-stack `::` listener) is checked against the IPv4 blocks too."""

    def __init__(self, networks: Iterable[str]) -> None:
        self.networks = [ipaddress.ip_network(n, strict=False) for n in networks]
        # Nothing to check: no list, or both 0.0.0.0/0 and ::/0 on it (the listener skips the lookup).
        self.allow_all = not self.networks or {n.version for n in self.networks if n.prefixlen == 0} == {4, 6}
        self._cache: dict[str, bool] = {}

    def allows(self, ip: str) -> bool:
        hit = self._cache.get(ip)
        if hit is None:
            if len(self._cache) >= CACHE_LIMIT:
                self._cache.clear()
            hit = self._cache[ip] = self._check(ip)
        return hit

    def _check(self, ip: str) -> bool:
        try:
            addr = ipaddress.ip_address(ip.split("%", 1)[0])   # drop an IPv6 zone (fe80::1%eth0)
        except ValueError:
            return False
        candidates = [addr]
        if addr.version == 6 and addr.ipv4_mapped is not None:
            candidates.append(addr.ipv4_mapped)
        return any(a in net for a in candidates for net in self.networks if net.version == a.version)
