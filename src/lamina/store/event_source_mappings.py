"""Event source mappings (CreateEventSourceMapping), one row per mapping: its configuration as JSON."""

from __future__ import annotations

import json

from lamina.store.db import Database


class EventSourceMappingRepo:
    def __init__(self, db: Database) -> None:
        self.db = db

    def all(self) -> list[dict]:
        return [json.loads(r["config"]) for r in self.db.conn.execute("SELECT config FROM event_source_mappings")]

    def upsert(self, config: dict) -> None:
        self.db.conn.execute("INSERT INTO event_source_mappings (uuid, config) VALUES (?, ?) "
                             "ON CONFLICT(uuid) DO UPDATE SET config = excluded.config",
                             (config["UUID"], json.dumps(config)))

    def delete(self, uuid: str) -> None:
        self.db.conn.execute("DELETE FROM event_source_mappings WHERE uuid = ?", (uuid,))
