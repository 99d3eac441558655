"""CloudWatch Logs filter patterns (functions/filter_pattern.py) and retention's rewrite of a log (store/logs.py)."""

from __future__ import annotations

import json

import pytest

from lamina.functions.errors import AwsError
from lamina.functions.filter_pattern import compile_pattern
from lamina.store.logs import LogStore

DOC = json.dumps({"level": "ERROR", "latency": 120, "user": {"id": "u-1"}, "tags": ["a", "b?"], "ok": False,
                  "n": None, "code": "E[1]"})


@pytest.mark.parametrize(("pattern", "message", "hit"), [
    ("", "anything", True),
    ("ERROR", "an ERROR here", True),
    ("ERROR", "an error here", False),            # case-sensitive
    ("ERROR timeout", "ERROR at timeout", True),
    ("ERROR timeout", "ERROR only", False),
    ('"Task timed out"', "Task timed out after 3.00 seconds", True),
    ('"Task timed out"', "Task  timed out", False),
    ("?WARN ?ERROR", "WARN x", True),
    ("?WARN ?ERROR", "INFO x", False),
    ("ERROR -Exiting", "ERROR Exiting now", False),
    ("ERROR -Exiting", "ERROR going on", True),
    ('{ $.level = "ERROR" }', DOC, True),
    ('{ $.level = "ERR*" }', DOC, True),
    ('{ $.level = ERROR }', DOC, True),
    ('{ $.level != "ERROR" }', DOC, False),
    ('{ $.latency > 100 }', DOC, True),
    ('{ $.latency >= 121 }', DOC, False),
    ('{ $.latency = 120 }', DOC, True),
    ('{ $.user.id = "u-1" && $.latency < 200 }', DOC, True),
    ('{ $.user.id = "x" || $.latency < 200 }', DOC, True),
    ('{ ($.user.id = "x" || $.latency > 200) && $.ok IS FALSE }', DOC, False),
    ('{ $.tags[1] = "b?" }', DOC, True),            # ? is not a wildcard
    ('{ $.code = "E[1]" }', DOC, True),             # nor are brackets
    ('{ $.n IS NULL }', DOC, True),
    ('{ $.missing IS NULL }', DOC, False),
    ('{ $.missing NOT EXISTS }', DOC, True),
    ('{ $.level EXISTS }', DOC, True),
    ('{ $.level = "ERROR" }', "not json at all", False),
    ('{ $.latency > 100 }', '{"latency": "slow"}', False),
])
def test_patterns(pattern, message, hit):
    assert compile_pattern(pattern)(message) is hit


@pytest.mark.parametrize("pattern", ["[ip, user]", "%ERR%", "{ $.level = ", "{ level = 1 }", '{ $.a > "x" }',
                                     '"unclosed', "{ $.a.* = 1 }", "{ ($.a = 1 }"])
def test_refused(pattern):
    with pytest.raises(AwsError) as exc:
        compile_pattern(pattern)
    assert exc.value.code == "InvalidParameterException" and exc.value.status == 400


def test_expire_rewrites_and_keeps_writing(tmp_path):
    store = LogStore(tmp_path)
    log = store.for_function("f")
    log.append_lines("s", ((1000, "old"), (5000, "new")))
    assert store.expire("f", 2000) == 1
    log.append("s", "later", 6000)
    assert [r["message"] for r in store.read("f")] == ["new", "later"]
    assert store.expire("f", 10_000) == 2 and store.read("f") == [] and not store.exists("f")
    store.set_retention("f", 7)
    assert LogStore(tmp_path).retention == {"f": 7}
    store.clear("f")
    assert LogStore(tmp_path).retention == {}
    store.close()
