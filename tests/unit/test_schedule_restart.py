"""Schedules across restarts (eventbridge/scheduler.py over the store): an occurrence missed while the server was
down fires once after the start, not once per missed occurrence, within its flexible window; an occurrence that
fired never fires again after a restart; a crash (no stop) between an occurrence's commit and its target taking it,
or right after the target took it, neither loses nor repeats it; the timer heap holds one entry per schedule.
A controllable clock stands in for time; the recording target takes its outbox rows as a real target's commit does."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson

from lamina.eventbridge.bus import EventBusService
from lamina.eventbridge.scheduler import ScheduleService
from lamina.eventbridge.targets import Deliverer
from lamina.eventbridge.timers import Clock, TimerHeap
from lamina.store.db import Database
from lamina.store.eventbridge import TAKE_PENDING, EventBridgeRepo

T0 = 1_800_000_000.0   # 2027-01-15T08:00:00Z


class FakeClock(Clock):
    def __init__(self, t: float) -> None:
        super().__init__(1.0)
        self.t = t

    def now(self) -> float:
        return self.t


class Recorder:
    """A target whose write takes the occurrences' outbox rows with it (as the async queue's or a queue's commit)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.sent: list[tuple[str, dict]] = []

    async def send(self, arn: str, payload: bytes, also=None) -> None:
        self.sent.append((arn, orjson.loads(payload)))
        if also is not None:
            self.settle(also)

    def stage(self, arn: str, payloads: list[bytes]) -> None:
        return None

    async def send_many(self, arn: str, payloads: list[bytes], pending: list[int] | None = None,
                        staged: object | None = None) -> list[None]:
        for payload in payloads:
            self.sent.append((arn, orjson.loads(payload)))
        if pending:
            self.settle((TAKE_PENDING, pending))
        return [None] * len(payloads)

    def settle(self, also) -> None:
        also[0].apply(self.db.conn, [also[1]])

    def exists(self, arn: str) -> bool:
        return True


class Node:
    """One server's worth of scheduler over a database file."""

    def __init__(self, path: Path, clock: FakeClock) -> None:
        self.db = Database(path)
        self.heap = TimerHeap(clock)
        self.recorder = Recorder(self.db)
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

    def crash(self) -> None:
        """The process dies: no stop(); the timers of occurrences waiting for their send time die with it."""
        for handle, *_ in self.service._prepared.values():
            if handle is not None:
                handle.cancel()
        self.stop()

    def outbox(self) -> int:
        return self.db.conn.execute("SELECT count(*) FROM eb_pending").fetchone()[0]


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


def test_crash_inside_the_lead_neither_loses_nor_repeats(tmp_path: Path) -> None:
    """SIGKILL after an occurrence's next due time was committed but before its target had it (the heap hands
    schedules out ahead of their due time): it fires once after the restart. A crash right after the target took it:
    it does not fire again."""
    async def run() -> None:
        clock = FakeClock(T0)
        node = Node(tmp_path / "db", clock)
        node.heap.lead = 60.0
        create(node, "soon", "at(2027-01-15T08:00:30)")
        create(node, "rate", "rate(1 minute)", StartDate=T0 + 30)
        assert await node.tick() == []               # committed and in the outbox, not yet due: nothing sent
        assert node.service.next_due("soon") is None and node.outbox() == 2
        node.crash()
        clock.t = T0 + 45
        node = Node(tmp_path / "db", clock)
        node.heap.lead = 0.0
        assert sorted(e["resources"][0].rsplit("/", 1)[1] for e in await node.tick()) == ["rate", "soon"]
        assert node.outbox() == 0
        node.crash()                                  # right after the targets took them
        node = Node(tmp_path / "db", clock)
        node.heap.lead = 0.0
        assert await node.tick() == []
        # and the rate goes on: its next occurrence once
        clock.t = T0 + 90
        assert [e["time"] for e in await node.tick()] == ["2027-01-15T08:01:30Z"]
        node.crash()
        node = Node(tmp_path / "db", clock)
        assert await node.tick() == []
        node.stop()
    asyncio.run(run())


