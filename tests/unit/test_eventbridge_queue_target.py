"""EventBridge's sends into a Lamina queue (events/eventbridge_targets.py over queues/service.py): a send prepared
ahead of its time (stage) is stamped with the time it is sent, takes its outbox rows in its own commit, and still
arrives when the queue was deleted and made again in between."""

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
