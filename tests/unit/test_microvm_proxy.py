"""The MicroVM endpoint proxy in a real uvicorn on loopback, in front of fake-engine instances:
token checks, header stripping, streaming both ways, keep-alive, auto-resume and WebSocket."""

from __future__ import annotations

import asyncio
import http.client
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import uvicorn
from microvm_fake import CLOSED_PORT, WS_PORT, FakeEngine
from test_microvm_manager import built, running, until
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import InvalidStatus

from helpers import free_port
from lamina.config import Settings
from lamina.gateway.http.microvm_proxy import MicrovmProxy, match
from lamina.microvm.manager import MicrovmManager
from lamina.microvm.tokens import port_ranges
from lamina.store.db import Database


class Harness:
    def __init__(self, mgr: MicrovmManager, port: int, proxy: MicrovmProxy) -> None:
        self.mgr = mgr
        self.port = port
        self.proxy = proxy

    def token(self, mid: str, ports: list[dict] | None = None, minutes: int = 5) -> str:
        return self.mgr.tokens.issue(mid, port_ranges(ports or [{"port": 8080}]), minutes)

    def request(self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes | None = None,
                conn: http.client.HTTPConnection | None = None,
                encode_chunked: bool = False) -> tuple[int, dict, bytes]:
        own = conn is None
        conn = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.request(method, path, body=body, headers=headers or {}, encode_chunked=encode_chunked)
        resp = conn.getresponse()
        data = resp.read()
        if own:
            conn.close()
        return resp.status, {k.lower(): val for k, val in resp.getheaders()}, data

    async def call(self, *args, **kwargs) -> tuple[int, dict, bytes]:
        return await asyncio.to_thread(self.request, *args, **kwargs)


def serve(tmp: Path, body: Callable[[Harness], Awaitable[None]], engine: FakeEngine | None = None,
          **settings) -> None:
    async def main() -> None:
        db = Database(tmp / "data" / "lamina.db")
        mgr = MicrovmManager(Settings(data_dir=tmp / "data", **settings), db, engine or FakeEngine())
        mgr.load()
        mgr.start()
        proxy = MicrovmProxy(mgr)

        async def app(scope, receive, send) -> None:
            target = match(scope)
            assert target is not None, scope["path"]
            await proxy(scope, receive, send, *target)

        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning",
                                               http="httptools"))
        task = asyncio.get_running_loop().create_task(server.serve())
        await until(lambda: server.started)
        try:
            await built(mgr, tmp)
            await body(Harness(mgr, port, proxy))
        finally:
            server.should_exit = True
            await task
            await mgr.close()
            db.close()

    asyncio.run(main())


def test_match() -> None:
    host = b"mvm-1.lambda-microvm.us-east-1.localhost:8800"
    scope = {"path": "/x", "raw_path": b"/x?q=1", "headers": [(b"host", host)]}
    assert match(scope) == ("mvm-1", b"/x")
    scope = {"path": "/", "raw_path": b"/lamina/v1/microvm/mvm-2/a/b?c", "headers": [(b"host", b"127.0.0.1")]}
    assert match(scope) == ("mvm-2", b"/a/b")
    assert match({"path": "/2025-09-09/microvms", "headers": [(b"host", b"127.0.0.1:8800")]}) is None


