"""Function URL configurations and resource-policy statements, persisted per function."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from lamina.store.db import Database


@dataclass
class UrlRow:
    url_id: str
    function_name: str
    qualifier: str          # '' for the unqualified function
    config: dict


@dataclass
class StatementRow:
    function_name: str
    qualifier: str
    statement_id: str
    statement: dict


class FunctionUrlRepo:
    def __init__(self, db: Database) -> None:
        self.db = db

    def all(self) -> list[UrlRow]:
        rows = self.db.conn.execute(
            "SELECT url_id, function_name, qualifier, config FROM function_urls ORDER BY function_name, qualifier")
        return [UrlRow(r["url_id"], r["function_name"], r["qualifier"], json.loads(r["config"])) for r in rows]

    def insert(self, row: UrlRow) -> None:
        self.db.conn.execute(
            "INSERT INTO function_urls (url_id, function_name, qualifier, config) VALUES (?, ?, ?, ?)",
            (row.url_id, row.function_name, row.qualifier, json.dumps(row.config)),
        )

    def update(self, row: UrlRow) -> None:
        self.db.conn.execute("UPDATE function_urls SET config = ? WHERE url_id = ?",
                             (json.dumps(row.config), row.url_id))

    def delete(self, url_id: str) -> None:
        self.db.conn.execute("DELETE FROM function_urls WHERE url_id = ?", (url_id,))


class PermissionRepo:
    def __init__(self, db: Database) -> None:
        self.db = db

    def all(self) -> list[StatementRow]:
        rows = self.db.conn.execute(
            "SELECT function_name, qualifier, statement_id, statement FROM function_permissions "
            "ORDER BY function_name, qualifier, created_at, statement_id")
        return [StatementRow(r["function_name"], r["qualifier"], r["statement_id"], json.loads(r["statement"]))
                for r in rows]

    def insert(self, row: StatementRow) -> None:
        self.db.conn.execute(
            "INSERT INTO function_permissions (function_name, qualifier, statement_id, statement, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (row.function_name, row.qualifier, row.statement_id, json.dumps(row.statement), time.time()),
        )

    def delete(self, function_name: str, qualifier: str, statement_id: str) -> None:
        self.db.conn.execute(
            "DELETE FROM function_permissions WHERE function_name = ? AND qualifier = ? AND statement_id = ?",
            (function_name, qualifier, statement_id))

    def delete_qualifier(self, function_name: str, qualifier: str) -> None:
        """Every statement of one version's or alias's policy (the version or alias was deleted)."""
        self.db.conn.execute("DELETE FROM function_permissions WHERE function_name = ? AND qualifier = ?",
                             (function_name, qualifier))
