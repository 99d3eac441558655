"""Function destinations without a server: batching rules, the event's shape, reply matching, tenancy,
errors and overload (gateway/udp/function_destination.py), and the log sink's rate bound."""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import time

import orjson
import pytest

from lamina.dispatch.invocation import Invocation, InvokeResult, Throttled
from lamina.functions.errors import not_found
from lamina.gateway.udp.config import parse_listener
from lamina.gateway.udp.function_destination import FunctionDestination
from lamina.gateway.udp.sinks import LogSink

ARN = "arn:aws:lambda:us-east-1:000000000000:function:f"


class FakeFunction:
    def __init__(self, per_tenant: bool = False) -> None:
        self.name = "f"
        self.version = "$LATEST"
        self.key = "f:$LATEST"
        self.state = "Active"
        self.config: dict = {"FunctionArn": ARN}
        if per_tenant:
            self.config["TenancyConfig"] = {"TenantIsolationMode": "PER_TENANT"}


class FakeDispatcher:
    """Records invocations; the test resolves them (or has submit throttle)."""

    def __init__(self) -> None:
        self.pools = {"f:$LATEST": object()}
        self.invocations: list[Invocation] = []
        self.throttle = False

    def submit(self, key: str, inv: Invocation) -> None:
        if self.throttle:
            raise Throttled("ReservedFunctionConcurrentInvocationLimitExceeded")
        self.invocations.append(inv)


class FakeSink:
    """The async queue (events/): records accepted events; the test commits them (or not)."""

    def __init__(self) -> None:
        self.accepted: list = []

    def accept(self, event, done) -> None:
        self.accepted.append((event, done))


class FakeFunctions:
    def __init__(self, per_tenant: bool = False) -> None:
        self.dispatcher = FakeDispatcher()
        self.fn = FakeFunction(per_tenant)
        self.event_sink = FakeSink()

    def target(self, name: str, qualifier: str | None = None):
        if name != "f":
            raise not_found(f"arn:aws:lambda:us-east-1:000000000000:function:{name}")
        return self.fn, None

    @staticmethod
    def pick(fn, qualifier):
        return fn


class FakeChannel:
    def __init__(self, ipv6: bool = False) -> None:
        self.local = {"Domain": "127.0.0.1", "Port": 9999}
        self.ipv6 = ipv6
        self.sent: list[tuple[bytes, tuple]] = []

    def send(self, data: bytes, addr: tuple) -> bool:
        self.sent.append((data, addr))
        return True


def destination(functions: FakeFunctions | None = None, *, ipv6: bool = False, **doc):
    dest_doc = {"Function": "f", **doc}
    cfg = parse_listener({"Destinations": [dest_doc]}, listener_id="udp-t", default_host="127.0.0.1")
    functions = functions or FakeFunctions()
    channel = FakeChannel(ipv6)
    d = FunctionDestination(cfg.destinations[0], channel, functions,
                            asynchronous=dest_doc.get("Type") == "function-async")
    return d, functions.dispatcher, channel


def packet(data: bytes, port: int = 40000, ip: str = "127.0.0.1") -> tuple:
    return (data, (ip, port), time.time())


def messages(inv: Invocation) -> list[dict]:
    return orjson.loads(inv.payload)["Messages"]


def run(coro):
    return asyncio.run(coro)


async def ticks(n: int = 3) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


# ------------------------------------------------------------------------------------------ batching


def test_count_closes_a_batch_at_once():
    async def scenario():
        d, disp, _ = destination(Batching={"Count": 3, "TimeoutInSeconds": 60})
        for i in range(7):
            d.deliver(packet(b"p%d" % i))
        assert [len(messages(inv)) for inv in disp.invocations] == [3, 3]   # no waiting for the window
        d.close()
    run(scenario())


def test_timeout_closes_a_batch_after_its_first_packet():
    async def scenario():
        d, disp, _ = destination(Batching={"Count": 100, "TimeoutInSeconds": 0.05})
        for i in range(5):
            d.deliver(packet(b"p%d" % i))
        await ticks()
        assert disp.invocations == []
        await asyncio.sleep(0.2)
        assert [len(messages(inv)) for inv in disp.invocations] == [5]
        d.close()
    run(scenario())


