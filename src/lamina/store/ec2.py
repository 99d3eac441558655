"""The EC2 subset's resources (VPCs, subnets, security groups, network interfaces) as AWS-shaped JSON documents."""

from __future__ import annotations

import json

from lamina.store.db import Database


class Ec2Repo:
    def __init__(self, db: Database) -> None:
        self.db = db

    def all(self, kind: str) -> list[dict]:
        rows = self.db.conn.execute("SELECT doc FROM ec2_resources WHERE kind = ? ORDER BY created, id", (kind,))
        return [json.loads(r["doc"]) for r in rows]

    def put(self, kind: str, resource_id: str, doc: dict) -> None:
        self.db.conn.execute(
            "INSERT INTO ec2_resources (id, kind, doc) VALUES (?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET doc = excluded.doc",
            (resource_id, kind, json.dumps(doc)))

    def delete(self, resource_id: str) -> None:
        self.db.conn.execute("DELETE FROM ec2_resources WHERE id = ?", (resource_id,))
