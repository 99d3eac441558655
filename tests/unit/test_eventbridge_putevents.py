"""PutEvents through the EventBridge API's own ASGI app (api/events_api.py) against an EventBusService whose targets
are recorded: the lean request path (body, answer, headers), the PutEvents type check's shortcut agreeing with the
model-driven check, the rule index by `source`, entry errors, and the event ids' format."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lamina.api import model_types
from lamina.api.events_api import EventsApi, _put_events_typed
from lamina.eventbridge.bus import EventBusService
from lamina.eventbridge.ids import new_id
from lamina.eventbridge.targets import Deliverer, SendError
from lamina.eventbridge.timers import Clock, TimerHeap
from lamina.store.db import Database
from lamina.store.eventbridge import EventBridgeRepo

FN = "arn:aws:lambda:us-east-1:000000000000:function:"


class Recorder:
    """A Sender that takes every payload at once and remembers it by target ARN."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict]] = []

    def exists(self, arn: str) -> bool:
        return True

    def stage(self, arn: str, payloads: list[bytes]) -> object | None:
        return None

    async def send_many(self, arn: str, payloads: list[bytes], pending: list[int] | None = None,
                        staged: object | None = None) -> list[SendError | None]:
        self.sent += [(arn, orjson.loads(p)) for p in payloads]
        return [None] * len(payloads)

    async def send(self, arn: str, payload: bytes, also: object = None) -> None:
        self.sent.append((arn, orjson.loads(payload)))

    def settle(self, also: object) -> None:
        pass


@pytest.fixture
def bus(tmp_path: Path):
    async def make() -> tuple[EventBusService, Recorder]:
        clock = Clock()
        recorder = Recorder()
        service = EventBusService(EventBridgeRepo(Database(tmp_path / "db")), TimerHeap(clock, lead=1.0),
                                  Deliverer(recorder, clock), "us-east-1", "000000000000")
        service.load()
        return service, recorder
    return make


