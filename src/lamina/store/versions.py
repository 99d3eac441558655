"""Published versions and aliases, persisted per function (migration 005)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from lamina.store.db import Database


@dataclass
class VersionRow:
    function_name: str
    version: int
    config: dict            # {"Configuration": ..., "CodeHex": ..., "SourceDigest": ...}


@dataclass
class AliasRow:
    function_name: str
    name: str
    config: dict            # {"FunctionVersion", "Description", "AdditionalVersionWeights", "RevisionId"}


class VersionRepo:
    def __init__(self, db: Database) -> None:
        self.db = db

    def all(self) -> list[VersionRow]:
        rows = self.db.conn.execute(
            "SELECT function_name, version, config FROM function_versions ORDER BY function_name, version")
        return [VersionRow(r["function_name"], r["version"], json.loads(r["config"])) for r in rows]

    def insert(self, row: VersionRow) -> None:
        self.db.conn.execute(
            "INSERT INTO function_versions (function_name, version, config, created_at) VALUES (?, ?, ?, ?)",
            (row.function_name, row.version, json.dumps(row.config), time.time()))

    def update(self, row: VersionRow) -> None:
        self.db.conn.execute("UPDATE function_versions SET config = ? WHERE function_name = ? AND version = ?",
                             (json.dumps(row.config), row.function_name, row.version))

    def delete(self, function_name: str, version: int) -> None:
        self.db.conn.execute("DELETE FROM function_versions WHERE function_name = ? AND version = ?",
                             (function_name, version))


class AliasRepo:
    def __init__(self, db: Database) -> None:
        self.db = db

    def all(self) -> list[AliasRow]:
        rows = self.db.conn.execute("SELECT function_name, name, config FROM function_aliases "
                                    "ORDER BY function_name, name")
        return [AliasRow(r["function_name"], r["name"], json.loads(r["config"])) for r in rows]

    def upsert(self, row: AliasRow) -> None:
        self.db.conn.execute(
            "INSERT INTO function_aliases (function_name, name, config) VALUES (?, ?, ?) "
            "ON CONFLICT (function_name, name) DO UPDATE SET config = excluded.config",
            (row.function_name, row.name, json.dumps(row.config)))

    def delete(self, function_name: str, name: str) -> None:
        self.db.conn.execute("DELETE FROM function_aliases WHERE function_name = ? AND name = ?",
                             (function_name, name))