def test_no_window_batches_one_loop_tick():
    async def scenario():
        d, disp, _ = destination()
        for i in range(4):
            d.deliver(packet(b"a%d" % i))
        assert disp.invocations == []        # not one invocation per packet ...
        await ticks()
        d.deliver(packet(b"b"))
        await ticks()
        assert [len(messages(inv)) for inv in disp.invocations] == [4, 1]   # ... but one per tick
        d.close()
    run(scenario())


def test_size_closes_a_batch():
    async def scenario():
        d, disp, _ = destination(Batching={"SizeInMb": 0.1, "TimeoutInSeconds": 60})
        for _ in range(5):
            d.deliver(packet(b"x" * 40_000))
        # 40 kB + 40 kB < 100 kiB; the third reaches it.
        assert [len(messages(inv)) for inv in disp.invocations] == [3]
        d.close()
    run(scenario())


def test_batches_stay_under_the_payload_limit():
    async def scenario():
        d, disp, _ = destination(Batching={"TimeoutInSeconds": 60})
        for _ in range(300):
            d.deliver(packet(b"\xff" * 60_000))
        assert disp.invocations
        for inv in disp.invocations:
            assert len(inv.payload) <= 6 * 1024 * 1024
        d.close()
    run(scenario())


def test_event_shape():
    async def scenario():
        d, disp, _ = destination(Formatter="base64")
        d.deliver(packet(b"hello", port=1234, ip="192.0.2.5"))
        d.deliver(packet(b"\x00\xff", port=1235, ip="2001:db8::1"))
        await ticks()
        (inv,) = disp.invocations
        assert inv.sync and inv.tenant_id is None and inv.invoked_arn == ARN
        m0, m1 = messages(inv)
        assert set(m0) == {"Tag", "Remote", "Local", "ReceivedAt", "Formatter", "Data"}
        assert m0["Remote"] == {"IpAddress": "192.0.2.5", "Port": 1234}
        assert m1["Remote"] == {"IpAddress": "2001:db8::1", "Port": 1235}
        assert m0["Local"] == {"Domain": "127.0.0.1", "Port": 9999}
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", m0["ReceivedAt"])
        assert m0["Formatter"] == "base64"
        assert base64.b64decode(m0["Data"]) == b"hello" and base64.b64decode(m1["Data"]) == b"\x00\xff"
        assert m0["Tag"] != m1["Tag"]
        d.close()
    run(scenario())


def test_text_formatter_drops_what_it_cannot_express():
    async def scenario():
        d, disp, _ = destination(Formatter="utf8")
        d.deliver(packet("héllo".encode()))
        d.deliver(packet(b"\xff\xfe"))
        await ticks()
        (inv,) = disp.invocations
        assert [m["Data"] for m in messages(inv)] == ["héllo"]
        assert d.metrics.dropped_format == 1
        d.close()
    run(scenario())


# ------------------------------------------------------------------------------------------ replies


def test_replies_go_to_the_sender_of_their_tag():
    async def scenario():
        d, disp, channel = destination()
        for i in range(3):
            d.deliver(packet(b"q%d" % i, port=5000 + i))
        await ticks()
        (inv,) = disp.invocations
        tags = [m["Tag"] for m in messages(inv)]
        b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
        replies = [{"Tag": tags[2], "Data": b64(b"r2")}, {"Tag": tags[0], "Data": b64(b"r0")},
                   {"Tag": "7", "Data": b64(b"?")}, {"Tag": "x", "Data": b64(b"?")}, {"Tag": "01", "Data": b64(b"?")},
                   {"Tag": 1, "Data": b64(b"?")}, {"Tag": tags[1], "Data": "not base64!"}, "junk"]
        inv.finish(InvokeResult(orjson.dumps({"Replies": replies})))
        await ticks()
        assert channel.sent == [(b"r2", ("127.0.0.1", 5002)), (b"r0", ("127.0.0.1", 5000))]
        m = d.metrics
        assert (m.replies, m.reply_bytes, m.unknown_tags, m.bad_replies) == (2, 4, 4, 2)
        assert (m.batches, m.invocations_ok, m.errors, m.in_flight) == (1, 1, 0, 0)
        d.close()
    run(scenario())


@pytest.mark.parametrize("body", [b"null", b"{}", b'{"Replies": []}', b'{"Replies": null}'])
def test_no_replies_is_fine(body):
    async def scenario():
        d, disp, channel = destination()
        d.deliver(packet(b"q"))
        await ticks()
        disp.invocations[0].finish(InvokeResult(body))
        await ticks()
        assert channel.sent == [] and d.metrics.errors == 0 and d.metrics.invocations_ok == 1
        d.close()
    run(scenario())


