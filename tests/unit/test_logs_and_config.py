import asyncio

import pytest

from lamina.config import Settings
from lamina.store.logs import LogStore


def test_log_store_reads_and_filters(tmp_path):
    store = LogStore(tmp_path)
    log = store.for_function("f")
    log.append("s1", "first", 1000)
    log.append("s1", "second", 2000)
    assert [r["message"] for r in store.read("f")] == ["first", "second"]
    assert [r["message"] for r in store.read("f", start_ms=1500)] == ["second"]
    assert [r["message"] for r in store.read("f", limit=1)] == ["second"]
    store.delete("f")
    assert store.read("f") == []
    store.close()


def test_follow_sees_history_then_new_records(tmp_path):
    async def scenario():
        store = LogStore(tmp_path)
        store.for_function("g").append("s", "old")
        seen = []

        async def reader():
            async for record in store.follow("g"):
                seen.append(record["message"])

        task = asyncio.create_task(reader())
        await asyncio.sleep(0.01)
        store.for_function("g").append("s", "new")
        store.delete("g")  # ends followers
        await asyncio.wait_for(task, 1)
        return seen

    assert asyncio.run(scenario()) == ["old", "new"]


def test_settings_precedence(tmp_path, monkeypatch):
    cfg = tmp_path / "lamina.toml"
    cfg.write_text('[server]\nport = 9001\nregion = "eu-west-1"\n')
    monkeypatch.setenv("LAMINA_PORT", "9002")
    s = Settings.load(config_file=cfg)
    assert (s.port, s.region) == (9002, "eu-west-1")
    assert Settings.load(config_file=cfg, port=9003).port == 9003


def test_unknown_setting_is_an_error(tmp_path):
    cfg = tmp_path / "lamina.toml"
    cfg.write_text("prot = 1\n")
    with pytest.raises(ValueError, match="prot"):
        Settings.load(config_file=cfg)


def test_invocation_records_template_matches_append_lines(tmp_path):
    """The hot path writes an invocation's START/END/REPORT from a template: the same bytes append_lines writes,
    with a stream name that needs escaping (and a '%', which the template must not take for a placeholder)."""
    from types import SimpleNamespace

    from lamina.dispatch.environment import Environment

    env = Environment.__new__(Environment)
    env.stream, env._records = '2026/11/21/[$LATEST]a"b%d\\', None
    env.spec = SimpleNamespace(version="7", memory_mb=1769)
    rid = "30cd3863-9b1f-41aa-8b1f-0123456789ab"
    got = env._records_template() % (1, rid.encode(), 2, rid.encode(), 2, rid.encode(), 12.345, 13, 42)

    store = LogStore(tmp_path)
    log = store.for_function("f")
    log.append_lines(env.stream, ((1, f"START RequestId: {rid} Version: 7"), (2, f"END RequestId: {rid}"),
                                  (2, f"REPORT RequestId: {rid}\tDuration: 12.35 ms\tBilled Duration: 13 ms\t"
                                      "Memory Size: 1769 MB\tMax Memory Used: 42 MB")))
    log.flush()
    assert got == (tmp_path / "f.ndjson").read_bytes()
    store.close()
