"""The hot-path protocol's keep-alive timeout (gateway/http/fast_http.py): one re-arming timer per connection instead of
uvicorn's timer per response, with the same behaviour: an idle keep-alive connection closes after
timeout_keep_alive, a busy one (a request in flight, however long) never does, and a connection kept busy by
back-to-back requests keeps the one timer it has. Time is a fake clock driven by the test."""

from __future__ import annotations

import asyncio

import uvicorn
from test_hot_path_protocol import FakeTransport, StubApp, _invoke, _settle
from uvicorn.server import ServerState

from lamina.dispatch.invocation import InvokeResult
from lamina.gateway.http.fast_http import protocol_for

TIMEOUT = 5.0


class _Timer:
    def __init__(self, when: float, callback) -> None:
        self.when, self.callback, self.cancelled = when, callback, False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClockLoop:
    """The running loop, but with time() and call_later() on a clock the test advances."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.now = 1000.0
        self.timers: list[_Timer] = []
        self.calls = 0

    def __getattr__(self, name: str):
        return getattr(self._loop, name)

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback, *args):
        self.calls += 1
        timer = _Timer(self.now + delay, lambda: callback(*args))
        self.timers.append(timer)
        return timer

    def advance(self, seconds: float) -> None:
        self.now += seconds
        while True:
            due = [t for t in self.timers if not t.cancelled and t.when <= self.now]
            if not due:
                return
            timer = min(due, key=lambda t: t.when)
            self.timers.remove(timer)
            timer.callback()

    @property
    def armed(self) -> int:
        return sum(1 for t in self.timers if not t.cancelled)


def _protocol(app: StubApp):
    config = uvicorn.Config(app, http=protocol_for(app), lifespan="off", proxy_headers=False,  # type: ignore[arg-type]
                            timeout_keep_alive=TIMEOUT)  # type: ignore[arg-type]
    config.load()
    proto = config.http_protocol_class(config=config, server_state=ServerState(), app_state={})
    transport = FakeTransport()
    proto.connection_made(transport)
    clock = FakeClockLoop(proto.loop)
    proto.loop = clock
    return proto, transport, clock


def _answer(app: StubApp) -> None:
    app.invoke.pending.pop()(InvokeResult(b"{}", None, "", "1"))


def test_idle_connection_closes_after_the_timeout() -> None:
    async def run() -> None:
        app = StubApp()
        proto, transport, clock = _protocol(app)
        proto.data_received(_invoke("fn", b"{}"))
        _answer(app)
        assert transport.data.startswith(b"HTTP/1.1 200 ") and not transport.closed
        clock.advance(TIMEOUT - 0.01)
        assert not transport.closed
        clock.advance(0.02)
        assert transport.closed

    asyncio.run(run())


def test_back_to_back_requests_keep_one_timer_and_the_connection() -> None:
    async def run() -> None:
        app = StubApp()
        proto, transport, clock = _protocol(app)
        for _ in range(40):  # 40 requests over 8x the timeout, each arriving before the timeout
            proto.data_received(_invoke("fn", b"{}"))
            _answer(app)
            clock.advance(TIMEOUT / 5)
            assert clock.armed == 1 and not transport.closed
        assert clock.calls <= 10  # the one timer, re-armed each time it fired (uvicorn arms one per response: 40)
        clock.advance(TIMEOUT)
        assert transport.closed

    asyncio.run(run())


def test_a_long_request_is_not_cut_by_the_keep_alive_timeout() -> None:
    async def run() -> None:
        app = StubApp()
        proto, transport, clock = _protocol(app)
        proto.data_received(_invoke("fn", b"{}"))
        _answer(app)
        clock.advance(TIMEOUT / 2)
        proto.data_received(_invoke("fn", b"{}"))  # arrives while the timer is armed; its answer takes long
        clock.advance(TIMEOUT * 3)
        assert not transport.closed and clock.armed == 0  # the timer fired, saw a request under way, stopped
        _answer(app)
        assert transport.data.count(b"HTTP/1.1 200 ") == 2 and not transport.closed and clock.armed == 1
        clock.advance(TIMEOUT - 0.01)
        assert not transport.closed
        clock.advance(0.02)
        assert transport.closed

    asyncio.run(run())


def test_asgi_responses_arm_the_same_timer() -> None:
    async def run() -> None:
        app = StubApp()
        proto, transport, clock = _protocol(app)
        proto.data_received(b"GET /2015-03-31/functions HTTP/1.1\r\nHost: x\r\n\r\n")
        await _settle()
        assert transport.data.endswith(b"ok") and not transport.closed and clock.armed == 1
        clock.advance(TIMEOUT + 0.01)
        assert transport.closed

    asyncio.run(run())


def test_connection_lost_cancels_the_timer() -> None:
    async def run() -> None:
        app = StubApp()
        proto, _transport, clock = _protocol(app)
        proto.data_received(_invoke("fn", b"{}"))
        _answer(app)
        assert clock.armed == 1
        proto.connection_lost(None)
        assert clock.armed == 0 and proto.timeout_keep_alive_task is None

    asyncio.run(run())
