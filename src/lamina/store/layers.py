"""Layers and their versions, persisted (migration 019): each version's document, package and resource policy."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from lamina.store.db import Database


@dataclass
class LayerVersionRow:
    layer_name: str
    version: int
    config: dict             # the GetLayerVersion document, without Content.Location (it depends on the caller)
    code_hex: str            # the package's sha256 in the code store
    policy: dict | None      # {"RevisionId": ..., "Statements": {sid: statement}}, or None


class LayerRepo:
    def __init__(self, db: Database) -> None:
        self.db = db

    def counters(self) -> dict[str, int]:
        return {r["name"]: r["next_version"] for r in self.db.conn.execute("SELECT name, next_version FROM layers")}

    def versions(self) -> list[LayerVersionRow]:
        rows = self.db.conn.execute("SELECT layer_name, version, config, code_hex, policy FROM layer_versions "
                                    "ORDER BY layer_name, version")
        return [LayerVersionRow(r["layer_name"], r["version"], json.loads(r["config"]), r["code_hex"],
                                json.loads(r["policy"]) if r["policy"] else None) for r in rows]

    def insert(self, row: LayerVersionRow, next_version: int) -> None:
        with self.db.transaction() as conn:
            conn.execute("INSERT INTO layers (name, next_version) VALUES (?, ?) "
                         "ON CONFLICT (name) DO UPDATE SET next_version = excluded.next_version",
                         (row.layer_name, next_version))
            conn.execute("INSERT INTO layer_versions (layer_name, version, config, code_hex, policy, created_at) "
                         "VALUES (?, ?, ?, ?, ?, ?)",
                         (row.layer_name, row.version, json.dumps(row.config), row.code_hex,
                          json.dumps(row.policy) if row.policy else None, time.time()))

    def set_policy(self, layer_name: str, version: int, policy: dict | None) -> None:
        self.db.conn.execute("UPDATE layer_versions SET policy = ? WHERE layer_name = ? AND version = ?",
                             (json.dumps(policy) if policy else None, layer_name, version))

    def delete(self, layer_name: str, version: int) -> None:
        self.db.conn.execute("DELETE FROM layer_versions WHERE layer_name = ? AND version = ?", (layer_name, version))
