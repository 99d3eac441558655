"""Schedules across restarts (eventbridge/scheduler.py over the store): an occurrence missed while the server was
down fires once after the start, not once per missed occurrence; an occurrence that fired never fires again after
a restart; the timer heap holds one entry per schedule. A controllable clock stands in for time."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson

from lamina.eventbridge.scheduler import ScheduleService
from lamina.eventbridge.targets import Deliverer
from lamina.eventbridge.timers import Clock, TimerHeap
from lamina.store.db import Database
from lamina.store.eventbridge import EventBridgeRepo

T0 = 1_800_000_000.0   # 2027-01-15T08:00:00Z


class FakeClock(Clock):
    def __init__(self, t: float) -> None:
        super().__init__(1.0)
        self.t = t

    def now(self) -> float:
        return self.t


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict]] = []

    async def send(self, arn: str, payload: bytes) -> None:
        self.sent.append((arn, orjson.loads(payload)))

    async def send_many(self, arn: str, payloads: list[bytes]) -> list[None]:
        for payload in payloads:
            await self.send(arn, payload)
        return [None] * len(payloads)

    def exists(self, arn: str) -> bool:
        return True


class Node:
    """One server's worth of scheduler over a database file."""

    def __init__(self, path: Path, clock: FakeClock) -> None:
        self.db = Database(path)
        self.heap = TimerHeap(clock)
        self.recorder = Recorder()
        self.service = ScheduleService(EventBridgeRepo(self.db), self.heap, Deliverer(self.recorder, clock),
                                       "us-east-1", "000000000000")
        self.service.load()
        self.heap.start()

    async def tick(self) -> list[dict]:
        self.heap.start()   # re-arm against the clock just moved
        for _ in range(5):
            await asyncio.sleep(0)
        await asyncio.sleep(0.01)
        sent = [payload for _, payload in self.recorder.sent]
        self.recorder.sent.clear()
        return sent

    def stop(self) -> None:
        self.heap.stop()
        self.db.close()


def create(node: Node, name: str, expression: str, **extra: object) -> None:
    node.service.create(name, {"ScheduleExpression": expression, "FlexibleTimeWindow": {"Mode": "OFF"},
                               "Target": {"Arn": "arn:aws:sqs:us-east-1:000000000000:q",
                                          "RoleArn": "arn:aws:iam::000000000000:role/r"}, **extra})


def test_missed_occurrences_fire_once_and_never_twice(tmp_path: Path) -> None:
    async def run() -> None:
        clock = FakeClock(T0)
        node = Node(tmp_path / "db", clock)
        create(node, "every-minute", "rate(1 minute)")
        create(node, "cron", "cron(0/5 * * * ? *)")
        first = await node.tick()
        assert [e["time"] for e in first] == ["2027-01-15T08:00:00Z"]   # a rate starts when it is created
        clock.t = T0 + 30
        assert await node.tick() == []
        node.stop()

        # down for ten minutes: nine minutes of the rate and two five-minute marks were missed
        clock.t = T0 + 600
        node = Node(tmp_path / "db", clock)
        assert len(node.heap) == 2
        missed = sorted((e["resources"][0].rsplit("/", 1)[1], e["time"]) for e in await node.tick())
        assert missed == [("cron", "2027-01-15T08:05:00Z"), ("every-minute", "2027-01-15T08:01:00Z")]
        assert await node.tick() == []
        node.stop()

        # restarted at the same moment: what fired does not fire again
        node = Node(tmp_path / "db", clock)
        assert await node.tick() == []
        # and the schedules go on from the current time
        clock.t = T0 + 661
        assert [e["time"] for e in await node.tick()] == ["2027-01-15T08:11:00Z"]
        clock.t = T0 + 900
        assert sorted(e["time"] for e in await node.tick()) == ["2027-01-15T08:12:00Z", "2027-01-15T08:15:00Z"]
        node.stop()
    asyncio.run(run())


def test_one_time_schedule_fires_once_and_deletes_itself(tmp_path: Path) -> None:
    async def run() -> None:
        clock = FakeClock(T0)
        node = Node(tmp_path / "db", clock)
        create(node, "once", "at(2027-01-15T08:02:00)", ActionAfterCompletion="DELETE",
               Target={"Arn": "arn:aws:sqs:us-east-1:000000000000:q", "RoleArn": "arn:aws:iam::0:role/r",
                       "Input": '{"when": "<aws.scheduler.scheduled-time>"}'})
        create(node, "keep", "at(2027-01-15T08:02:00)",
               Target={"Arn": "arn:aws:sqs:us-east-1:000000000000:q", "RoleArn": "arn:aws:iam::0:role/r"})
        assert await node.tick() == []
        node.stop()
        clock.t = T0 + 3600
        node = Node(tmp_path / "db", clock)
        fired = await node.tick()
        assert {"when": "2027-01-15T08:02:00Z"} in fired and len(fired) == 2
        assert [s["Name"] for s in node.service.list_schedules(None, None, None, None, None)["Schedules"]] == ["keep"]
        assert node.service.next_due("keep") is None
        node.stop()
        node = Node(tmp_path / "db", clock)
        assert await node.tick() == [] and len(node.heap) == 0
        node.stop()
    asyncio.run(run())


def test_disabled_and_end_date(tmp_path: Path) -> None:
    async def run() -> None:
        clock = FakeClock(T0)
        node = Node(tmp_path / "db", clock)
        create(node, "off", "rate(1 minute)", State="DISABLED")
        create(node, "ending", "rate(1 minute)", StartDate=T0 + 60, EndDate=T0 + 150)
        assert await node.tick() == []
        clock.t = T0 + 60
        assert len(await node.tick()) == 1
        clock.t = T0 + 120
        assert len(await node.tick()) == 1
        clock.t = T0 + 500
        assert await node.tick() == [] and len(node.heap) == 0
        node.stop()
    asyncio.run(run())


def test_stop_inside_the_lead_gives_the_occurrence_back(tmp_path: Path) -> None:
    """The heap hands schedules out ahead of their due time; a stop before that time must not lose them."""
    async def run() -> None:
        clock = FakeClock(T0)
        node = Node(tmp_path / "db", clock)
        node.heap.lead = 60.0
        create(node, "soon", "at(2027-01-15T08:00:30)")
        create(node, "rate", "rate(1 minute)", StartDate=T0 + 30)
        assert await node.tick() == []               # prepared (within the lead), not yet due: nothing sent
        assert node.service.next_due("soon") is None
        node.service.stop()
        node.stop()
        clock.t = T0 + 45
        node = Node(tmp_path / "db", clock)
        assert [e["time"] for e in await node.tick()] == ["2027-01-15T08:00:30Z"] * 2   # once each
        node.stop()
    asyncio.run(run())
