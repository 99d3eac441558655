"""The MicroVM state machine, hooks, idle policy, idempotency, quota and restart, on a fake engine."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from microvm_fake import FakeEngine, app_dir

from lamina.config import Settings
from lamina.microvm.errors import ApiError
from lamina.microvm.manager import MicrovmManager, ProxyRefused
from lamina.store.db import Database

ROLE = "arn:aws:iam::000000000000:role/build"
BASE = "arn:aws:lambda:us-east-1:aws:microvm-image:al2023-1"


def image_body(tmp: Path, name: str = "demo", **extra) -> dict:
    return {"name": name, "baseImageArn": BASE, "buildRoleArn": ROLE,
            "codeArtifact": {"uri": app_dir(tmp).as_uri()}, **extra}


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached in time")


def scenario(tmp: Path, body: Callable[[MicrovmManager, FakeEngine], Awaitable[None]],
             engine: FakeEngine | None = None, **settings) -> None:
    async def main() -> None:
        db = Database(tmp / "data" / "lamina.db")
        fake = engine or FakeEngine()
        mgr = MicrovmManager(Settings(data_dir=tmp / "data", **settings), db, fake)
        mgr.load()
        mgr.start()
        try:
            await body(mgr, fake)
        finally:
            await mgr.close()
            db.close()

    asyncio.run(main())


async def built(mgr: MicrovmManager, tmp: Path, **extra) -> str:
    mgr.images.create(image_body(tmp, **extra))
    name = extra.get("name", "demo")
    await until(lambda: mgr.images.images[name].config["state"] in ("CREATED", "CREATE_FAILED"))
    return name


async def running(mgr: MicrovmManager, **body) -> str:
    resp = mgr.run({"imageIdentifier": "demo", **body})
    assert resp["state"] == "PENDING"
    await until(lambda: mgr.get(resp["microvmId"])["state"] in ("RUNNING", "TERMINATED"))
    return resp["microvmId"]


def test_image_build_versions_and_log(tmp_path: Path) -> None:
    async def body(mgr: MicrovmManager, engine: FakeEngine) -> None:
        name = await built(mgr, tmp_path)
        img = mgr.images.describe(mgr.images.image(name))
        assert img["state"] == "CREATED" and img["latestActiveImageVersion"] == "1.0"
        assert img["imageArn"] == "arn:aws:lambda:us-east-1:000000000000:microvm-image:demo"
        ver = mgr.images.version(name, "1.0")
        assert ver.config["state"] == "SUCCESSFUL" and ver.config["status"] == "ACTIVE"
        builds = mgr.images.list_builds(name, "1.0", None, None, {})["items"]
        assert len(builds) == 1 and builds[0]["buildState"] == "SUCCESSFUL"
        text, state = mgr.images.build_log(name, "1.0", builds[0]["buildId"], 0)
        assert "fake build: step 1/1" in text and state == "SUCCESSFUL"
        # An update is a new version; a failing build leaves the previous one active.
        engine.fail_build = True
        mgr.images.update(name, {k: val for k, val in image_body(tmp_path).items() if k != "name"})
        await until(lambda: mgr.images.images[name].config["state"] == "UPDATE_FAILED")
        img = mgr.images.describe(mgr.images.image(name))
        assert img["latestActiveImageVersion"] == "1.0" and img["latestFailedImageVersion"] == "2.0"
        assert "RUN false" in mgr.images.version(name, "2.0").config["stateReason"]
        with pytest.raises(ApiError) as err:
            mgr.images.create(image_body(tmp_path))
        assert err.value.code == "ConflictException"

    scenario(tmp_path, body)


def test_run_hooks_and_lifecycle(tmp_path: Path) -> None:
    async def body(mgr: MicrovmManager, engine: FakeEngine) -> None:
        await built(mgr, tmp_path)
        mid = await running(mgr, runHookPayload="hello-payload")
        inst = engine.instances[0]
        assert inst.calls == ["run"]
        doc = mgr.get(mid)
        assert doc["state"] == "RUNNING" and doc["endpoint"].startswith(mid + ".lambda-microvm.")
        assert doc["imageVersion"] == "1.0" and doc["maximumDurationInSeconds"] == 28800
        with pytest.raises(ApiError) as err:
            await mgr.resume(mid)
        assert err.value.status == 409
        await mgr.suspend(mid)
        assert mgr.get(mid)["state"] == "SUSPENDED" and inst.frozen
        assert inst.calls[-2:] == ["suspend", "freeze"]
        await mgr.suspend(mid)  # idempotent
        await mgr.resume(mid)
        assert mgr.get(mid)["state"] == "RUNNING" and not inst.frozen
        assert inst.calls[-2:] == ["thaw", "resume"]
        await mgr.terminate(mid)
        doc = mgr.get(mid)
        assert doc["state"] == "TERMINATED" and "terminatedAt" in doc and inst.calls[-2:] == ["terminate", "kill"]
        await mgr.terminate(mid)  # idempotent
        with pytest.raises(ApiError) as err:
            await mgr.suspend(mid)
        assert err.value.status == 409
        # The /run hook got the id and the payload.
        hooks_seen = [c for c in inst.calls if c == "run"]
        assert hooks_seen == ["run"]

    scenario(tmp_path, body)


def test_run_hook_payload_reaches_app(tmp_path: Path) -> None:
    async def body(mgr: MicrovmManager, engine: FakeEngine) -> None:
        await built(mgr, tmp_path)
        mid = await running(mgr, runHookPayload="p" * 100)
        mvm = await mgr.enter(mid)
        reader, writer = await mvm.handle.open_connection(8080)
        writer.write(b"GET /hooks HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        raw = await reader.read()
        writer.close()
        mgr.leave(mvm)
        hooks = json.loads(raw.split(b"\r\n\r\n", 1)[1])
        assert hooks[0][0] == "run" and json.loads(hooks[0][1]) == {"microvmId": mid, "runHookPayload": "p" * 100}

    scenario(tmp_path, body)


def test_failing_run_hook_terminates(tmp_path: Path) -> None:
    async def body(mgr: MicrovmManager, engine: FakeEngine) -> None:
        await built(mgr, tmp_path)
        mid = await running(mgr)
        doc = mgr.get(mid)
        assert doc["state"] == "TERMINATED" and "/run hook returned HTTP 500" in doc["stateReason"]
        assert engine.instances[0].calls[-1] == "kill"

    scenario(tmp_path, body, FakeEngine(fail_hooks="run"))


def test_failing_suspend_hook_terminates(tmp_path: Path) -> None:
    async def body(mgr: MicrovmManager, engine: FakeEngine) -> None:
        await built(mgr, tmp_path)
        mid = await running(mgr)
        await mgr.suspend(mid)
        doc = mgr.get(mid)
        assert doc["state"] == "TERMINATED" and "/suspend hook" in doc["stateReason"]

    scenario(tmp_path, body, FakeEngine(fail_hooks="suspend"))


def test_client_token_idempotency(tmp_path: Path) -> None:
    async def body(mgr: MicrovmManager, engine: FakeEngine) -> None:
        await built(mgr, tmp_path)
        mid = await running(mgr, clientToken="tok-1")
        await mgr.suspend(mid)
        again = mgr.run({"imageIdentifier": "demo", "clientToken": "tok-1"})
        assert again["microvmId"] == mid and again["state"] == "SUSPENDED"
        assert len(engine.instances) == 1

    scenario(tmp_path, body)


def test_idle_policy_suspends_then_terminates(tmp_path: Path) -> None:
    async def body(mgr: MicrovmManager, engine: FakeEngine) -> None:
        await built(mgr, tmp_path)
        policy = {"maxIdleDurationSeconds": 1, "suspendedDurationSeconds": 1, "autoResumeEnabled": True}
        mid = await running(mgr, idlePolicy=policy)
        await until(lambda: mgr.get(mid)["state"] == "SUSPENDED", 5)
        assert "No inbound traffic" in mgr.get(mid)["stateReason"]
        # A request auto-resumes it.
        mvm = await mgr.enter(mid)
        assert mgr.get(mid)["state"] == "RUNNING"
        mgr.leave(mvm)
        await until(lambda: mgr.get(mid)["state"] == "SUSPENDED", 5)
        await until(lambda: mgr.get(mid)["state"] == "TERMINATED", 5)
        assert "Suspended for 1 s" in mgr.get(mid)["stateReason"]

    scenario(tmp_path, body, microvm_min_idle_seconds=1)


def test_in_flight_requests_keep_it_running(tmp_path: Path) -> None:
    async def body(mgr: MicrovmManager, engine: FakeEngine) -> None:
        await built(mgr, tmp_path)
        policy = {"maxIdleDurationSeconds": 1, "suspendedDurationSeconds": 0, "autoResumeEnabled": False}
        mid = await running(mgr, idlePolicy=policy)
        mvm = await mgr.enter(mid)
        await asyncio.sleep(1.6)
        assert mgr.get(mid)["state"] == "RUNNING"
        mgr.leave(mvm)
        # suspendedDurationSeconds 0: terminated as soon as it is suspended.
        await until(lambda: mgr.get(mid)["state"] == "TERMINATED", 5)
        assert "suspendedDurationSeconds is 0" in mgr.get(mid)["stateReason"]

    scenario(tmp_path, body, microvm_min_idle_seconds=1)


def test_no_auto_resume_refuses(tmp_path: Path) -> None:
    async def body(mgr: MicrovmManager, engine: FakeEngine) -> None:
        await built(mgr, tmp_path)
        policy = {"maxIdleDurationSeconds": 60, "suspendedDurationSeconds": 60, "autoResumeEnabled": False}
        mid = await running(mgr, idlePolicy=policy)
        await mgr.suspend(mid)
        with pytest.raises(ProxyRefused) as err:
            await mgr.enter(mid)
        assert err.value.status == 409
        await mgr.terminate(mid)
        with pytest.raises(ProxyRefused) as err:
            await mgr.enter(mid)
        assert err.value.status == 410

    scenario(tmp_path, body)


def test_maximum_duration(tmp_path: Path) -> None:
    async def body(mgr: MicrovmManager, engine: FakeEngine) -> None:
        await built(mgr, tmp_path)
        mid = await running(mgr, maximumDurationInSeconds=1)
        await mgr.suspend(mid)  # suspended time counts too
        await until(lambda: mgr.get(mid)["state"] == "TERMINATED", 5)
        assert "maximumDurationInSeconds" in mgr.get(mid)["stateReason"]

    scenario(tmp_path, body)


def test_exited_instance_is_terminated(tmp_path: Path) -> None:
    async def body(mgr: MicrovmManager, engine: FakeEngine) -> None:
        await built(mgr, tmp_path)
        mid = await running(mgr)
        mvm = await mgr.enter(mid)
        reader, writer = await mvm.handle.open_connection(8080)
        writer.write(b"GET /exit HTTP/1.1\r\nHost: x\r\n\r\n")
        await reader.read()
        mgr.leave(mvm)
        await until(lambda: mgr.get(mid)["state"] == "TERMINATED", 5)
        assert "exited" in mgr.get(mid)["stateReason"]

    scenario(tmp_path, body)


def test_memory_quota_counts_suspended(tmp_path: Path) -> None:
    async def body(mgr: MicrovmManager, engine: FakeEngine) -> None:
        await built(mgr, tmp_path, resources=[{"minimumMemoryInMiB": 512}])
        first = await running(mgr)
        await running(mgr)
        await mgr.suspend(first)
        with pytest.raises(ApiError) as err:
            mgr.run({"imageIdentifier": "demo"})
        assert err.value.code == "ServiceQuotaExceededException" and err.value.status == 402
        await mgr.terminate(first)
        await running(mgr)

    scenario(tmp_path, body, microvm_memory_quota_mib=1024)


def test_list_filters_and_pages(tmp_path: Path) -> None:
    async def body(mgr: MicrovmManager, engine: FakeEngine) -> None:
        await built(mgr, tmp_path)
        ids = [mgr.run({"imageIdentifier": "demo"})["microvmId"] for _ in range(3)]
        page1 = mgr.list(2, None, None, None)
        page2 = mgr.list(2, page1["nextToken"], None, None)
        assert [i["microvmId"] for i in page1["items"] + page2["items"]] == ids and "nextToken" not in page2
        assert len(mgr.list(None, None, "demo", "1.0")["items"]) == 3
        assert mgr.list(None, None, "demo", "9.0")["items"] == []
        for mid in ids:
            await until(lambda m=mid: mgr.get(m)["state"] == "RUNNING")
            await mgr.terminate(mid)

    scenario(tmp_path, body)


def test_delete_needs_terminated_instances(tmp_path: Path) -> None:
    async def body(mgr: MicrovmManager, engine: FakeEngine) -> None:
        await built(mgr, tmp_path)
        mid = await running(mgr)
        with pytest.raises(ApiError) as err:
            mgr.images.delete("demo")
        assert err.value.status == 409
        await mgr.terminate(mid)
        assert mgr.images.delete("demo")["state"] == "DELETED"
        assert engine.forgotten == ["1.0"]
        with pytest.raises(ApiError) as err:
            mgr.run({"imageIdentifier": "demo"})
        assert err.value.status == 404

    scenario(tmp_path, body)


def test_restart_terminates_instances_and_keeps_images(tmp_path: Path) -> None:
    state: dict = {}

    async def first(mgr: MicrovmManager, engine: FakeEngine) -> None:
        await built(mgr, tmp_path)
        state["mid"] = await running(mgr, clientToken="tok")
        mgr.close = _no_cleanup(mgr)  # simulate a crash: nothing is marked on the way out

    async def second(mgr: MicrovmManager, engine: FakeEngine) -> None:
        doc = mgr.get(state["mid"])
        assert doc["state"] == "TERMINATED" and "restarted" in doc["stateReason"]
        assert mgr.images.describe(mgr.images.image("demo"))["state"] == "CREATED"
        assert mgr.run({"imageIdentifier": "demo", "clientToken": "tok"})["microvmId"] == state["mid"]
        mid = await running(mgr)
        assert mgr.get(mid)["state"] == "RUNNING"

    engine = FakeEngine()
    scenario(tmp_path, first, engine)
    scenario(tmp_path, second)


def _no_cleanup(mgr: MicrovmManager):
    async def close() -> None:
        for inst in mgr.engine.instances:  # type: ignore[union-attr]
            await inst.terminate()
    return close