@pytest.mark.parametrize("body", [b"not json", b'{"Replies": "x"}', b"[1]"])
def test_bad_results_are_counted(body):
    async def scenario():
        d, disp, channel = destination()
        d.deliver(packet(b"q"))
        await ticks()
        disp.invocations[0].finish(InvokeResult(body))
        await ticks()
        assert channel.sent == [] and d.metrics.errors == 1
        d.close()
    run(scenario())


# ------------------------------------------------------------------------------------------ failures


def test_function_errors_throttles_and_missing_functions_are_counted(caplog):
    caplog.set_level(logging.WARNING, "lamina.udp")

    async def scenario():
        d, disp, channel = destination()
        d.deliver(packet(b"1"))
        await ticks()
        disp.invocations[-1].finish(InvokeResult(b'{"errorMessage": "boom"}', error_type="Unhandled"))
        d.deliver(packet(b"2"))
        await ticks()
        disp.invocations[-1].fail(Throttled("ConcurrentInvocationLimitExceeded"))
        disp.throttle = True
        d.deliver(packet(b"3"))
        await ticks()
        disp.throttle = False
        await ticks()
        m = d.metrics
        assert (m.batches, m.errors, m.throttles, m.in_flight) == (3, 1, 2, 0)
        # The gateway keeps going: the next batch is invoked as usual.
        d.deliver(packet(b"4"))
        await ticks()
        disp.invocations[-1].finish(InvokeResult(b"{}"))
        await ticks()
        assert m.invocations_ok == 1
        d.close()

        missing, disp2, _ = destination(Function="nope")
        missing.deliver(packet(b"5"))
        await ticks()
        assert disp2.invocations == [] and missing.metrics.errors == 1 and missing.metrics.in_flight == 0
    run(scenario())
    assert "boom" in caplog.text and "Function not found" in caplog.text


def test_overload_drops_and_counts():
    async def scenario():
        d, disp, _ = destination(MaxInFlightBatches=1, Batching={"Count": 1})
        for i in range(8):
            d.deliver(packet(b"%d" % i))
        m = d.metrics
        # One running, MIN_WAITING (4) waiting, three dropped: memory stays bounded.
        assert (len(disp.invocations), m.in_flight, m.dropped_overload) == (1, 1, 3)
        for i in range(5):
            assert messages(disp.invocations[i])[0]["Data"] == base64.b64encode(b"%d" % i).decode()
            disp.invocations[i].finish(InvokeResult(b"{}"))
            await ticks()
        assert len(disp.invocations) == 5 and m.in_flight == 0 and m.batches == 5 and m.invocations_ok == 5
        d.close()
    run(scenario())


# ------------------------------------------------------------------------------------------ tenancy


def test_batches_split_per_tenant():
    async def scenario():
        fns = FakeFunctions(per_tenant=True)
        d, disp, _ = destination(fns, Arguments={"TenantIdExpression": "[0:2]", "TenantIdFormatter": "ascii"},
                                 Batching={"TimeoutInSeconds": 0.05})
        for data in (b"aa1", b"bb1", b"aa2", b"", b"aa3", b"\xff\xff", b"bb2"):
            d.deliver(packet(data))
        await asyncio.sleep(0.2)
        got = {inv.tenant_id: [base64.b64decode(m["Data"]) for m in messages(inv)] for inv in disp.invocations}
        assert got == {"aa": [b"aa1", b"aa2", b"aa3"], "bb": [b"bb1", b"bb2"]}
        # b"" fails the expression; b"\xff\xff" is not ASCII: neither has a tenant.
        assert d.metrics.dropped_tenant == 2
        d.close()
    run(scenario())


def test_static_tenant_and_tenancy_mismatch():
    async def scenario():
        d, disp, _ = destination(FakeFunctions(per_tenant=True), Arguments={"TenantId": "blue"})
        d.deliver(packet(b"x"))
        await ticks()
        assert [inv.tenant_id for inv in disp.invocations] == ["blue"]
        d.close()
        # A PER_TENANT function without a tenant: every batch is an error saying what to configure.
        d2, disp2, _ = destination(FakeFunctions(per_tenant=True))
        d2.deliver(packet(b"x"))
        await ticks()
        assert disp2.invocations == [] and d2.metrics.errors == 1
        d2.close()
    run(scenario())


