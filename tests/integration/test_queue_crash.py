"""Queues across SIGKILL: every message whose send was answered 200 is still there after the restart (none lost),
and messages that were in flight (received, not deleted) come back once their visibility timeout has run out,
with their receive counted. Sends come from concurrent keep-alive clients while the server is killed at a random
moment; a standard and a FIFO queue."""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
import urllib.request
from pathlib import Path

from helpers import LaminaServer, create_function, unique_name

HEADERS = {"Content-Type": "application/x-amz-json-1.0"}


def _call(conn: http.client.HTTPConnection, op: str, params: dict) -> tuple[int, dict]:
    conn.request("POST", "/", body=json.dumps(params), headers={**HEADERS, "X-Amz-Target": f"AmazonSQS.{op}"})
    resp = conn.getresponse()
    data = resp.read()
    return resp.status, json.loads(data) if data else {}


class Senders:
    """Threads sending batches of 10 until `total` messages are acknowledged; they ride out a dead server."""

    def __init__(self, port: int, url: str, total: int, threads: int, fifo: bool) -> None:
        self.port, self.url, self.total, self.fifo = port, url, total, fifo
        self.acked: list[str] = []
        self.lock = threading.Lock()
        self.counter = 0
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))

    def _bodies(self) -> list[str] | None:
        with self.lock:
            if len(self.acked) >= self.total:
                return None
            start = self.counter
            self.counter += 10
        return [f"m-{i}" for i in range(start, start + 10)]

    def _run(self) -> None:
        conn: http.client.HTTPConnection | None = None
        bodies = self._bodies()
        while bodies is not None:
            entries = [{"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies)]
            if self.fifo:
                for e in entries:   # a batch sent again after the restart is deduplicated
                    body = e["MessageBody"]
                    e.update(MessageGroupId=f"g{int(body[2:]) % 4}", MessageDeduplicationId=body)
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                status, doc = _call(conn, "SendMessageBatch", {"QueueUrl": self.url, "Entries": entries})
                if status == 200:
                    ok = {e["Id"] for e in doc.get("Successful", [])}
                    with self.lock:
                        self.acked += [b for i, b in enumerate(bodies) if str(i) in ok]
                    bodies = self._bodies()
            except (OSError, http.client.HTTPException, ValueError):
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.02)   # the server is down: the same batch again once it is back


def _drain(port: int, url: str, want: set[str], timeout: float) -> dict[str, int]:
    """Receive (and delete) until every body in want has been seen; {body: ApproximateReceiveCount}."""
    seen: dict[str, int] = {}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    deadline = time.monotonic() + timeout
    while not want <= set(seen) and time.monotonic() < deadline:
        _, doc = _call(conn, "ReceiveMessage", {"QueueUrl": url, "MaxNumberOfMessages": 10, "WaitTimeSeconds": 1,
                                                "MessageSystemAttributeNames": ["ApproximateReceiveCount"]})
        messages = doc.get("Messages", [])
        for m in messages:
            seen[m["Body"]] = int(m["Attributes"]["ApproximateReceiveCount"])
        if messages:
            _call(conn, "DeleteMessageBatch", {"QueueUrl": url, "Entries": [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]})
    conn.close()
    return seen


def test_sigkill_loses_no_acknowledged_message(tmp_path: Path):
    server = LaminaServer(data_dir=tmp_path / "data", log_path=tmp_path / "server.log").start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        urls = {}
        for name, attrs in (("std", {"VisibilityTimeout": "5"}),
                            ("ord.fifo", {"FifoQueue": "true", "VisibilityTimeout": "5"})):
            status, doc = _call(conn, "CreateQueue", {"QueueName": name, "Attributes": attrs})
            assert status == 200, doc
            urls[name] = doc["QueueUrl"]
        # In flight at the kill: received, never deleted.
        inflight = [f"inflight-{i}" for i in range(30)]
        for part in (inflight[:10], inflight[10:20], inflight[20:30]):
            _call(conn, "SendMessageBatch", {"QueueUrl": urls["std"], "Entries": [
                {"Id": str(i), "MessageBody": b} for i, b in enumerate(part)]})
        received = 0
        while received < len(inflight):
            _, doc = _call(conn, "ReceiveMessage", {"QueueUrl": urls["std"], "MaxNumberOfMessages": 10})
            received += len(doc.get("Messages", []))
        conn.close()

        senders = [Senders(server.port, urls["std"], 3000, 6, fifo=False),
                   Senders(server.port, urls["ord.fifo"], 1000, 2, fifo=True)]
        for s in senders:
            s.start()
        kill_at = random.randint(500, 2000)
        while len(senders[0].acked) < kill_at:
            time.sleep(0.005)
        assert server.proc is not None
        server.proc.kill()                      # SIGKILL: no drain, no flush
        server.proc.wait(10)
        server.start(timeout=30)                # the same data dir and port
        for s in senders:
            s.join(120)
        std = set(senders[0].acked) | set(inflight)
        seen = _drain(server.port, urls["std"], std, 60)
        missing = std - set(seen)
        print(f"\nstandard: {len(senders[0].acked)} acknowledged, killed after {kill_at}; missing: {len(missing)}")
        assert not missing, f"{len(missing)} acknowledged message(s) lost, e.g. {sorted(missing)[:5]}"
        # The in-flight ones came back after their visibility timeout, their first receive counted.
        assert all(seen[b] >= 2 for b in inflight), {b: seen[b] for b in inflight}

        fifo_seen = _drain(server.port, urls["ord.fifo"], set(senders[1].acked), 60)
        assert set(senders[1].acked) <= set(fifo_seen)
    finally:
        server.stop()
        server.kill_leftovers()


HANDLER = '''
def handler(event, context):
    for r in event["Records"]:
        print("GOT " + r["body"])
'''


def test_mappings_survive_a_restart_and_sigterm_stops_their_pollers(tmp_path: Path):
    """An enabled mapping's poller waits on its queue; SIGTERM still stops the server at once (exit 0), and after
    the restart the mapping feeds its function again, messages sent while it was down included."""
    server = LaminaServer(data_dir=tmp_path / "data", log_path=tmp_path / "server.log").start()
    try:
        name = unique_name("esm")
        create_function(server.client(), name, {"app.py": HANDLER})
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        _, doc = _call(conn, "CreateQueue", {"QueueName": "feed"})
        url = doc["QueueUrl"]
        _, doc = _call(conn, "GetQueueAttributes", {"QueueUrl": url, "AttributeNames": ["QueueArn"]})
        server.client().create_event_source_mapping(EventSourceArn=doc["Attributes"]["QueueArn"], FunctionName=name)
        conn.close()
        assert server.stop() == 0
        server.start(timeout=30)
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        _call(conn, "SendMessage", {"QueueUrl": url, "MessageBody": "after the restart"})
        conn.close()
        deadline = time.monotonic() + 30
        logs = ""
        while "GOT after the restart" not in logs and time.monotonic() < deadline:
            with urllib.request.urlopen(f"{server.endpoint}/lamina/v1/functions/{name}/logs", timeout=10) as resp:
                logs = resp.read().decode()
            time.sleep(0.1)
        assert "GOT after the restart" in logs
        assert server.stop() == 0
    finally:
        server.stop()
        server.kill_leftovers()
