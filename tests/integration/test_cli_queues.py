"""`lamina queue ...` and `lamina esm ...` against the session server."""

from __future__ import annotations

import json
import time

from helpers import unique_name

HANDLER = '''
def handler(event, context):
    for r in event["Records"]:
        print("GOT " + r["body"])
'''


def _row(output: str, name: str) -> list[str]:
    return next(line.split() for line in output.splitlines() if line.split()[:1] == [name])


def test_queue_commands(cli):
    name = unique_name("cliq")
    dlq = name + "-dlq"
    cli("queue", "create", dlq)
    url = cli("queue", "create", name, "--visibility-timeout", "60", "--dlq", dlq, "--max-receives", "3").stdout
    assert url.strip().endswith("/000000000000/" + name)
    for body in ("one", "two", "three"):
        assert len(cli("queue", "send", name, body).stdout.strip()) == 36      # a MessageId
    listing = cli("queue", "ls").stdout
    row = _row(listing, name)
    assert row[1:5] == ["standard", "3", "0", "0"] and row[5].endswith("s") and row[-1] == dlq   # oldest: seconds
    got = [json.loads(line) for line in cli("queue", "receive", name, "--max", "2", "--keep").stdout.splitlines()]
    assert [m["Body"] for m in got] == ["one", "two"]
    assert _row(cli("queue", "ls").stdout, name)[2:4] == ["1", "2"]           # 1 visible, 2 in flight
    got = [json.loads(line) for line in cli("queue", "receive", name).stdout.splitlines()]
    assert [m["Body"] for m in got] == ["three"]                              # and deleted
    cli("queue", "purge", name, "--yes")
    assert _row(cli("queue", "ls").stdout, name)[2:4] == ["0", "0"]
    cli("queue", "rm", name, "--yes")
    cli("queue", "rm", dlq, "--yes")
    gone = cli("queue", "send", name, "x", ok=False)
    assert gone.returncode == 1 and "The specified queue does not exist." in gone.stderr
    assert "AWS.SimpleQueueService.NonExistentQueue" in gone.stderr and "HTTP400" not in gone.stderr


def test_esm_commands(cli, functions):
    fn = functions({"app.py": HANDLER}, prefix="cliesm")
    queue = unique_name("cliesm")
    cli("queue", "create", queue)
    uuid = cli("esm", "create", fn, queue, "--batch-size", "5", "--report-failures", "--max-concurrency", "2",
               "--filter", '{"body": ["keep"]}').stdout.strip()
    cli("queue", "send", queue, "keep")
    cli("queue", "send", queue, "drop")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _row(cli("queue", "ls").stdout, queue)[2:4] != ["0", "0"]:
        time.sleep(0.2)
    row = _row(cli("esm", "ls", "--function", fn).stdout, uuid)
    assert row[1:5] == [queue, fn, "Enabled", "5"] and row[5] == "1"          # one invoke: "drop" was filtered
    cli("esm", "disable", uuid)
    doc = json.loads(cli("esm", "ls", "--json").stdout)
    assert next(m for m in doc["EventSourceMappings"] if m["UUID"] == uuid)["State"] in ("Disabling", "Disabled")
    cli("esm", "rm", uuid)
    cli("queue", "rm", queue, "--yes")
