"""MicroVM images, image versions, builds (with their logs) and instances, persisted (migration 007).

Rows carry JSON documents shaped like the API's responses, so the manager keeps them in memory and
writes them back on every change; the columns are only what rows are looked up by.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from lamina.store.db import Database


@dataclass
class ImageRow:
    name: str
    config: dict            # imageArn, state, createdAt, updatedAt, tags, clientToken ...


@dataclass
class VersionRow:
    image_name: str
    version: str
    seq: int                # 1, 2, ... in creation order (the version string is derived from it)
    config: dict            # the request's configuration + state, status, stateReason, timestamps
    built: dict | None      # the engine's BuiltImage.to_dict() after a successful build


@dataclass
class BuildRow:
    build_id: str
    image_name: str
    version: str
    config: dict            # buildState, architecture, chipset, stateReason, createdAt ...


@dataclass
class InstanceRow:
    microvm_id: str
    client_token: str | None
    image_name: str
    config: dict            # the GetMicrovm document (+ memory)


class MicrovmRepo:
    def __init__(self, db: Database) -> None:
        self.db = db

    # images
    def images(self) -> list[ImageRow]:
        rows = self.db.conn.execute("SELECT name, config FROM microvm_images ORDER BY created_at, name")
        return [ImageRow(r["name"], json.loads(r["config"])) for r in rows]

    def save_image(self, row: ImageRow) -> None:
        self.db.conn.execute(
            "INSERT INTO microvm_images (name, config, created_at) VALUES (?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET config = excluded.config",
            (row.name, json.dumps(row.config), time.time()))

    def delete_image(self, name: str) -> None:
        self.db.conn.execute("DELETE FROM microvm_images WHERE name = ?", (name,))

    # versions
    def versions(self) -> list[VersionRow]:
        rows = self.db.conn.execute(
            "SELECT image_name, version, seq, config, built FROM microvm_image_versions ORDER BY image_name, seq")
        return [VersionRow(r["image_name"], r["version"], r["seq"], json.loads(r["config"]),
                           json.loads(r["built"]) if r["built"] else None) for r in rows]

    def save_version(self, row: VersionRow) -> None:
        built = json.dumps(row.built) if row.built is not None else None
        self.db.conn.execute(
            "INSERT INTO microvm_image_versions (image_name, version, seq, config, built) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (image_name, version) DO UPDATE SET config = excluded.config, built = excluded.built",
            (row.image_name, row.version, row.seq, json.dumps(row.config), built))

    def delete_version(self, image_name: str, version: str) -> None:
        self.db.conn.execute("DELETE FROM microvm_image_versions WHERE image_name = ? AND version = ?",
                             (image_name, version))

    # builds
    def builds(self) -> list[BuildRow]:
        rows = self.db.conn.execute("SELECT build_id, image_name, version, config FROM microvm_builds")
        return [BuildRow(r["build_id"], r["image_name"], r["version"], json.loads(r["config"])) for r in rows]

    def save_build(self, row: BuildRow) -> None:
        self.db.conn.execute(
            "INSERT INTO microvm_builds (build_id, image_name, version, config) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (build_id) DO UPDATE SET config = excluded.config",
            (row.build_id, row.image_name, row.version, json.dumps(row.config)))

    def append_log(self, build_id: str, text: str) -> None:
        self.db.conn.execute("UPDATE microvm_builds SET log = log || ? WHERE build_id = ?", (text, build_id))

    def build_log(self, build_id: str) -> str | None:
        row = self.db.conn.execute("SELECT log FROM microvm_builds WHERE build_id = ?", (build_id,)).fetchone()
        return None if row is None else row["log"]

    # instances
    def instances(self) -> list[InstanceRow]:
        rows = self.db.conn.execute(
            "SELECT microvm_id, client_token, image_name, config FROM microvm_instances ORDER BY created_at")
        return [InstanceRow(r["microvm_id"], r["client_token"], r["image_name"], json.loads(r["config"]))
                for r in rows]

    def save_instance(self, row: InstanceRow) -> None:
        self.db.conn.execute(
            "INSERT INTO microvm_instances (microvm_id, client_token, image_name, config, created_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (microvm_id) DO UPDATE SET config = excluded.config",
            (row.microvm_id, row.client_token, row.image_name, json.dumps(row.config), time.time()))

    def delete_instances_before(self, cutoff: float) -> None:
        """Forget terminated instances created before `cutoff` (the caller picks only terminated ones)."""
        self.db.conn.execute("DELETE FROM microvm_instances WHERE created_at < ? AND "
                             "json_extract(config, '$.state') = 'TERMINATED'", (cutoff,))
