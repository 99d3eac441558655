"""The network part as the function core sees it: VpcConfig resolved against the VPC model, one shared interface
per security-group-set:subnet pair (created when a function names it, reused by every function and version with
the same pair, reclaimed when none does), and the namespaces environments join (net/plumbing.py builds them)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Protocol

from lamina.net.ec2 import Ec2Model
from lamina.net.errors import NetError
from lamina.store.db import Database
from lamina.store.ec2 import Ec2Repo

log = logging.getLogger("lamina.net")

NO_NETWORK = "none"
OUTBOUND = "outbound"


class EnvPool(Protocol):
    """Pre-wired network namespaces for one zygote's environments (a handle each, joined with setns)."""

    async def take(self) -> int: ...

    def close(self) -> None: ...


class Plumbing(Protocol):
    """What builds the networks on this host (net/plumbing.py; absent without the linux sandbox)."""

    async def start(self, model: Ec2Model, outbound: bool) -> None: ...

    async def close(self) -> None: ...

    async def add_pair(self, eni: dict) -> None: ...

    async def remove_pair(self, eni_id: str) -> None: ...

    async def apply_rules(self) -> None: ...

    def subnet_changed(self, subnet_id: str) -> None: ...

    def zygote_pool(self, network: str, maker: socket.socket) -> EnvPool: ...

    async def host_netns(self, network: str) -> int: ...


def pair_key(subnet_id: str, group_ids: list[str]) -> str:
    """One shared interface per (set of security groups, subnet)."""
    return f"{subnet_id}|{','.join(sorted(set(group_ids)))}"


class _Pair:
    def __init__(self, key: str, eni: dict) -> None:
        self.key = key
        self.eni = eni
        self.users: set[str] = set()
        self.task: asyncio.Task | None = None


