"""EventBridge state in the embedded database: Scheduler schedules and groups, event buses, rules and their
targets, each a JSON document with the next due time of whatever it schedules."""

from __future__ import annotations

import json
from dataclasses import dataclass

from lamina.store.db import Database


@dataclass(slots=True)
class ScheduleRow:
    group: str
    name: str
    config: dict
    next_due: float | None


@dataclass(slots=True)
class RuleRow:
    bus: str
    name: str
    config: dict
    targets: list[dict]
    next_due: float | None


class EventBridgeRepo:
    def __init__(self, db: Database) -> None:
        self.db = db

    # schedule groups
    def groups(self) -> dict[str, dict]:
        return {r["name"]: json.loads(r["config"]) for r in self.db.conn.execute(
            "SELECT name, config FROM eb_schedule_groups")}

    def put_group(self, name: str, config: dict) -> None:
        self.db.conn.execute("INSERT OR REPLACE INTO eb_schedule_groups (name, config) VALUES (?, ?)",
                             (name, json.dumps(config)))

    def delete_group(self, name: str) -> None:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM eb_schedules WHERE group_name = ?", (name,))
            conn.execute("DELETE FROM eb_schedule_groups WHERE name = ?", (name,))

    # schedules
    def schedules(self) -> list[ScheduleRow]:
        return [ScheduleRow(r["group_name"], r["name"], json.loads(r["config"]), r["next_due"])
                for r in self.db.conn.execute("SELECT group_name, name, config, next_due FROM eb_schedules")]

    def put_schedule(self, row: ScheduleRow) -> None:
        self.db.conn.execute(
            "INSERT OR REPLACE INTO eb_schedules (group_name, name, config, next_due) VALUES (?, ?, ?, ?)",
            (row.group, row.name, json.dumps(row.config), row.next_due))

    def set_schedule_due(self, group: str, name: str, next_due: float | None) -> None:
        self.db.conn.execute("UPDATE eb_schedules SET next_due = ? WHERE group_name = ? AND name = ?",
                             (next_due, group, name))

    def set_schedules_due(self, rows: list[tuple[float | None, str, str]]) -> None:
        """Many (next_due, group, name) in one commit: a minute with thousands of schedules due is one write."""
        with self.db.transaction() as conn:
            conn.executemany("UPDATE eb_schedules SET next_due = ? WHERE group_name = ? AND name = ?", rows)

    def delete_schedule(self, group: str, name: str) -> None:
        self.db.conn.execute("DELETE FROM eb_schedules WHERE group_name = ? AND name = ?", (group, name))

    # buses
    def buses(self) -> dict[str, dict]:
        return {r["name"]: json.loads(r["config"]) for r in self.db.conn.execute("SELECT name, config FROM eb_buses")}

    def put_bus(self, name: str, config: dict) -> None:
        self.db.conn.execute("INSERT OR REPLACE INTO eb_buses (name, config) VALUES (?, ?)",
                             (name, json.dumps(config)))

    def delete_bus(self, name: str) -> None:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM eb_rules WHERE bus = ?", (name,))
            conn.execute("DELETE FROM eb_buses WHERE name = ?", (name,))

    # rules
    def rules(self) -> list[RuleRow]:
        return [RuleRow(r["bus"], r["name"], json.loads(r["config"]), json.loads(r["targets"]), r["next_due"])
                for r in self.db.conn.execute("SELECT bus, name, config, targets, next_due FROM eb_rules")]

    def put_rule(self, row: RuleRow) -> None:
        self.db.conn.execute(
            "INSERT OR REPLACE INTO eb_rules (bus, name, config, targets, next_due) VALUES (?, ?, ?, ?, ?)",
            (row.bus, row.name, json.dumps(row.config), json.dumps(row.targets), row.next_due))

    def set_rule_due(self, bus: str, name: str, next_due: float | None) -> None:
        self.db.conn.execute("UPDATE eb_rules SET next_due = ? WHERE bus = ? AND name = ?", (next_due, bus, name))

    def delete_rule(self, bus: str, name: str) -> None:
        self.db.conn.execute("DELETE FROM eb_rules WHERE bus = ? AND name = ?", (bus, name))
