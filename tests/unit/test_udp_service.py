"""The listener registry on a real SQLite store: create, persist, restore on the same port (or Failed with
the reason when the port is taken), find by id or name, remove (gateway/udp/service.py, store/udp.py)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import uvloop
from test_udp_batching import FakeFunctions

from lamina.config import Settings
from lamina.functions.errors import AwsError
from lamina.gateway.udp.service import UdpGateway
from lamina.store.db import Database

BODY = {"Name": "keep", "Destinations": [{"Function": "f", "Batching": {"Count": 5}}]}


def test_persist_restore_find_and_remove(tmp_path: Path):
    async def scenario():
        db = Database(tmp_path / "lamina.db")
        first = UdpGateway(Settings(host="127.0.0.1"), db, FakeFunctions())
        created = await first.create(dict(BODY))
        assert created["State"] == "Listening" and created["Port"] > 0
        with pytest.raises(AwsError) as info:
            await first.create(dict(BODY))
        assert info.value.code == "ResourceConflictException" and "keep" in info.value.message
        with pytest.raises(AwsError) as info:
            await first.create({"Destinations": [{"Function": "f", "Formatter": "rot13"}]})
        assert info.value.status == 400 and "Destinations[0].Formatter" in info.value.message
        await first.close()

        # A restarted server binds the same port again.
        second = UdpGateway(Settings(host="127.0.0.1"), db, FakeFunctions())
        await second.load()
        doc = second.find("keep").doc()
        assert (doc["Id"], doc["Port"], doc["State"]) == (created["Id"], created["Port"], "Listening")
        assert second.find(created["Id"]) is second.find("keep")
        await second.close()

        # The port is taken by someone else meanwhile: the listener is kept, Failed, with the reason.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as squatter:
            squatter.bind(("127.0.0.1", created["Port"]))
            third = UdpGateway(Settings(host="127.0.0.1"), db, FakeFunctions())
            await third.load()
            doc = third.find("keep").doc()
            assert doc["State"] == "Failed" and "already in use" in doc["StateReason"]
            await third.delete("keep")
        with pytest.raises(AwsError) as info:
            third.find("keep")
        assert info.value.status == 404
        assert UdpGateway(Settings(host="127.0.0.1"), db, FakeFunctions()).repo.all() == []
        db.close()
    uvloop.run(scenario())
