"""UDP gateway listener rows: each listener's configuration document (gateway/udp/config.py's shape)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from lamina.store.db import Database


@dataclass
class ListenerRow:
    id: str
    name: str
    config: dict
    created_at: float


class UdpListenerRepo:
    def __init__(self, db: Database) -> None:
        self.db = db

    def all(self) -> list[ListenerRow]:
        rows = self.db.conn.execute("SELECT id, name, config, created_at FROM udp_listeners ORDER BY created_at, id")
        return [ListenerRow(r["id"], r["name"], json.loads(r["config"]), r["created_at"]) for r in rows]

    def insert(self, row: ListenerRow) -> None:
        self.db.conn.execute("INSERT INTO udp_listeners (id, name, config, created_at) VALUES (?, ?, ?, ?)",
                             (row.id, row.name, json.dumps(row.config), row.created_at or time.time()))

    def update(self, listener_id: str, config: dict) -> None:
        self.db.conn.execute("UPDATE udp_listeners SET config = ? WHERE id = ?", (json.dumps(config), listener_id))

    def delete(self, listener_id: str) -> None:
        self.db.conn.execute("DELETE FROM udp_listeners WHERE id = ?", (listener_id,))
