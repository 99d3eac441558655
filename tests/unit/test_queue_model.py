"""The queue model (queues/) over its SQLite store: visibility, FIFO order and dedup, redrive, long polls, reloads."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from lamina.queues.errors import SqsError
from lamina.queues.service import QueueService
from lamina.store.db import Database
from lamina.store.messages import SqliteMessageStore

ACCOUNT = "000000000000"


def _service(path) -> QueueService:
    service = QueueService(SqliteMessageStore(path, "os"), "us-east-1", ACCOUNT)
    service.load()
    return service


def _run(path, body) -> None:
    """Run body(service) with a started service on the database at path, then close it."""
    async def main() -> None:
        service = _service(path)
        service.start()
        try:
            await body(service)
        finally:
            await service.close()
    asyncio.run(main())


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "lamina.db"
    Database(path).close()   # the migrations make the tables
    return path


def test_visibility_and_receive_count(db):
    async def body(s: QueueService) -> None:
        q = await s.create_queue(ACCOUNT, "q", {"VisibilityTimeout": "30"}, None)
        await s.send(q, [{"MessageBody": "one"}])
        [m] = await s.receive(q, 10, None, 0)
        assert m.receives == 1 and q.n_inflight == 1 and q.depth == 0
        assert await s.receive(q, 10, None, 0) == []          # in flight: hidden
        s.change_visibility(q, m.handle, 0)                  # back now
        [again] = await s.receive(q, 10, None, 0)
        assert again is m and m.receives == 2
        s.delete_message(q, m.handle)
        assert not q.messages
    _run(db, body)


def test_an_old_receipt_handle_does_not_delete(db):
    async def body(s: QueueService) -> None:
        q = await s.create_queue(ACCOUNT, "q", None, None)
        await s.send(q, [{"MessageBody": "one"}])
        [m] = await s.receive(q, 1, 0, 0)    # visibility 0: visible again at once
        first = m.handle
        [m2] = await s.receive(q, 1, 30, 0)
        assert m2 is m and m.handle != first
        s.delete_message(q, first)           # succeeds, the message stays (AWS: "might not be deleted")
        assert m.seq in q.messages
        s.delete_message(q, m.handle)
        assert m.seq not in q.messages
    _run(db, body)


def test_fifo_order_per_group_and_blocking(db):
    async def body(s: QueueService) -> None:
        q = await s.create_queue(ACCOUNT, "f.fifo", {"FifoQueue": "true", "ContentBasedDeduplication": "true"}, None)
        for group, text in [("g1", "a"), ("g2", "x"), ("g1", "b"), ("g1", "c"), ("g2", "y")]:
            await s.send(q, [{"MessageBody": text, "MessageGroupId": group}])
        first = await s.receive(q, 2, 30, 0)
        assert [m.body for m in first] == ["a", "b"]          # a group's messages in order
        second = await s.receive(q, 10, 30, 0)
        assert [m.body for m in second] == ["x", "y"]         # g1 is blocked while a, b are in flight
        assert await s.receive(q, 10, 30, 0) == []
        for m in first:
            s.delete_message(q, m.handle)
        [c] = await s.receive(q, 10, 30, 0)
        assert c.body == "c"
    _run(db, body)


def test_fifo_deduplication(db):
    async def body(s: QueueService) -> None:
        q = await s.create_queue(ACCOUNT, "d.fifo", {"FifoQueue": "true"}, None)
        r1, = await s.send(q, [{"MessageBody": "m", "MessageGroupId": "g", "MessageDeduplicationId": "d1"}])
        r2, = await s.send(q, [{"MessageBody": "other", "MessageGroupId": "g", "MessageDeduplicationId": "d1"}])
        assert isinstance(r1, dict) and isinstance(r2, dict)
        assert r1["MessageId"] == r2["MessageId"] and r1["SequenceNumber"] == r2["SequenceNumber"]
        assert len(q.messages) == 1
        [error] = await s.send(q, [{"MessageBody": "m", "MessageGroupId": "g"}])
        assert isinstance(error, SqsError) and "ContentBasedDeduplication" in error.message
        [error] = await s.send(q, [{"MessageBody": "m", "MessageDeduplicationId": "d2"}])
        assert isinstance(error, SqsError) and error.code == "MissingParameter"
    _run(db, body)


def test_redrive_after_max_receive_count(db):
    async def body(s: QueueService) -> None:
        dlq = await s.create_queue(ACCOUNT, "dlq", None, None)
        q = await s.create_queue(ACCOUNT, "src", {"RedrivePolicy": json.dumps(
            {"deadLetterTargetArn": dlq.arn, "maxReceiveCount": 2})}, None)
        await s.send(q, [{"MessageBody": "poison"}])
        for _ in range(2):
            assert len(await s.receive(q, 1, 0, 0)) == 1
        assert await s.receive(q, 1, 0, 0) == []            # the third receive moves it instead
        [m] = await s.receive(dlq, 1, 30, 0)
        assert m.body == "poison" and m.dlq_source == q.arn and m.receives == 1
        assert [x.name for x in s.dead_letter_sources(dlq)] == ["src"]
    _run(db, body)


def test_long_poll_returns_when_a_message_arrives(db):
    async def body(s: QueueService) -> None:
        q = await s.create_queue(ACCOUNT, "lp", None, None)
        waiting = asyncio.ensure_future(s.receive(q, 1, 30, 20))
        await asyncio.sleep(0)
        assert not waiting.done()
        await s.send(q, [{"MessageBody": "now"}])
        [m] = await asyncio.wait_for(waiting, 19)   # well before its 20 s wait would end
        assert m.body == "now"
    _run(db, body)


def test_delayed_message_wakes_a_long_poll(db):
    async def body(s: QueueService) -> None:
        q = await s.create_queue(ACCOUNT, "delay", None, None)
        await s.send(q, [{"MessageBody": "later", "DelaySeconds": 1}])
        assert q.n_delayed == 1 and await s.receive(q, 1, 30, 0) == []
        [m] = await s.receive(q, 1, 30, 20)
        assert m.body == "later" and time.time() >= m.sent + 1
    _run(db, body)


def test_state_survives_a_reload(db):
    async def first(s: QueueService) -> None:
        q = await s.create_queue(ACCOUNT, "keep", None, {"team": "a"})
        f = await s.create_queue(ACCOUNT, "keep.fifo", {"FifoQueue": "true"}, None)
        await s.send(q, [{"MessageBody": f"m{i}", "MessageAttributes": {
            "n": {"DataType": "Number", "StringValue": str(i)}}} for i in range(5)])
        await s.send(f, [{"MessageBody": "x", "MessageGroupId": "g", "MessageDeduplicationId": "d"}])
        [m] = await s.receive(q, 1, 3600, 0)   # in flight for an hour
        s.delete_message(q, (await s.receive(q, 1, 30, 0))[0].handle)
        assert m.body == "m0"

    async def second(s: QueueService) -> None:
        q = s.queue(ACCOUNT, "keep")
        assert q.tags == {"team": "a"}
        assert sorted(m.body for m in q.messages.values()) == ["m0", "m2", "m3", "m4"]
        assert q.n_inflight == 1                       # still hidden after the restart
        got = await s.receive(q, 10, 30, 0)
        assert sorted(m.body for m in got) == ["m2", "m3", "m4"]
        assert got[0].attributes == {"n": {"DataType": "Number", "StringValue": "2"}}
        f = s.queue(ACCOUNT, "keep.fifo")
        [dup] = await s.send(f, [{"MessageBody": "y", "MessageGroupId": "g", "MessageDeduplicationId": "d"}])
        assert isinstance(dup, dict) and len(f.messages) == 1   # the dedup window survived too

    _run(db, first)
    _run(db, second)


def test_purge_and_delete_queue(db):
    async def body(s: QueueService) -> None:
        q = await s.create_queue(ACCOUNT, "p", None, None)
        await s.send(q, [{"MessageBody": "a"}, {"MessageBody": "b"}])
        await s.purge(q)
        assert not q.messages
        with pytest.raises(SqsError) as exc:
            await s.purge(q)
        assert exc.value.shape == "PurgeQueueInProgress" and exc.value.status == 403
        await s.delete_queue(q)
        with pytest.raises(SqsError) as exc:
            s.queue(ACCOUNT, "p")
        assert exc.value.code == "AWS.SimpleQueueService.NonExistentQueue"
        with pytest.raises(SqsError) as exc:
            await s.create_queue(ACCOUNT, "p", None, None)
        assert exc.value.shape == "QueueDeletedRecently"
    _run(db, body)


def test_fifo_receive_retried_with_the_same_attempt_id(db):
    async def body(s: QueueService) -> None:
        q = await s.create_queue(ACCOUNT, "r.fifo", {"FifoQueue": "true", "ContentBasedDeduplication": "true"}, None)
        await s.send(q, [{"MessageBody": b, "MessageGroupId": g} for b, g in (("a1", "a"), ("a2", "a"), ("b1", "b"))])
        first = await s.receive(q, 2, 30, 0, "try-1")
        handles = [m.handle for m in first]
        assert [m.body for m in first] == ["a1", "a2"]
        # The retry (say the response was lost): the same messages and handles, not a new receive.
        again = await s.receive(q, 2, 30, 0, "try-1")
        assert [m.handle for m in again] == handles and [m.receives for m in again] == [1, 1]
        # A visibility change makes the retry a new receive (new handles, counted; the groups' turns go on).
        for m in first:
            s.change_visibility(q, m.handle, 0)
        renewed = await s.receive(q, 2, 30, 0, "try-1")
        assert [m.body for m in renewed] == ["b1", "a1"] and renewed[1].handle != handles[0]
        assert [m.receives for m in renewed] == [1, 2]
        # So does a delete: the receive that follows is new too.
        assert [m.body for m in await s.receive(q, 2, 30, 0, "try-1")] == ["b1", "a1"]   # the same again
        s.delete_message(q, renewed[0].handle)
        s.delete_message(q, renewed[1].handle)
        assert [m.body for m in await s.receive(q, 2, 30, 0, "try-1")] == ["a2"]
        # Another id is another receive; nothing else is visible.
        assert await s.receive(q, 2, 30, 0, "try-2") == []
    _run(db, body)


def test_fifo_attempt_after_the_visibility_timeout_and_after_the_window(db, monkeypatch):
    async def body(s: QueueService) -> None:
        q = await s.create_queue(ACCOUNT, "w.fifo", {"FifoQueue": "true", "ContentBasedDeduplication": "true"}, None)
        await s.send(q, [{"MessageBody": "x", "MessageGroupId": "g"}])
        [m] = await s.receive(q, 1, 0, 0, "t")          # visibility 0: visible again at once
        handle = m.handle
        [same] = await s.receive(q, 1, 30, 0, "t")      # retried: the same handle, in flight for 30 s now
        assert same.handle == handle and m.receives == 1 and q.n_inflight == 1
        assert await s.receive(q, 1, 30, 0) == []       # its group is busy
        later = time.time() + 301                        # past the 5-minute window: a new receive
        monkeypatch.setattr(time, "time", lambda: later)
        [fresh] = await s.receive(q, 1, 30, 0, "t")
        assert fresh.receives == 2 and fresh.handle != handle
    _run(db, body)
