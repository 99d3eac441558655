"""Function rows: the persisted configuration and tags of each function."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from lamina.store.db import Database


@dataclass
class FunctionRow:
    name: str
    config: dict
    tags: dict
    created_at: float


class FunctionRepo:
    def __init__(self, db: Database) -> None:
        self.db = db

    def all(self) -> list[FunctionRow]:
        rows = self.db.conn.execute("SELECT name, config, tags, created_at FROM functions ORDER BY name")
        return [FunctionRow(r["name"], json.loads(r["config"]), json.loads(r["tags"]), r["created_at"]) for r in rows]

    def insert(self, name: str, config: dict, tags: dict) -> None:
        now = time.time()
        self.db.conn.execute(
            "INSERT INTO functions (name, config, tags, created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
            (name, json.dumps(config), json.dumps(tags), now, now),
        )

    def update(self, name: str, config: dict, tags: dict) -> None:
        self.db.conn.execute(
            "UPDATE functions SET config = ?, tags = ?, updated_at = ? WHERE name = ?",
            (json.dumps(config), json.dumps(tags), time.time(), name),
        )

    def delete(self, name: str) -> None:
        self.db.conn.execute("DELETE FROM functions WHERE name = ?", (name,))
