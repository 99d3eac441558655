"""Per-function settings kept apart from the configuration document (recursion, runtime management, the bound code
signing configuration) and the code signing configurations themselves (migration 019)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from lamina.store.db import Database


@dataclass
class SettingRow:
    function_name: str
    qualifier: str          # '' for the function itself
    kind: str               # 'recursion', 'runtime-management', 'code-signing'
    doc: dict


class SettingsRepo:
    def __init__(self, db: Database) -> None:
        self.db = db

    def all(self) -> list[SettingRow]:
        rows = self.db.conn.execute("SELECT function_name, qualifier, kind, doc FROM function_settings")
        return [SettingRow(r["function_name"], r["qualifier"], r["kind"], json.loads(r["doc"])) for r in rows]

    def put(self, row: SettingRow) -> None:
        self.db.conn.execute(
            "INSERT INTO function_settings (function_name, qualifier, kind, doc) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (function_name, qualifier, kind) DO UPDATE SET doc = excluded.doc",
            (row.function_name, row.qualifier, row.kind, json.dumps(row.doc)))

    def delete(self, function_name: str, qualifier: str, kind: str) -> None:
        self.db.conn.execute("DELETE FROM function_settings WHERE function_name = ? AND qualifier = ? AND kind = ?",
                             (function_name, qualifier, kind))

    def delete_qualifier(self, function_name: str, qualifier: str) -> None:
        self.db.conn.execute("DELETE FROM function_settings WHERE function_name = ? AND qualifier = ?",
                             (function_name, qualifier))


@dataclass
class CodeSigningRow:
    config_id: str
    config: dict            # the CodeSigningConfig document
    tags: dict


class CodeSigningRepo:
    def __init__(self, db: Database) -> None:
        self.db = db

    def all(self) -> list[CodeSigningRow]:
        rows = self.db.conn.execute("SELECT id, config, tags FROM code_signing_configs ORDER BY rowid")
        return [CodeSigningRow(r["id"], json.loads(r["config"]), json.loads(r["tags"])) for r in rows]

    def put(self, row: CodeSigningRow) -> None:
        self.db.conn.execute(
            "INSERT INTO code_signing_configs (id, config, tags) VALUES (?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET config = excluded.config, tags = excluded.tags",
            (row.config_id, json.dumps(row.config), json.dumps(row.tags)))

    def delete(self, config_id: str) -> None:
        self.db.conn.execute("DELETE FROM code_signing_configs WHERE id = ?", (config_id,))