async def call(app: EventsApi, operation: str, body: bytes, chunks: int = 1) -> tuple[int, dict, dict]:
    """The answer's status, headers and JSON; the body arrives in `chunks` messages."""
    size = -(-len(body) // chunks) if body else 1
    parts = [body[i:i + size] for i in range(0, len(body), size)] or [b""]
    messages = [{"type": "http.request", "body": p, "more_body": k < len(parts) - 1} for k, p in enumerate(parts)]
    sent: list[dict] = []

    async def receive() -> dict:
        return messages.pop(0)

    async def send(message: dict) -> None:
        sent.append(message)
    scope = {"type": "http", "method": "POST", "path": "/", "query_string": b"",
             "headers": [(b"host", b"x"), (b"x-amz-target", f"AWSEvents.{operation}".encode())]}
    await app(scope, receive, send)
    start, done = sent
    assert start["type"] == "http.response.start" and done["type"] == "http.response.body"
    headers = dict(start["headers"])
    assert headers[b"content-type"] == b"application/x-amz-json-1.1"
    assert int(headers[b"content-length"]) == len(done["body"])
    uuid.UUID(headers[b"x-amzn-requestid"].decode())
    return start["status"], headers, orjson.loads(done["body"])


def entry(source: str, n: int = 1, **more: object) -> dict:
    return {"EventBusName": "b", "Source": source, "DetailType": "t", "Detail": orjson.dumps({"n": n}).decode(),
            **more}


def test_put_events_routes_by_source_and_to_rules_without_one(bus) -> None:
    async def run() -> None:
        service, recorder = await bus()
        app = EventsApi(service)
        service.create_event_bus({"Name": "b"})
        rules = {"a": {"source": ["s.a"], "detail": {"n": [{"numeric": [">=", 2]}]}},
                 "ab": {"source": ["s.a", "s.b"]},
                 "any": {"detail": {"n": [1]}},                    # no source: a candidate for every event
                 "pre": {"source": [{"prefix": "s."}], "detail-type": ["t"]}}
        for name, pattern in rules.items():
            service.put_rule({"Name": name, "EventBusName": "b", "EventPattern": orjson.dumps(pattern).decode()})
            service.put_targets({"Rule": name, "EventBusName": "b", "Targets": [{"Id": "t", "Arn": FN + name}]})
        body = orjson.dumps({"Entries": [entry("s.a", 1), entry("s.a", 2, Resources=["r"]), entry("s.b", 1),
                                         entry("x", 1), entry("x", 3)]})
        status, _, answer = await call(app, "PutEvents", body, chunks=3)
        assert status == 200 and answer["FailedEntryCount"] == 0
        ids = [e["EventId"] for e in answer["Entries"]]
        got: dict[str, list[str]] = {}
        for arn, event in recorder.sent:
            got.setdefault(event["id"], []).append(arn.rpartition(":")[2])
        assert {k: sorted(v) for k, v in got.items()} == {
            ids[0]: ["ab", "any", "pre"], ids[1]: ["a", "ab", "pre"], ids[2]: ["ab", "any", "pre"], ids[3]: ["any"]}
        event = next(e for _, e in recorder.sent if e["id"] == ids[1])
        assert event["resources"] == ["r"] and event["detail"] == {"n": 2} and event["source"] == "s.a"

        # a rule disabled, then one deleted: the index follows
        service.disable_rule({"Name": "pre", "EventBusName": "b"})
        service.remove_targets({"Rule": "any", "EventBusName": "b", "Ids": ["t"]})
        service.delete_rule({"Name": "any", "EventBusName": "b"})
        recorder.sent.clear()
        _, _, answer = await call(app, "PutEvents", orjson.dumps({"Entries": [entry("s.a", 1), entry("x", 1)]}))
        assert sorted(arn.rpartition(":")[2] for arn, _ in recorder.sent) == ["ab"]
    asyncio.run(run())


def test_put_events_entry_errors_and_type_errors(bus) -> None:
    async def run() -> None:
        service, _ = await bus()
        app = EventsApi(service)
        body = orjson.dumps({"Entries": [
            {"Source": "s", "DetailType": "t", "Detail": "{}"},
            {"Source": "s", "DetailType": "t", "Detail": "[1]"},
            {"Source": "s", "DetailType": "t", "Detail": "{}", "EventBusName": "nope"},
            {"Source": "s", "DetailType": "t", "Detail": "{}",
             "EventBusName": "arn:aws:events:us-east-1:000000000000:event-bus/default"},
            {"Source": "s", "DetailType": "t", "Detail": orjson.dumps({"x": "y" * 263_000}).decode()},
            {"Source": "s", "DetailType": "t", "Detail": orjson.dumps({"x": "é" * 131_100}).decode()},
            {"DetailType": "t", "Detail": "{}"}]})
        status, _, answer = await call(app, "PutEvents", body)
        assert status == 200 and answer["FailedEntryCount"] == 5
        codes = [e.get("ErrorCode") for e in answer["Entries"]]
        assert codes == [None, "MalformedDetail", "InvalidArgument", None, "InvalidArgument", "InvalidArgument",
                         "InvalidArgument"]
        status, _, answer = await call(app, "PutEvents", orjson.dumps({"Entries": [{"Source": 5}]}))
        assert status == 400 and answer["__type"] == "SerializationException"
        status, _, answer = await call(app, "PutEvents", b"[1]")
        assert status == 400 and answer["__type"] == "SerializationException"
        status, _, answer = await call(app, "Nope", b"{}")
        assert status == 400 and answer["__type"] == "UnknownOperationException"
        status, _, answer = await call(app, "ListEventBuses", b"")
        assert status == 200 and [b["Name"] for b in answer["EventBuses"]] == ["default"]
    asyncio.run(run())


_MEMBER = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=3),
                    st.lists(st.one_of(st.none(), st.text(max_size=2), st.integers()), max_size=2),
                    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1))
_ENTRY = st.dictionaries(st.sampled_from(["Time", "Source", "Resources", "DetailType", "Detail", "EventBusName",
                                          "TraceHeader", "Other"]), _MEMBER, max_size=4)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(["Entries", "EndpointId"]),
                       st.one_of(_MEMBER, st.lists(st.one_of(_ENTRY, _MEMBER), max_size=3)), max_size=2))
def test_the_put_events_type_shortcut_never_passes_what_the_model_check_refuses(body: dict) -> None:
    if _put_events_typed(body):
        assert model_types.type_problem("events", "PutEvents", body) is None


def test_event_ids_are_version_4_uuids() -> None:
    ids = [new_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        u = uuid.UUID(text)
        assert str(u) == text and u.version == 4 and u.variant == uuid.RFC_4122
    assert {t[19] for t in ids} == set("89ab")
