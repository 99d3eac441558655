"""A listener on a real loopback socket with a fake function service: replies come from the listener's own
port, the allow-list drops and counts, stop() frees the port (gateway/udp/listener.py)."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket

import orjson
import pytest
import uvloop
from test_udp_batching import FakeFunctions

from lamina.dispatch.invocation import InvokeResult
from lamina.gateway.udp.config import parse_listener
from lamina.gateway.udp.listener import BindError, UdpListener


async def echo(functions: FakeFunctions, stop: asyncio.Event) -> None:
    """Answer every invocation with one reply per message: b"re:" + the data."""
    while not stop.is_set():
        while functions.dispatcher.invocations:
            inv = functions.dispatcher.invocations.pop(0)
            msgs = orjson.loads(inv.payload)["Messages"]
            replies = [{"Tag": m["Tag"], "Data": base64.b64encode(b"re:" + base64.b64decode(m["Data"])).decode()}
                       for m in msgs]
            inv.finish(InvokeResult(orjson.dumps({"Replies": replies})))
        await asyncio.sleep(0.005)


def _exchange(family: int, host: str, port: int, payload: bytes) -> tuple[bytes, tuple] | None:
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        sock.bind((host, 0))
        sock.sendto(payload, (host, port))
        try:
            return sock.recvfrom(2048)
        except TimeoutError:
            return None


async def exchange(family: int, host: str, port: int, payload: bytes) -> tuple[bytes, tuple] | None:
    """Send one datagram from a fresh socket and wait up to 0.5 s for an answer (uvloop has no sock_recvfrom)."""
    return await asyncio.to_thread(_exchange, family, host, port, payload)


def listen(networks: list[str] | None = None, host: str = "127.0.0.1", port: int = 0):
    body = {"Host": host, "Port": port, "Destinations": [{"Function": "f"}]}
    if networks is not None:
        body["ClientRestrictions"] = {"Networks": networks}
    functions = FakeFunctions()
    return UdpListener(parse_listener(body, listener_id="udp-t", default_host="127.0.0.1"), functions), functions


def test_replies_from_the_listeners_port_and_allow_list():
    async def scenario():
        listener, functions = listen(["127.0.0.2/32", "::1/128"])
        await listener.start()
        stop = asyncio.Event()
        responder = asyncio.create_task(echo(functions, stop))
        try:
            # 127.0.0.1 is not on the list: nothing comes back, and the drop is counted.
            assert await exchange(socket.AF_INET, "127.0.0.1", listener.port, b"hi") is None
            assert listener.metrics.dropped_restricted == 1
            assert listener.metrics.packets_in == 1 and listener.destinations[0].metrics.packets == 0
            listener.allow.networks.append(ipaddress.ip_network("127.0.0.1/32"))
            listener.allow._cache.clear()
            got = await exchange(socket.AF_INET, "127.0.0.1", listener.port, b"hi")
            assert got == (b"re:hi", ("127.0.0.1", listener.port))
            m = listener.metrics
            assert (m.packets_in, m.bytes_in, m.packets_out, m.bytes_out) == (2, 4, 1, 5)
            assert listener.doc()["Destinations"][0]["Metrics"]["Replies"] == 1
        finally:
            stop.set()
            await responder
            await listener.stop()
    uvloop.run(scenario())  # the server's loop


def test_ipv6_listener():
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this host")

    async def scenario():
        try:
            listener, functions = listen(host="::1")
            await listener.start()
        except BindError as exc:
            pytest.skip(f"no IPv6 loopback: {exc}")
        stop = asyncio.Event()
        responder = asyncio.create_task(echo(functions, stop))
        try:
            got = await exchange(socket.AF_INET6, "::1", listener.port, b"six")
            assert got is not None and got[0] == b"re:six" and got[1][1] == listener.port
            assert listener.doc()["Endpoint"] == f"[::1]:{listener.port}"
        finally:
            stop.set()
            await responder
            await listener.stop()
    uvloop.run(scenario())  # the server's loop


def test_stop_frees_the_port_and_a_taken_port_is_a_clear_error():
    async def scenario():
        first, _ = listen()
        await first.start()
        second, _ = listen(port=first.port)
        with pytest.raises(BindError) as info:
            await second.start()
        assert info.value.in_use and "already in use" in str(info.value) and second.state == "Failed"
        await first.stop()
        third, _ = listen(port=first.port)
        await third.start()           # free again as soon as stop() returned
        assert third.port == first.port
        await third.stop()
    uvloop.run(scenario())  # the server's loop