def test_flexible_window_after_restart(tmp_path: Path) -> None:
    """A missed occurrence whose flexible window is still open is sent within what is left of the window, not at
    the start; one whose window has passed is sent at once; each once. Within a window no occurrence is skipped."""
    async def run() -> None:
        clock = FakeClock(T0)
        node = Node(tmp_path / "db", clock)
        flexible = {"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 10}
        create(node, "open", "cron(5 8 * * ? *)", FlexibleTimeWindow=flexible)     # 08:05, window to 08:15
        create(node, "closed", "cron(1 8 * * ? *)", FlexibleTimeWindow=flexible)   # 08:01, window to 08:11
        create(node, "off", "cron(2 8 * * ? *)")                                     # 08:02
        node.stop()
        clock.t = T0 + 12 * 60                       # 08:12: all three came due while the server was down
        node = Node(tmp_path / "db", clock)
        assert clock.t + 0 <= node.heap.due_of(("s", "default", "open")) <= T0 + 15 * 60
        assert node.heap.due_of(("s", "default", "closed")) == clock.t
        assert node.heap.due_of(("s", "default", "off")) == clock.t
        fired = sorted(e["resources"][0].rsplit("/", 1)[1] for e in await node.tick())
        assert fired == ["closed", "off"]
        clock.t = T0 + 15 * 60
        assert [(e["resources"][0].rsplit("/", 1)[1], e["time"]) for e in await node.tick()] == \
            [("open", "2027-01-15T08:05:00Z")]
        assert await node.tick() == []
        node.stop()
        node = Node(tmp_path / "db", clock)           # nothing fires twice
        assert await node.tick() == []
        assert node.service.next_due("open") == T0 + 86400 + 5 * 60
        node.stop()

        # rate(1 minute) in a 5-minute window: every occurrence is sent once, none skipped by the one before it
        clock.t = T0 + 86400 * 2
        node = Node(tmp_path / "db", clock)
        create(node, "busy", "rate(1 minute)", FlexibleTimeWindow={"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 5})
        times: list[str] = []
        for _ in range(10 * 6):
            times += [e["time"] for e in await node.tick() if e["resources"][0].endswith("/busy")]
            clock.t += 10
        node.stop()
        assert len(times) == len(set(times))
        expected = {f"2027-01-17T08:{m:02d}:00Z" for m in range(5)}
        assert expected <= set(times)
    asyncio.run(run())


def test_scheduled_rule_crash_inside_the_lead(tmp_path: Path) -> None:
    """An EventBridge rule's schedule uses the same outbox: a SIGKILL between its tick's commit and its targets
    taking the occurrence loses nothing; a restart after they took it repeats nothing."""
    async def run() -> None:
        clock = FakeClock(T0)

        def start(lead: float) -> tuple[Database, TimerHeap, Recorder, EventBusService]:
            db = Database(tmp_path / "db")
            heap = TimerHeap(clock, lead=lead)
            recorder = Recorder(db)
            buses = EventBusService(EventBridgeRepo(db), heap, Deliverer(recorder, clock), "us-east-1",
                                    "000000000000")
            buses.load()
            heap.start()
            return db, heap, recorder, buses

        async def sent(heap: TimerHeap, recorder: Recorder) -> list[str]:
            heap.start()
            for _ in range(5):
                await asyncio.sleep(0)
            await asyncio.sleep(0.01)
            out = [e["time"] for _, e in recorder.sent]
            recorder.sent.clear()
            return out

        def crash(db: Database, heap: TimerHeap, buses: EventBusService) -> None:
            for handle, _ in buses._prepared.values():
                if handle is not None:
                    handle.cancel()
            heap.stop()
            db.close()

        db, heap, recorder, buses = start(lead=90.0)
        buses.put_rule({"Name": "tick", "ScheduleExpression": "rate(1 minute)"})
        buses.put_targets({"Rule": "tick", "Targets": [{"Id": "q", "Arn": "arn:aws:sqs:us-east-1:000000000000:q"}]})
        assert await sent(heap, recorder) == []      # 08:01 committed and in the outbox, not yet due
        assert db.conn.execute("SELECT count(*) FROM eb_pending").fetchone()[0] == 1
        crash(db, heap, buses)
        clock.t = T0 + 70
        db, heap, recorder, buses = start(lead=0.0)
        assert await sent(heap, recorder) == ["2027-01-15T08:01:00Z"]
        crash(db, heap, buses)                       # right after the target took it
        db, heap, recorder, buses = start(lead=0.0)
        assert await sent(heap, recorder) == []
        clock.t = T0 + 120
        assert await sent(heap, recorder) == ["2027-01-15T08:02:00Z"]
        crash(db, heap, buses)
    asyncio.run(run())
