"""The embedded SQLite database and its migration runner."""

from __future__ import annotations

import sqlite3
from importlib import resources
from pathlib import Path


class Database:
    """One connection, used from the event loop thread only (SQLite has one writer anyway).

    Statements are microseconds here, so they run inline rather than in a thread pool; the invoke
    hot path never touches the database.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self.migrate()

    def migrate(self) -> list[str]:
        """Apply the numbered NNN_*.sql files not yet recorded in schema_version."""
        self.conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, name TEXT)")
        done = {row[0] for row in self.conn.execute("SELECT version FROM schema_version")}
        applied = []
        folder = resources.files("lamina.store") / "migrations" / "sqlite"
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if not entry.name.endswith(".sql"):
                continue
            version = int(entry.name.split("_", 1)[0])
            if version in done:
                continue
            with self.transaction():
                for statement in _split_sql(entry.read_text()):
                    self.conn.execute(statement)
                self.conn.execute("INSERT INTO schema_version (version, name) VALUES (?, ?)", (version, entry.name))
            applied.append(entry.name)
        return applied

    def transaction(self) -> _Transaction:
        return _Transaction(self.conn)

    def close(self) -> None:
        self.conn.close()


class _Transaction:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")


def _split_sql(text: str) -> list[str]:
    # Migrations are plain statements separated by ';' at line ends; no triggers with bodies.
    lines = [line for line in text.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