class NetworkService:
    def __init__(self, db: Database, region: str, account: str, function_network: str = OUTBOUND,
                 plumbing: Plumbing | None = None, owns_plumbing: bool = True) -> None:
        if function_network not in (OUTBOUND, NO_NETWORK):
            raise ValueError(f"function_network must be '{OUTBOUND}' or '{NO_NETWORK}', not {function_network!r}")
        self.model = Ec2Model(Ec2Repo(db), region, account)
        self.model.group_in_use = self._group_in_use
        self.model.listeners.append(self._model_changed)
        self.plumbing = plumbing
        # Another account's service shares the server's plumbing (its default network) without starting or closing it.
        self.owns_plumbing = owns_plumbing
        # Without plumbing (the process sandbox) environments share the host's network whatever this says.
        self.default_network = function_network if plumbing is not None else NO_NETWORK
        self.pairs: dict[str, _Pair] = {}
        self.uses: dict[str, list[str]] = {}      # owner (function:version) -> pair keys
        self._rules_task: asyncio.Task | None = None

    # ------------------------------------------------------------------ lifecycle

    def load(self) -> None:
        """The model from the store; interfaces come back as their owners call use() again (registry.load)."""
        self.model.load()
        for eni in self.model.interfaces.values():
            self.pairs[eni["_key"]] = _Pair(eni["_key"], eni)

    async def start(self) -> None:
        if self.plumbing is not None and self.owns_plumbing:
            await self.plumbing.start(self.model, self.default_network == OUTBOUND)

    async def close(self) -> None:
        tasks = [p.task for p in self.pairs.values() if p.task is not None and not p.task.done()]
        for task in tasks:
            task.cancel()
        if self._rules_task is not None:
            self._rules_task.cancel()
            tasks.append(self._rules_task)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self.plumbing is not None and self.owns_plumbing:
            await self.plumbing.close()

    # ------------------------------------------------------------------ VpcConfig

    def resolve(self, subnet_ids: list[str], group_ids: list[str]) -> str:
        """The VPC of a VpcConfig whose ids are well-formed; EC2's NotFound errors in AWS's order (security groups
        first, then subnets), then the groups' and subnets' VPC must be one."""
        groups = [self.model.group(gid) for gid in group_ids]
        subnets = [self.model.subnet(sid) for sid in subnet_ids]
        vpcs = {s["VpcId"] for s in subnets}
        if len(vpcs) > 1:
            raise NetError("InvalidParameterValue", "Subnets are required to be in the same VPC")
        vpc_id = vpcs.pop()
        if any(g["VpcId"] != vpc_id for g in groups):
            raise NetError("InvalidParameterValue", "Security Groups are required to be in the same VPC")
        return vpc_id

    def network_for(self, vpc: dict | None) -> str:
        """The network a function's environments join: its first subnet's pair, or the default network."""
        if vpc and vpc.get("SubnetIds"):
            return pair_key(vpc["SubnetIds"][0], vpc["SecurityGroupIds"])
        return self.default_network

    def use(self, owner: str, function_name: str, vpc: dict | None) -> None:
        """`owner` (a function version) uses the pairs of `vpc` from now on (none: detached); each pair's interface
        is created now if no one had it, and set up on this host in the background (ready() waits)."""
        keys = [pair_key(sid, vpc["SecurityGroupIds"]) for sid in vpc["SubnetIds"]] if vpc else []
        for key, subnet_id in zip(keys, vpc["SubnetIds"] if vpc else [], strict=True):
            pair = self.pairs.get(key)
            if pair is None:
                eni = self.model.create_interface(key, subnet_id, sorted(set(vpc["SecurityGroupIds"])),  # type: ignore[index]
                                                  function_name)
                pair = self.pairs[key] = _Pair(key, eni)
                self._rules_changed()  # its address joins its groups' sets
            pair.users.add(owner)
            self._set_up(pair)
        old = self.uses.get(owner, [])
        self.uses[owner] = keys
        for key in old:
            if key not in keys:
                self._release_pair(key, owner)

    def release(self, owner: str) -> None:
        for key in self.uses.pop(owner, []):
            self._release_pair(key, owner)

    async def ready(self, owner: str) -> None:
        """Wait until the owner's pairs are set up on this host; NetError if one could not be."""
        for key in self.uses.get(owner, []):
            task = self.pairs[key].task
            if task is not None:
                await asyncio.shield(task)

    def _set_up(self, pair: _Pair) -> None:
        if self.plumbing is None or (pair.task is not None and not (pair.task.done() and pair.task.exception())):
            return
        pair.task = asyncio.get_running_loop().create_task(self.plumbing.add_pair(pair.eni))
        pair.task.add_done_callback(_log_failure)

    def _release_pair(self, key: str, owner: str) -> None:
        pair = self.pairs.get(key)
        if pair is None:
            return
        pair.users.discard(owner)
        if pair.users:
            return
        # Reclaimed at once: nothing uses it (AWS takes up to 20 minutes).
        del self.pairs[key]
        self.model.delete_interface(pair.eni["NetworkInterfaceId"])
        if pair.task is not None and not pair.task.done():
            pair.task.cancel()
        if self.plumbing is not None:
            task = asyncio.get_running_loop().create_task(self.plumbing.remove_pair(pair.eni["NetworkInterfaceId"]))
            task.add_done_callback(_log_failure)
        self._rules_changed()

    def _group_in_use(self, group_id: str) -> bool:
        return any(group_id in key.split("|", 1)[1].split(",") for key in self.pairs)

    def _model_changed(self, kind: str, resource_id: str) -> None:
        if self.plumbing is None:
            return
        if kind == "subnet":
            self.plumbing.subnet_changed(resource_id)
        else:
            self._rules_changed()

    def _rules_changed(self) -> None:
        """Security group rules or members changed: every pair's rules are rebuilt (atomically, in the background;
        established connections stay)."""
        if self.plumbing is None:
            return
        with contextlib.suppress(RuntimeError):  # no loop: nothing is set up yet either
            loop = asyncio.get_running_loop()
            previous = self._rules_task

            async def apply() -> None:
                if previous is not None and not previous.done():
                    with contextlib.suppress(Exception, asyncio.CancelledError):
                        await previous
                assert self.plumbing is not None
                await self.plumbing.apply_rules()

            self._rules_task = loop.create_task(apply())
            self._rules_task.add_done_callback(_log_failure)

    async def rules_applied(self) -> None:
        """Wait for the latest rule change to be in force (tests, and callers that must know)."""
        if self._rules_task is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._rules_task)

    # ------------------------------------------------------------------ environments (dispatch's EnvNetworks)

    def zygote_pool(self, network: str, maker: socket.socket) -> EnvPool | None:
        if self.plumbing is None or network == NO_NETWORK:
            return None
        return self.plumbing.zygote_pool(network, maker)

    async def host_netns(self, network: str) -> int | None:
        if self.plumbing is None or network == NO_NETWORK:
            return None
        return await self.plumbing.host_netns(network)


def _log_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        exc = task.exception()
        if not isinstance(exc, NetError):
            log.error("network set-up failed", exc_info=exc)
