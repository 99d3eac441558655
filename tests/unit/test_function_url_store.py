"""Migration 002: function URLs and policy statements are stored per function and go with it."""

from __future__ import annotations

from lamina.store.db import Database
from lamina.store.function_urls import FunctionUrlRepo, PermissionRepo, StatementRow, UrlRow
from lamina.store.functions import FunctionRepo


def test_rows_round_trip_and_cascade(tmp_path):
    db = Database(tmp_path / "lamina.db")
    FunctionRepo(db).insert("fn", {"Configuration": {}}, {})
    FunctionRepo(db).insert("other", {"Configuration": {}}, {})
    urls, perms = FunctionUrlRepo(db), PermissionRepo(db)
    urls.insert(UrlRow("a" * 32, "fn", "", {"AuthType": "NONE"}))
    urls.insert(UrlRow("b" * 32, "other", "", {"AuthType": "AWS_IAM"}))
    perms.insert(StatementRow("fn", "", "s1", {"Sid": "s1"}))
    perms.insert(StatementRow("fn", "", "s2", {"Sid": "s2"}))
    urls.update(UrlRow("a" * 32, "fn", "", {"AuthType": "AWS_IAM"}))
    db.close()

    db = Database(tmp_path / "lamina.db")  # reopened: no migration runs twice
    urls, perms = FunctionUrlRepo(db), PermissionRepo(db)
    assert [(r.url_id, r.config) for r in urls.all()] == [("a" * 32, {"AuthType": "AWS_IAM"}),
                                                          ("b" * 32, {"AuthType": "AWS_IAM"})]
    assert [r.statement_id for r in perms.all()] == ["s1", "s2"]
    FunctionRepo(db).delete("fn")
    assert [r.function_name for r in urls.all()] == ["other"]
    assert perms.all() == []
    db.close()
