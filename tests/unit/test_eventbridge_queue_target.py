"""EventBridge's sends into a Lamina queue and a function (events/eventbridge_targets.py over queues/service.py and
the async queue's accept_many): a queue's send prepared ahead of its time (stage) is stamped with the time it is
sent, takes its outbox rows in its own commit, and still arrives when the queue was deleted and made again in
between; a function's events are made ahead and handed over a chunk at a time, each chunk committed (with its
outbox rows) before the next."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from lamina.events.eventbridge_targets import LaminaTargets
from lamina.queues.service import QueueService
from lamina.store.db import Database
from lamina.store.eventbridge import EventBridgeRepo, PendingRow
from lamina.store.messages import SqliteMessageStore

ACCOUNT = "000000000000"


def test_staged_send_is_stamped_when_sent_and_takes_its_outbox_rows(tmp_path: Path) -> None:
    async def run() -> None:
        db = Database(tmp_path / "lamina.db")
        queues = QueueService(SqliteMessageStore(db.path, "os"), "us-east-1", ACCOUNT)
        queues.load()
        queues.start()
        q = await queues.create_queue(ACCOUNT, "q", {}, {})
        repo = EventBridgeRepo(db)
        target = {"Arn": q.arn, "RoleArn": "arn:aws:iam::0:role/r"}
        ids = [repo.pending_id() for _ in range(1500)]
        payloads = [b'{"i": %d}' % i for i in range(1500)]
        repo.fire([], [], [PendingRow(i, "s", "default", f"s{k}", 0.0, 0.0, target, payloads[k])
                           for k, i in enumerate(ids)])
        targets = LaminaTargets(None, queues)  # type: ignore[arg-type]   (no function targets here)
        staged = targets.stage(q.arn, payloads)
        await asyncio.sleep(0.05)
        sending = time.time()
        assert await targets.send_many(q.arn, payloads, ids, staged) == [None] * 1500
        bodies = sorted(m.body for m in q.messages.values())
        assert bodies == sorted(p.decode() for p in payloads)
        assert min(m.sent for m in q.messages.values()) >= sending
        assert db.conn.execute("SELECT count(*) FROM eb_pending").fetchone()[0] == 0

        # deleted and made again between the stage and the send: sent all the same, to the queue there is now
        staged = targets.stage(q.arn, payloads[:3])
        await queues.delete_queue(q)
        queues.deleted.clear()   # (AWS's 60 s before a name is taken again)
        again = await queues.create_queue(ACCOUNT, "q", {}, {})
        assert await targets.send_many(again.arn, payloads[:3], None, staged) == [None] * 3
        assert sorted(m.body for m in again.messages.values()) == sorted(p.decode() for p in payloads[:3])
        await queues.close()
        db.close()
    asyncio.run(run())


class _Fn:
    def __init__(self, version: str) -> None:
        self.name = "f"
        self.version = version
        self.config = {"FunctionArn": "arn:aws:lambda:us-east-1:000000000000:function:f"}


class _Functions:
    """What event_for and LaminaTargets read of a FunctionService, and an event sink that commits each hand-over
    in a later loop turn (as the async queue's writer does), recording them."""

    def __init__(self) -> None:
        self.settings = type("S", (), {"account_id": ACCOUNT})()
        self.fn = _Fn("$LATEST")
        self.event_sink = self
        self.handed: list[tuple[list, object]] = []
        self.fail_next = False

    def target(self, raw: str) -> tuple[_Fn, str | None]:
        return self.fn, None

    def pick(self, fn: _Fn, qualifier: str | None) -> _Fn:
        return fn

    def accept_many(self, events: list, done, also=None) -> None:
        assert not self.handed or self.handed[-1][2], "a chunk was handed over before the one before was committed"
        entry = [events, also, False]
        self.handed.append(entry)
        failing, self.fail_next = self.fail_next, False

        def commit() -> None:
            entry[2] = True
            done(RuntimeError("disk full") if failing else None)
        asyncio.get_running_loop().call_soon(commit)


def test_many_events_for_a_function_are_made_ahead_and_handed_over_a_chunk_at_a_time() -> None:
    from lamina.events.eventbridge_targets import EVENTS_PER_COMMIT

    async def run() -> None:
        functions = _Functions()
        targets = LaminaTargets(functions, None)  # type: ignore[arg-type]   (no queue targets here)
        arn = functions.fn.config["FunctionArn"]
        n = EVENTS_PER_COMMIT * 2 + 7
        payloads = [b'{"i": %d}' % i for i in range(n)]
        staged = targets.stage(arn, payloads)
        made = [e.id for e in staged.events]   # type: ignore[attr-defined]
        before = time.time()
        assert await targets.send_many(arn, payloads, list(range(n)), staged) == [None] * n
        chunks = [events for events, _, _ in functions.handed]
        assert [len(c) for c in chunks] == [EVENTS_PER_COMMIT, EVENTS_PER_COMMIT, 7]
        events = [e for c in chunks for e in c]
        assert [e.id for e in events] == made and len(set(made)) == n          # the staged events themselves
        assert [e.payload for e in events] == payloads
        assert all(e.created >= before and e.due == e.created for e in events)  # accepted when handed over
        assert [also[1] for _, also, _ in functions.handed] == [                # each chunk takes its outbox rows
            list(range(0, EVENTS_PER_COMMIT)), list(range(EVENTS_PER_COMMIT, 2 * EVENTS_PER_COMMIT)),
            list(range(2 * EVENTS_PER_COMMIT, n))]

        # the function's version changed since the stage: events made anew, for the version there is now
        functions.handed.clear()
        staged = targets.stage(arn, payloads[:3])
        functions.fn = _Fn("2")
        assert await targets.send_many(arn, payloads[:3], None, staged) == [None] * 3
        (events, also, _), = functions.handed
        assert [e.version for e in events] == ["2"] * 3 and also is None

        # a chunk that fails fails only its own payloads
        functions.handed.clear()
        functions.fail_next = True
        results = await targets.send_many(arn, payloads[:EVENTS_PER_COMMIT + 1])
        assert all(r is not None for r in results[:EVENTS_PER_COMMIT]) and results[EVENTS_PER_COMMIT:] == [None]
    asyncio.run(run())
