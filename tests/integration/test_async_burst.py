"""A burst of Event invokes from many keep-alive clients: the server gives starting attempts a bounded share of each
loop turn (events/delivery.py, START_PER_TURN) so that accepts are not starved, but delivery never stops: events run
while the burst goes on, and the queue drains once it is over, every accepted event run."""

from __future__ import annotations

import time
from pathlib import Path

from test_async_crash import RECORD_IDS, Clients, _drained, _health, _messages

from helpers import LaminaServer, create_function, unique_name


def test_events_run_during_a_burst_and_the_queue_drains_after(tmp_path: Path):
    total = 4000
    server = LaminaServer(data_dir=tmp_path / "data", log_path=tmp_path / "server.log").start()
    try:
        client = server.client()
        name = unique_name("burst")
        create_function(client, name, {"app.py": RECORD_IDS})
        client.invoke(FunctionName=name, Payload=b"{}")       # a warm environment before the burst
        before = _health(server)["succeeded"]
        clients = Clients(server.port, name, total, threads=32)
        clients.start()
        ran_during_burst = 0
        while len(clients.accepted) < total * 3 // 4:
            ran_during_burst = _health(server)["succeeded"] - before
            time.sleep(0.02)
        clients.join(120)
        assert clients.errors == 0 and len(clients.accepted) >= total
        # Delivery went on while accepts were still coming in (it was not starved) ...
        assert ran_during_burst > 0
        # ... and the rest ran once the burst was over.
        health = _drained(server, 120)
        assert health["succeeded"] - before == len(clients.accepted)
        runs = set(_messages(server, name, "RAN "))
        missing = set(clients.accepted) - runs
        assert not missing, f"{len(missing)} accepted event(s) never ran, e.g. {sorted(missing)[:5]}"
    finally:
        server.stop()
        server.kill_leftovers()
