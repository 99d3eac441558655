"""Event-invoke configurations (Put/UpdateFunctionEventInvokeConfig), one row per function and qualifier."""

from __future__ import annotations

import json
from dataclasses import dataclass

from lamina.store.db import Database


@dataclass
class EventInvokeConfigRow:
    function_name: str
    qualifier: str          # $LATEST, a version number or an alias name
    config: dict            # MaximumRetryAttempts, MaximumEventAgeInSeconds, DestinationConfig, LastModified


class EventInvokeConfigRepo:
    def __init__(self, db: Database) -> None:
        self.db = db

    def all(self) -> list[EventInvokeConfigRow]:
        rows = self.db.conn.execute("SELECT function_name, qualifier, config FROM event_invoke_configs")
        return [EventInvokeConfigRow(r["function_name"], r["qualifier"], json.loads(r["config"])) for r in rows]

    def upsert(self, row: EventInvokeConfigRow) -> None:
        self.db.conn.execute(
            "INSERT INTO event_invoke_configs (function_name, qualifier, config) VALUES (?, ?, ?) "
            "ON CONFLICT(function_name, qualifier) DO UPDATE SET config = excluded.config",
            (row.function_name, row.qualifier, json.dumps(row.config)))

    def delete(self, function_name: str, qualifier: str) -> None:
        self.db.conn.execute("DELETE FROM event_invoke_configs WHERE function_name = ? AND qualifier = ?",
                             (function_name, qualifier))

    def delete_function(self, function_name: str) -> None:
        self.db.conn.execute("DELETE FROM event_invoke_configs WHERE function_name = ?", (function_name,))
