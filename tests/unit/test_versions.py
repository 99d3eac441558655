"""Versions and aliases below the API: the stored rows (migration 005), the dispatcher's pool per
version, alias routing and what counts as a change worth a new version."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from lamina.dispatch.dispatcher import Dispatcher
from lamina.dispatch.spec import FunctionSpec, pool_key
from lamina.functions.registry import Alias, Function
from lamina.store.db import Database
from lamina.store.functions import FunctionRepo
from lamina.store.logs import LogStore
from lamina.store.versions import AliasRepo, AliasRow, VersionRepo, VersionRow


def test_rows_round_trip_and_cascade(tmp_path):
    db = Database(tmp_path / "lamina.db")
    FunctionRepo(db).insert("fn", {"Configuration": {}}, {})
    FunctionRepo(db).insert("other", {"Configuration": {}}, {})
    versions, aliases = VersionRepo(db), AliasRepo(db)
    versions.insert(VersionRow("fn", 1, {"Configuration": {"Version": "1"}, "CodeHex": "a"}))
    versions.insert(VersionRow("fn", 2, {"Configuration": {"Version": "2"}, "CodeHex": "b"}))
    versions.insert(VersionRow("other", 1, {"Configuration": {"Version": "1"}, "CodeHex": "c"}))
    versions.update(VersionRow("fn", 2, {"Configuration": {"Version": "2", "State": "Active"}, "CodeHex": "b"}))
    aliases.upsert(AliasRow("fn", "live", {"FunctionVersion": "1"}))
    aliases.upsert(AliasRow("fn", "live", {"FunctionVersion": "2"}))
    aliases.upsert(AliasRow("other", "live", {"FunctionVersion": "1"}))
    db.close()

    db = Database(tmp_path / "lamina.db")  # reopened: no migration runs twice
    versions, aliases = VersionRepo(db), AliasRepo(db)
    assert [(r.function_name, r.version) for r in versions.all()] == [("fn", 1), ("fn", 2), ("other", 1)]
    assert versions.all()[1].config["Configuration"]["State"] == "Active"
    assert [(r.function_name, r.config["FunctionVersion"]) for r in aliases.all()] == [("fn", "2"), ("other", "1")]
    versions.delete("fn", 1)
    assert [(r.function_name, r.version) for r in versions.all()] == [("fn", 2), ("other", 1)]
    FunctionRepo(db).delete("fn")
    assert [r.function_name for r in versions.all()] == ["other"]
    assert [r.function_name for r in aliases.all()] == ["other"]
    db.close()


def _spec(name: str, version: str, code: str = "a") -> FunctionSpec:
    return FunctionSpec(name=name, arn=f"arn:aws:lambda:us-east-1:000000000000:function:{name}", version=version,
                        runtime="python3.11", handler="app.handler", memory_mb=128, timeout_s=3,
                        code_dir=Path("/nonexistent") / code, code_sha=code)


def test_dispatcher_keeps_one_pool_per_version(tmp_path):
    async def scenario() -> None:
        dispatcher = Dispatcher(None, LogStore(tmp_path))  # type: ignore[arg-type] - no environment starts
        latest = dispatcher.set_function(_spec("fn", "$LATEST"))
        one = dispatcher.set_function(_spec("fn", "1"))
        other = dispatcher.set_function(_spec("other", "$LATEST"))
        assert _spec("fn", "1").key == pool_key("fn", "1") == "fn:1"
        assert set(dispatcher.pools) == {"fn:$LATEST", "fn:1", "other:$LATEST"}
        assert dispatcher.set_function(_spec("fn", "1")) is one  # the same spec again: the same pool

        # A new $LATEST replaces only $LATEST's pool; the published version keeps its own.
        new_latest = dispatcher.set_function(_spec("fn", "$LATEST", code="b"))
        assert new_latest is not latest and latest.retired and not one.retired
        assert dispatcher.pools["fn:1"] is one

        assert dispatcher.recycle("fn") == 0
        dispatcher.remove_version("fn", "1")
        assert one.retired and set(dispatcher.pools) == {"fn:$LATEST", "other:$LATEST"}
        dispatcher.remove_version("fn", "7")  # not there: nothing happens
        dispatcher.set_function(_spec("fn", "2"))
        dispatcher.remove_function("fn")
        assert set(dispatcher.pools) == {"other:$LATEST"} and not other.retired

    asyncio.run(scenario())


def test_alias_pick_follows_the_weight():
    rng = random.Random(7)
    alias = Alias("canary", "1", weights={"2": 0.25})
    assert alias.targets == {"1", "2"}
    original = random.random
    random.random = rng.random  # type: ignore[assignment]
    try:
        picks = [alias.pick() for _ in range(4000)]
    finally:
        random.random = original  # type: ignore[assignment]
    share = picks.count("2") / len(picks)
    assert 0.22 < share < 0.28, share
    assert {Alias("all", "1", weights={"2": 1.0}).pick() for _ in range(50)} == {"2"}
    assert {Alias("none", "1", weights={"2": 0.0}).pick() for _ in range(50)} == {"1"}
    stored = Alias.from_stored("canary", alias.stored())
    assert (stored.function_version, stored.weights, stored.revision_id) == ("1", {"2": 0.25}, alias.revision_id)


def test_digest_sees_code_and_configuration_not_bookkeeping():
    config = {"FunctionName": "fn", "Timeout": 3, "Description": "", "RevisionId": "r1", "State": "Active",
              "LastModified": "t1", "FunctionArn": "arn", "Version": "$LATEST", "LastUpdateStatus": "Successful"}
    base = Function("fn", dict(config), {}, "code-a").digest()
    same = Function("fn", dict(config, RevisionId="r2", LastModified="t2", State="Pending",
                               LastUpdateStatus="InProgress"), {}, "code-a").digest()
    assert same == base
    assert Function("fn", dict(config), {}, "code-b").digest() != base
    assert Function("fn", dict(config, Timeout=4), {}, "code-a").digest() != base
    assert Function("fn", dict(config, Description="new"), {}, "code-a").digest() != base
