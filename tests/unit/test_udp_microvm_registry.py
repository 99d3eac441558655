"""The MicroVM destination's tenant -> instance registry with a fake MicroVM manager whose "instances"
are in-process UDP counters on loopback (gateway/udp/microvm_destination.py): one start in flight per
tenant with packets held meanwhile, the hold bound, replacement of a terminated instance, auto-resume,
back-off after a failed start, per-sender reply routing, the flow bound and the clientToken generations."""

from __future__ import annotations

import asyncio
import socket
import time

import orjson
import pytest
import uvloop

from lamina.gateway.udp import microvm_destination as md
from lamina.gateway.udp.config import ConfigError, parse_listener
from lamina.microvm.errors import ApiError
from lamina.microvm.manager import ProxyRefused

DEAD = ("TERMINATING", "TERMINATED")


class _Counter(asyncio.DatagramProtocol):
    """An instance's app: answers each datagram with b"<instance>:<its count>"."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.count = 0
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.count += 1
        self.transport.sendto(f"{self.name}:{self.count}".encode(), addr)


class FakeHandle:
    def __init__(self, app_port: int, http_port: int | None = None) -> None:
        self.app_port = app_port
        self.http_port = http_port

    async def open_connection(self, port: int):
        assert port == 7000 and self.http_port is not None
        return await asyncio.open_connection("127.0.0.1", self.http_port)

    async def open_datagram(self, port: int) -> socket.socket:
        # Every instance's app has its own loopback port here; `port` is the destination's Port.
        assert port == 7000
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.connect(("127.0.0.1", self.app_port))
        return sock


class FakeMvm:
    def __init__(self, microvm_id: str, body: dict) -> None:
        self.microvm_id = microvm_id
        self.doc = {"microvmId": microvm_id, "state": "PENDING",
                    **{k: v for k, v in body.items() if k not in ("clientToken", "runHookPayload")}}
        self.handle: FakeHandle | None = None
        self.app: _Counter | None = None
        self.transport = None
        self.last_activity = 0.0
        self.changed = asyncio.Event()

    def set(self, state: str) -> None:
        self.doc["state"] = state
        old, self.changed = self.changed, asyncio.Event()
        old.set()


class FakeManager:
    """The parts of MicrovmManager the destination uses: run, instances, by_token, enter/leave, terminate,
    on_terminated. Launches wait for `gate` (set it to let instances come up)."""

    def __init__(self) -> None:
        self.instances: dict[str, FakeMvm] = {}
        self.by_token: dict[str, str] = {}
        self.on_terminated: list = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.runs: list[dict] = []
        self.fail_run: ApiError | None = None
        self.fail_launch = False
        self.resumes = 0
        self.http_port: int | None = None
        self._n = 0

    def run(self, body: dict) -> dict:
        self.runs.append(body)
        if self.fail_run is not None:
            raise self.fail_run
        token = body.get("clientToken")
        if token in self.by_token:
            return dict(self.instances[self.by_token[token]].doc)
        self._n += 1
        mvm = FakeMvm(f"mvm-{self._n}", body)
        self.instances[mvm.microvm_id] = mvm
        self.by_token[token] = mvm.microvm_id
        asyncio.get_running_loop().create_task(self._launch(mvm))
        return dict(mvm.doc)

    async def _launch(self, mvm: FakeMvm) -> None:
        await self.gate.wait()
        if self.fail_launch:
            self._dead(mvm, "launch failed")
            return
        app = _Counter(mvm.microvm_id)
        mvm.transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: app, local_addr=("127.0.0.1", 0))
        mvm.app = app
        mvm.handle = FakeHandle(mvm.transport.get_extra_info("sockname")[1], self.http_port)
        mvm.set("RUNNING")

    def _dead(self, mvm: FakeMvm, reason: str) -> None:
        mvm.doc["stateReason"] = reason
        mvm.set("TERMINATED")
        if mvm.transport is not None:
            mvm.transport.close()
        for callback in self.on_terminated:
            callback(mvm.microvm_id)

    async def terminate(self, microvm_id: str, reason: str = "terminated") -> None:
        mvm = self.instances[microvm_id]
        if mvm.doc["state"] not in DEAD:
            self._dead(mvm, reason)

    async def enter(self, microvm_id: str, wait_s: float = 60.0) -> FakeMvm:
        mvm = self.instances[microvm_id]
        while True:
            state = mvm.doc["state"]
            if state == "RUNNING":
                return mvm
            if state in DEAD:
                raise ProxyRefused(410, "ResourceNotFoundException", f"MicroVM {microvm_id} is {state}.")
            if state == "SUSPENDED":
                if not (mvm.doc.get("idlePolicy") or {}).get("autoResumeEnabled"):
                    raise ProxyRefused(409, "ConflictException", "suspended")
                self.resumes += 1
                mvm.set("RUNNING")
                continue
            await asyncio.wait_for(mvm.changed.wait(), wait_s)

    def leave(self, mvm: FakeMvm) -> None:
        mvm.last_activity = 1.0


class Channel:
    local = {"Domain": "127.0.0.1", "Port": 2141}
    ipv6 = False

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, tuple]] = []

    def send(self, data: bytes, addr: tuple) -> bool:
        self.sent.append((data, addr))
        return True


def destination(manager: FakeManager, **args) -> tuple[md.MicrovmDestination, Channel]:
    arguments = {"TenantIdExpression": "[0:4]", "TenantIdFormatter": "ascii", "Port": 7000, **args}
    cfg = parse_listener({"Destinations": [{"Type": "microvm", "Image": "counter", "Name": "vms",
                                            "Arguments": arguments}]},
                         listener_id="udp-abc", default_host="127.0.0.1")
    channel = Channel()
    return md.MicrovmDestination(cfg.destinations[0], channel, manager, "udp-abc"), channel


SENDER_A = ("192.0.2.1", 1111)
SENDER_B = ("192.0.2.2", 2222)


async def settle(channel: Channel, n: int, timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while len(channel.sent) < n and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)   # and nothing more arrives


def test_one_start_per_tenant_and_packets_held_until_running():
    async def scenario():
        manager = FakeManager()
        manager.gate.clear()
        dest, channel = destination(manager)
        for i in range(50):
            dest.deliver((b"acme" + str(i).encode(), SENDER_A, 0.0))
        for _ in range(5):
            await asyncio.sleep(0.01)
        assert len(manager.runs) == 1
        assert manager.runs[0]["clientToken"] == "udp:udp-abc:vms:acme:0"
        assert orjson.loads(manager.runs[0]["runHookPayload"]) == {"TenantId": "acme", "ListenerId": "udp-abc",
                                                                   "Destination": "vms"}
        assert dest.metrics.held == 50
        manager.gate.set()
        await settle(channel, 50)
        assert [d for d, _ in channel.sent] == [f"mvm-1:{i}".encode() for i in range(1, 51)]
        assert {a for _, a in channel.sent} == {SENDER_A}
        m = dest.metrics
        assert (m.instances_started, m.delivered, m.held, m.replies, m.flows) == (1, 50, 0, 50, 1)
        # Now the hot path: no more starts.
        for _ in range(10):
            dest.deliver((b"acme!", SENDER_A, 0.0))
        await settle(channel, 60)
        assert len(manager.runs) == 1 and channel.sent[-1][0] == b"mvm-1:60"
        dest.close()

    uvloop.run(scenario())


def test_tenants_get_their_own_instances_and_senders_their_own_replies():
    async def scenario():
        manager = FakeManager()
        dest, channel = destination(manager)
        dest.deliver((b"acme1", SENDER_A, 0.0))
        dest.deliver((b"bolt1", SENDER_B, 0.0))
        dest.deliver((b"acme2", SENDER_B, 0.0))
        await settle(channel, 3)
        got = sorted(channel.sent)
        assert got == sorted([(b"mvm-1:1", SENDER_A), (b"mvm-2:1", SENDER_B), (b"mvm-1:2", SENDER_B)])
        assert dest.instance_of("acme") == "mvm-1" and dest.instance_of("bolt") == "mvm-2"
        assert dest.metrics.flows == 3
        assert dest.doc()["Instances"] == {"acme": "mvm-1", "bolt": "mvm-2"}
        dest.close()
        await asyncio.sleep(0.01)
        assert all(m.doc["state"] == "TERMINATED" for m in manager.instances.values())

    uvloop.run(scenario())


def test_hold_is_bounded(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(md, "MAX_HELD", 5)

    async def scenario():
        manager = FakeManager()
        manager.gate.clear()
        dest, channel = destination(manager)
        for _ in range(12):
            dest.deliver((b"acme", SENDER_A, 0.0))
        await asyncio.sleep(0.01)
        assert dest.metrics.dropped_held == 7 and dest.metrics.held == 5
        manager.gate.set()
        await settle(channel, 5)
        assert len(channel.sent) == 5 and dest.metrics.delivered == 5
        dest.close()

    uvloop.run(scenario())


def test_terminated_instance_is_replaced_on_the_next_packet():
    async def scenario():
        manager = FakeManager()
        dest, channel = destination(manager)
        dest.deliver((b"acme", SENDER_A, 0.0))
        dest.deliver((b"acme", SENDER_A, 0.0))
        await settle(channel, 2)
        assert channel.sent[-1][0] == b"mvm-1:2"
        await manager.terminate("mvm-1", "maximumDurationInSeconds reached")
        assert dest.metrics.flows == 0          # its sockets went with it
        dest.deliver((b"acme", SENDER_A, 0.0))
        await settle(channel, 3)
        assert channel.sent[-1][0] == b"mvm-2:1"   # a new instance: the count restarts
        assert manager.runs[-1]["clientToken"] == "udp:udp-abc:vms:acme:1"
        m = dest.metrics
        assert (m.instances_started, m.instances_replaced) == (2, 1)
        dest.close()

    uvloop.run(scenario())


def test_suspended_instance_is_resumed_by_a_packet_and_keeps_its_state():
    async def scenario():
        manager = FakeManager()
        dest, channel = destination(manager, MaxIdle=60, MaxSuspended=120)
        assert manager.runs == []
        dest.deliver((b"acme", SENDER_A, 0.0))
        await settle(channel, 1)
        assert manager.runs[0]["idlePolicy"] == {"maxIdleDurationSeconds": 60, "suspendedDurationSeconds": 120,
                                                 "autoResumeEnabled": True}
        manager.instances["mvm-1"].set("SUSPENDED")
        dest.deliver((b"acme", SENDER_A, 0.0))
        await settle(channel, 2)
        assert channel.sent[-1][0] == b"mvm-1:2" and manager.resumes == 1
        assert dest.metrics.instances_resumed == 1 and len(manager.runs) == 1
        dest.close()

    uvloop.run(scenario())


def test_suspended_without_auto_resume_drops():
    async def scenario():
        manager = FakeManager()
        dest, channel = destination(manager, MaxIdle=60, AutoResume=False)
        dest.deliver((b"acme", SENDER_A, 0.0))
        await settle(channel, 1)
        manager.instances["mvm-1"].set("SUSPENDED")
        dest.deliver((b"acme", SENDER_A, 0.0))
        await settle(channel, 2, timeout=0.2)
        assert len(channel.sent) == 1 and dest.metrics.dropped_suspended == 1 and manager.resumes == 0
        dest.close()

    uvloop.run(scenario())


def test_failed_start_backs_off():
    async def scenario():
        manager = FakeManager()
        manager.fail_run = ApiError("ServiceQuotaExceededException", "over the memory quota")
        dest, channel = destination(manager)
        dest.deliver((b"acme", SENDER_A, 0.0))
        await asyncio.sleep(0.02)
        for _ in range(20):
            dest.deliver((b"acme", SENDER_A, 0.0))
        await asyncio.sleep(0.02)
        m = dest.metrics
        assert len(manager.runs) == 1 and m.start_failures == 1 and m.dropped_start == 21 and m.held == 0
        # The app never came up (launch failed): counted the same way.
        manager.fail_run = None
        manager.fail_launch = True
        dest._tenants[b"acme"].retry_at = 0.0
        dest.deliver((b"acme", SENDER_A, 0.0))
        await asyncio.sleep(0.05)
        assert m.start_failures == 2 and m.dropped_start == 22 and channel.sent == []
        dest.close()

    uvloop.run(scenario())


def test_generation_continues_after_a_restart():
    async def scenario():
        manager = FakeManager()
        # What a restarted server has: the previous run's instance, TERMINATED, under generation 3.
        old = FakeMvm("mvm-old", {})
        old.doc["state"] = "TERMINATED"
        manager.instances["mvm-old"] = old
        manager.by_token["udp:udp-abc:vms:acme:3"] = "mvm-old"
        dest, channel = destination(manager)
        dest.deliver((b"acme", SENDER_A, 0.0))
        await settle(channel, 1)
        assert [r["clientToken"] for r in manager.runs] == ["udp:udp-abc:vms:acme:3", "udp:udp-abc:vms:acme:4"]
        assert channel.sent == [(b"mvm-1:1", SENDER_A)]
        dest.close()

    uvloop.run(scenario())


def test_flows_are_bounded_per_tenant(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(md, "MAX_FLOWS_PER_TENANT", 2)

    async def scenario():
        manager = FakeManager()
        dest, channel = destination(manager)
        for port in range(3):
            dest.deliver((b"acme", ("192.0.2.9", 4000 + port), float(port)))
            await settle(channel, port + 1)
        assert dest.metrics.flows == 2 and dest.metrics.flows_closed == 1
        assert [a[1] for _, a in channel.sent] == [4000, 4001, 4002]
        dest.close()

    uvloop.run(scenario())


def test_bad_tenant_ids_are_dropped():
    async def scenario():
        manager = FakeManager()
        dest, _ = destination(manager)
        dest.deliver((b"ab", SENDER_A, 0.0))             # [0:4] reads past the end
        dest.deliver((b"\xff\xfe\xfd\xfc", SENDER_A, 0.0))  # not ascii
        await asyncio.sleep(0.01)
        assert dest.metrics.dropped_tenant == 2 and manager.runs == []
        dest.close()

    uvloop.run(scenario())


def test_http_delivery_posts_messages_and_routes_replies():
    async def scenario():
        async def app(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                doc = orjson.loads(await reader.readexactly(length))
                replies = [{"Tag": msg["Tag"], "Data": msg["Data"]} for msg in doc["Messages"]]
                body = orjson.dumps({"Replies": replies})
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)

        server = await asyncio.start_server(app, "127.0.0.1", 0)
        manager = FakeManager()
        manager.http_port = server.sockets[0].getsockname()[1]
        dest, channel = destination(manager, Delivery="http", Port=7000)
        dest.deliver((b"acme-1", SENDER_A, 0.0))
        dest.deliver((b"acme-2", SENDER_B, 0.0))
        await settle(channel, 2)
        assert sorted(channel.sent) == [(b"acme-1", SENDER_A), (b"acme-2", SENDER_B)]
        assert dest.metrics.delivered == 2 and dest.metrics.batches >= 1
        dest.close()
        server.close()

    uvloop.run(scenario())


def test_config_of_a_microvm_destination():
    def parse(**dest):
        return parse_listener({"Destinations": [{"Type": "microvm", **dest}]}, listener_id="udp-x",
                              default_host="127.0.0.1").destinations[0]

    d = parse(Image="img", Arguments={"TenantIdExpression": "[0:4]", "Port": 9000, "MaxIdle": 90})
    assert (d.image, d.port, d.max_idle, d.max_suspended, d.auto_resume, d.delivery) == ("img", 9000, 90, 28800,
                                                                                         True, "udp")
    assert d.doc()["Arguments"]["MaxSuspended"] == 28800 and d.doc()["Image"] == "img"
    h = parse(Image="img", Formatter="hex", Batching={"Count": 5}, Arguments={"Delivery": "http"})
    assert (h.formatter, h.batching.count, h.delivery) == ("hex", 5, "http")
    assert h.doc()["Batching"] == {"Count": 5} and h.doc()["Formatter"] == "hex"
    for c in (d, h):   # what the store keeps parses back to the same destination
        assert parse(**{k: v for k, v in c.doc().items() if k != "Type"}) == c
    for bad, field in [({}, "Image"), ({"Image": "i", "Function": "f"}, "Function"),
                       ({"Image": "i", "Arguments": {"Port": 0}}, "Port"),
                       ({"Image": "i", "Arguments": {"MaxDuration": 28801}}, "MaxDuration"),
                       ({"Image": "i", "Arguments": {"MaxSuspended": 5}}, "MaxSuspended"),
                       ({"Image": "i", "Arguments": {"AutoResume": "yes"}}, "AutoResume"),
                       ({"Image": "i", "Arguments": {"Delivery": "tcp"}}, "Delivery"),
                       ({"Image": "i", "Arguments": {"Nope": 1}}, "Nope"),
                       ({"Image": "i", "MaxInFlightBatches": 2}, "MaxInFlightBatches"),
                       ({"Image": "i", "Formatter": "hex"}, "Formatter"),
                       ({"Image": "i", "Batching": {"Count": 5}}, "Batching")]:
        with pytest.raises(ConfigError) as err:
            parse(**bad)
        assert field in err.value.field


def test_cli_builds_a_microvm_destination():
    from lamina.cli.udp import build_request, parse_destination

    assert parse_destination("microvm:counter") == {"Type": "microvm", "Image": "counter"}
    body = build_request(port=0, host=None, name=None, destinations=["microvm:counter"], allow=[], batch_count=None,
                         batch_timeout=None, batch_size_mb=None, formatter=None, tenant_id=None,
                         tenant_expression="[0:4]", tenant_formatter="hex", max_in_flight=None, log_rate=None,
                         microvm={"Port": 7000, "MaxIdle": 60, "MaxSuspended": None, "AutoResume": False,
                                  "Delivery": None, "MaxDuration": None})
    d = body["Destinations"][0]
    assert d == {"Type": "microvm", "Image": "counter",
                 "Arguments": {"TenantIdExpression": "[0:4]", "TenantIdFormatter": "hex", "Port": 7000,
                               "MaxIdle": 60, "AutoResume": False}}
    parsed = parse_listener(body, listener_id="udp-c", default_host="127.0.0.1").destinations[0]
    assert (parsed.port, parsed.max_idle, parsed.auto_resume) == (7000, 60, False)


def test_idle_flows_expire_and_ended_tenants_are_forgotten():
    async def scenario():
        manager = FakeManager()
        dest, channel = destination(manager)
        now = time.time()
        dest.deliver((b"acme", SENDER_A, now - 1000))     # long ago
        dest.deliver((b"acme", SENDER_B, now))
        dest.deliver((b"bolt", SENDER_A, now - 1000))
        await settle(channel, 3)
        assert dest.metrics.flows == 3
        await manager.terminate("mvm-2")                     # bolt's instance ends; the tenant has been idle
        dest._tenants[b"bolt"].last = now - 1000
        dest._sweep()
        assert dest.metrics.flows == 1 and dest.metrics.tenants == 1
        assert list(dest._tenants[b"acme"].flows) == [SENDER_B]
        dest.deliver((b"acme", SENDER_A, now))             # the expired sender gets a new flow
        await settle(channel, 4)
        assert channel.sent[-1] == (b"mvm-1:3", SENDER_A) and dest.metrics.flows == 2
        dest.close()

    uvloop.run(scenario())