def test_async_sink_queues_events_and_sends_nothing():
    async def scenario():
        functions = FakeFunctions()
        d, disp, channel = destination(functions, Type="function-async")
        d.deliver(packet(b"x"))
        await ticks()
        assert disp.invocations == []                      # not run here: handed to the durable async queue
        ((event, done),) = functions.event_sink.accepted
        assert (event.function, event.version, event.invoked_arn) == ("f", "$LATEST", ARN)
        assert [base64.b64decode(m["Data"]) for m in orjson.loads(event.payload)["Messages"]] == [b"x"]
        assert d.metrics.in_flight == 1                    # until the queue has committed it
        done(None)
        await ticks()
        assert channel.sent == [] and d.metrics.invocations_ok == 1 and d.metrics.in_flight == 0
        d.close()
    run(scenario())


def test_close_drops_open_batches():
    async def scenario():
        d, disp, _ = destination(Batching={"TimeoutInSeconds": 0.05})
        d.deliver(packet(b"x"))
        d.close()
        await asyncio.sleep(0.1)
        assert disp.invocations == []
    run(scenario())


# ------------------------------------------------------------------------------------------ log sink


def test_log_sink_is_rate_bounded(caplog):
    caplog.set_level(logging.INFO, "lamina.udp.log")

    async def scenario():
        cfg = parse_listener({"Destinations": [{"Type": "log", "Formatter": "utf8",
                                                "Arguments": {"MaxLinesPerSecond": 3}}]},
                             listener_id="udp-t", default_host="127.0.0.1")
        sink = LogSink(cfg.destinations[0], "udp-t")
        for i in range(10):
            sink.deliver(packet(b"line %d" % i, port=4242))
        assert sink.metrics.packets == 10 and sink.metrics.suppressed == 7
        sink._say_left_out()
        sink.close()
    run(scenario())
    lines = [r.getMessage() for r in caplog.records if r.name == "lamina.udp.log"]
    assert lines[:3] == [f"udp udp-t/udp-t-1 127.0.0.1:4242 6 bytes utf8:line {i}" for i in range(3)]
    assert "7 packet(s) not logged" in lines[3] and len(lines) == 4


def test_received_at_is_iso_milliseconds_utc():
    from lamina.gateway.udp.destination import IsoClock

    clock = IsoClock()
    t = 1767225600.0    # 2026-01-01T00:00:00Z
    assert clock(t) == "2026-01-01T00:00:00.000Z"
    assert clock(t + 0.0004) == "2026-01-01T00:00:00.000Z"
    assert clock(t + 0.0015) == "2026-01-01T00:00:00.001Z"
    assert clock(t + 61.25) == "2026-01-01T00:01:01.250Z"
    assert clock(t - 0.001) == "2025-12-31T23:59:59.999Z"


def test_a_queue_of_batches_failing_at_once_does_not_recurse():
    async def scenario():
        d, disp, _ = destination(MaxInFlightBatches=1000, Batching={"Count": 1})
        for i in range(2000):
            d.deliver(packet(b"%d" % i))
        assert len(disp.invocations) == 1000 and len(d._waiting) == 1000
        disp.throttle = True
        disp.invocations[0].finish(InvokeResult(b"{}"))
        await ticks()
        m = d.metrics
        assert (m.throttles, m.in_flight, len(d._waiting), m.batches) == (1000, 999, 0, 2000)
        d.close()
    run(scenario())


def test_a_batch_the_formatter_cannot_express_is_not_invoked():
    async def scenario():
        d, disp, _ = destination(Formatter="ascii")
        d.deliver(packet(b"\x80"))
        await ticks()
        assert disp.invocations == [] and d.metrics.dropped_format == 1 and d.metrics.batches == 0
        d.close()
    run(scenario())


def test_ipv4_senders_of_an_ipv6_socket_show_as_ipv4():
    async def scenario():
        d, disp, _ = destination(ipv6=True)
        d.deliver((b"a", ("::ffff:192.0.2.1", 1000, 0, 0), time.time()))
        d.deliver((b"b", ("2001:db8::ffff:1", 1001, 0, 0), time.time()))
        await ticks()
        assert [m["Remote"]["IpAddress"] for m in messages(disp.invocations[0])] == ["192.0.2.1", "2001:db8::ffff:1"]
        d.close()
    run(scenario())
