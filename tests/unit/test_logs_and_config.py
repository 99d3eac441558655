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
