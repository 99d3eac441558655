"""EventBridge state in the embedded database: Scheduler schedules and groups, event buses, rules and their
targets, each a JSON document with the next due time of whatever it schedules."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

import orjson

from lamina.store.db import Database
from lamina.store.group_commit import Kind


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


@dataclass(slots=True)
class PendingRow:
    """An occurrence fired (its owner's next_due advanced past it) and not yet taken by its target."""

    id: int
    owner: str          # "s" (a = schedule group) or "r" (a = rule's bus)
    a: str
    b: str
    occurrence: float
    fire_at: float
    target: dict
    payload: bytes


def _delete_pending(conn: sqlite3.Connection, args: list[list[int]]) -> None:
    ids = [i for part in args for i in part]
    for k in range(0, len(ids), 500):
        part = ids[k : k + 500]
        conn.execute(f"DELETE FROM eb_pending WHERE id IN ({', '.join('?' * len(part))})", part)


# Run inside a target's own transaction (the async queue's or a queue's writer, same database file): the pending
# rows it takes are gone exactly when its write is durable.
TAKE_PENDING = Kind("eb-take-pending", _delete_pending)


class EventBridgeRepo:
    def __init__(self, db: Database) -> None:
        self.db = db
        row = db.conn.execute("SELECT max(id) FROM eb_pending").fetchone()
        self._pending_id = (row[0] or 0) if row else 0

    def pending_id(self) -> int:
        self._pending_id += 1
        return self._pending_id

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

    def set_schedules_due(self, rows: list[tuple[float | None, str, str]]) -> None:
        """Many (next_due, group, name) in one commit: a minute with thousands of schedules due is one write."""
        with self.db.transaction() as conn:
            conn.executemany("UPDATE eb_schedules SET next_due = ? WHERE group_name = ? AND name = ?", rows)

    def fire(self, schedules: list[tuple[float | None, str, str]], rules: list[tuple[float | None, str, str]],
             pending: list[PendingRow]) -> None:
        """One commit for a tick: the owners' next due times advanced and their occurrences written as pending.
        A minute's thousands of schedules share a few next due times: one UPDATE per next due time, group and 500
        names, and multi-row INSERTs keep it a handful of statements."""
        with self.db.transaction() as conn:
            for table, first, rows in (("eb_schedules", "group_name", schedules), ("eb_rules", "bus", rules)):
                by_due: dict[tuple[float | None, str], list[str]] = {}
                for due, a, b in rows:
                    by_due.setdefault((due, a), []).append(b)
                for (due, a), names in by_due.items():
                    for k in range(0, len(names), 500):
                        part = names[k : k + 500]
                        conn.execute(f"UPDATE {table} SET next_due = ? WHERE {first} = ? AND name IN "
                                     f"({', '.join('?' * len(part))})", [due, a, *part])
            values = [v for p in pending for v in (p.id, p.owner, p.a, p.b, p.occurrence, p.fire_at,
                                                   orjson.dumps(p.target).decode(), p.payload)]
            for k in range(0, len(values), 8 * 100):
                row_values = values[k : k + 800]
                conn.execute("INSERT INTO eb_pending (id, owner, a, b, occurrence, fire_at, target, payload) VALUES "
                             + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?)"] * (len(row_values) // 8)), row_values)

    def pending(self) -> list[PendingRow]:
        return [PendingRow(r[0], r[1], r[2], r[3], r[4], r[5], orjson.loads(r[6]), bytes(r[7]))
                for r in self.db.conn.execute("SELECT id, owner, a, b, occurrence, fire_at, target, payload "
                                              "FROM eb_pending ORDER BY id")]

    def take_pending(self, ids: list[int]) -> None:
        """Pending rows done without a target's write (sent to a bus, or given up after retries)."""
        _delete_pending(self.db.conn, [ids])

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

    def set_rules_due(self, rows: list[tuple[float | None, str, str]]) -> None:
        with self.db.transaction() as conn:
            conn.executemany("UPDATE eb_rules SET next_due = ? WHERE bus = ? AND name = ?", rows)

    def delete_rule(self, bus: str, name: str) -> None:
        self.db.conn.execute("DELETE FROM eb_rules WHERE bus = ? AND name = ?", (bus, name))