def test_tokens_are_checked(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        mid = await running(h.mgr)
        other = await running(h.mgr)
        path = f"/lamina/v1/microvm/{mid}/count"
        status, headers, data = await h.call("GET", path)
        assert status == 403 and headers["x-amzn-errortype"] == "AccessDeniedException", data
        assert b"Missing" in data
        for token, port in ((h.token(other), None), (h.token(mid), "5000"),
                            (h.mgr.tokens.issue(mid, "all", 1, now=0), None), (h.token(mid)[:-3] + "abc", None)):
            headers = {"X-aws-proxy-auth": token}
            if port:
                headers["X-aws-proxy-port"] = port
            status, _, data = await h.call("GET", path, headers)
            assert status == 403, data
        status, _, data = await h.call("GET", path, {"X-aws-proxy-auth": h.token(mid), "X-aws-proxy-port": "x"})
        assert status == 400
        status, _, data = await h.call("GET", path, {"X-aws-proxy-auth": h.token(mid)})
        assert status == 200 and data == b"1"

    serve(tmp_path, body)


def test_host_routing_and_header_stripping(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        mid = await running(h.mgr)
        endpoint = h.mgr.get(mid)["endpoint"]
        status, _, data = await h.call("GET", "/headers", {
            "Host": endpoint, "X-aws-proxy-auth": h.token(mid), "X-aws-proxy-port": "8080",
            "X-aws-proxy-force-h2": "false", "X-Custom": "kept"})
        assert status == 200, data
        seen = {k.lower(): val for k, val in json.loads(data).items()}
        assert seen["x-custom"] == "kept" and seen["host"] == endpoint
        assert not any(k.startswith("x-aws-proxy-") for k in seen), seen
        # A port nothing listens on: 502 with a reason.
        status, headers, data = await h.call("GET", f"/lamina/v1/microvm/{mid}/", {
            "X-aws-proxy-auth": h.token(mid, [{"allPorts": {}}]), "X-aws-proxy-port": str(CLOSED_PORT)})
        assert status == 502 and b"port 9999" in data

    serve(tmp_path, body)


def test_wrong_port_502_names_the_exposed_port(tmp_path: Path) -> None:
    # The launch article's app listens on its EXPOSEd 5000 while the proxy's default is 8080: say so.
    engine = FakeEngine()
    engine.expose = [CLOSED_PORT, 5000]

    async def body(h: Harness) -> None:
        mid = await running(h.mgr)
        status, _, data = await h.call("GET", f"/lamina/v1/microvm/{mid}/", {
            "X-aws-proxy-auth": h.token(mid, [{"allPorts": {}}]), "X-aws-proxy-port": str(CLOSED_PORT)})
        assert status == 502, data
        message = json.loads(data)["message"]
        assert "the image EXPOSEs 5000" in message and "X-aws-proxy-port: 5000" in message, message

    serve(tmp_path, body, engine)


def test_streaming_both_ways_and_keep_alive(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        mid = await running(h.mgr)
        auth = {"X-aws-proxy-auth": h.token(mid)}
        status, headers, data = await h.call("GET", f"/lamina/v1/microvm/{mid}/stream", auth)
        assert status == 200 and data == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
        assert headers.get("transfer-encoding") == "chunked"
        big = bytes(range(256)) * 40_000  # ~10 MB: no size limit
        status, _, data = await h.call("POST", f"/lamina/v1/microvm/{mid}/echo", auth, big)
        assert status == 200 and data == big

        def chunked() -> tuple[int, dict, bytes]:
            return h.request("POST", f"/lamina/v1/microvm/{mid}/echo", auth, iter([b"a" * 1000, b"b" * 10]),
                             encode_chunked=True)

        status, _, data = await asyncio.to_thread(chunked)
        assert status == 200 and data == b"a" * 1000 + b"b" * 10

        def three_on_one() -> list[bytes]:
            conn = http.client.HTTPConnection("127.0.0.1", h.port, timeout=30)
            out = [h.request("GET", f"/lamina/v1/microvm/{mid}/count", auth, conn=conn)[2] for _ in range(3)]
            conn.close()
            return out

        assert await asyncio.to_thread(three_on_one) == [b"1", b"2", b"3"]
        # The app connections were kept for reuse.
        assert len(h.proxy.pool[(mid, 8080)]) >= 1
        await h.mgr.terminate(mid)
        assert (mid, 8080) not in h.proxy.pool

    serve(tmp_path, body)


def test_auto_resume_and_suspended_refusal(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        policy = {"maxIdleDurationSeconds": 60, "suspendedDurationSeconds": 60, "autoResumeEnabled": True}
        mid = await running(h.mgr, idlePolicy=policy)
        auth = {"X-aws-proxy-auth": h.token(mid)}
        assert (await h.call("GET", f"/lamina/v1/microvm/{mid}/count", auth))[2] == b"1"
        await h.mgr.suspend(mid)
        status, _, data = await h.call("GET", f"/lamina/v1/microvm/{mid}/count", auth)
        assert status == 200 and data == b"2"  # resumed, memory kept
        assert h.mgr.get(mid)["state"] == "RUNNING"
        plain = await running(h.mgr)
        await h.mgr.suspend(plain)
        status, headers, data = await h.call("GET", f"/lamina/v1/microvm/{plain}/count",
                                             {"X-aws-proxy-auth": h.token(plain)})
        assert status == 409 and headers["x-amzn-errortype"] == "ConflictException" and b"ResumeMicrovm" in data
        await h.mgr.terminate(plain)
        status, _, _ = await h.call("GET", f"/lamina/v1/microvm/{plain}/count", {"X-aws-proxy-auth": h.token(plain)})
        assert status == 410

    serve(tmp_path, body)


def test_websocket(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        mid = await running(h.mgr)
        token = h.token(mid, [{"port": WS_PORT}])
        url = f"ws://127.0.0.1:{h.port}/lamina/v1/microvm/{mid}/ws"
        async with ws_connect(url, additional_headers={"X-aws-proxy-auth": token,
                                                        "X-aws-proxy-port": str(WS_PORT)}) as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
            await ws.send(b"\x00\x01" * 100_000)
            assert await ws.recv() == b"\x00\x01" * 100_000
        # The browser form: the token and port as subprotocols.
        protocols = ["lambda-microvms", f"lambda-microvms.authentication.{token}", f"lambda-microvms.port.{WS_PORT}"]
        async with ws_connect(url, subprotocols=protocols) as ws:
            assert ws.subprotocol == "lambda-microvms"
            await ws.send("via subprotocol")
            assert await ws.recv() == "via subprotocol"
        with pytest.raises(InvalidStatus) as err:
            async with ws_connect(url, subprotocols=["lambda-microvms", "lambda-microvms.authentication.bad"]):
                pass
        assert err.value.response.status_code == 403
        with pytest.raises(InvalidStatus):
            async with ws_connect(url, additional_headers={"X-aws-proxy-auth": h.token(mid)}):  # port 8080 only
                pass

    serve(tmp_path, body)


def test_failed_auto_resume_is_502(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        policy = {"maxIdleDurationSeconds": 60, "suspendedDurationSeconds": 60, "autoResumeEnabled": True}
        mid = await running(h.mgr, idlePolicy=policy)
        await h.mgr.suspend(mid)
        status, headers, data = await h.call("GET", f"/lamina/v1/microvm/{mid}/count",
                                             {"X-aws-proxy-auth": h.token(mid)})
        assert status == 502 and b"could not be resumed" in data and b"/resume hook" in data
        assert h.mgr.get(mid)["state"] == "TERMINATED"

    serve(tmp_path, body, FakeEngine(fail_hooks="resume"))


def test_request_held_until_run_hook_returned(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        resp = h.mgr.run({"imageIdentifier": "demo"})
        mid = resp["microvmId"]
        assert resp["state"] == "PENDING"
        status, _, data = await h.call("GET", f"/lamina/v1/microvm/{mid}/hooks", {"X-aws-proxy-auth": h.token(mid)})
        # Answered only once RUNNING: the app had already seen /run.
        assert status == 200 and json.loads(data)[0][0] == "run"

    serve(tmp_path, body)


def test_concurrent_requests(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        mid = await running(h.mgr)
        auth = {"X-aws-proxy-auth": h.token(mid)}
        results = await asyncio.gather(*(h.call("GET", f"/lamina/v1/microvm/{mid}/count", auth) for _ in range(24)))
        assert all(status == 200 for status, _, _ in results)
        assert sorted(int(data) for _, _, data in results) == list(range(1, 25))
        assert h.mgr.instances[mid].in_flight == 0
        assert len(h.proxy.pool[(mid, 8080)]) <= 16  # idle connections kept, but not without bound

    serve(tmp_path, body)
