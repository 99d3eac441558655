"""The EventBridge event-pattern matcher (eventpattern/): each operator, arrays, missing fields, $or, bad patterns."""

from __future__ import annotations

import pytest

from lamina.eventpattern import PatternError, compile_pattern

EVENT = {
    "source": "shop", "detail": {"state": "PAID", "amount": 12.5, "count": 3, "tags": ["a", "b"],
                                 "ip": "10.0.0.7", "file": "cat.png", "note": None, "ok": True,
                                 "items": [{"sku": "x1"}, {"sku": "y2"}]},
}


@pytest.mark.parametrize(("pattern", "expected"), [
    ({"source": ["shop"]}, True),
    ({"source": ["shop2", "other"]}, False),
    ({"detail": {"count": [3]}}, True),
    ({"detail": {"count": [3.0]}}, True),
    ({"detail": {"count": ["3"]}}, False),
    ({"detail": {"ok": [True]}}, True),
    ({"detail": {"note": [None]}}, True),
    ({"detail": {"tags": ["b"]}}, True),
    ({"detail": {"tags": ["c"]}}, False),
    ({"detail": {"state": [{"prefix": "PA"}]}}, True),
    ({"detail": {"state": [{"prefix": {"equals-ignore-case": "pa"}}]}}, True),
    ({"detail": {"state": [{"suffix": "ID"}]}}, True),
    ({"detail": {"state": [{"suffix": "XX"}]}}, False),
    ({"detail": {"state": [{"equals-ignore-case": "paid"}]}}, True),
    ({"detail": {"state": [{"anything-but": "PAID"}]}}, False),
    ({"detail": {"state": [{"anything-but": ["NEW", "SHIPPED"]}]}}, True),
    ({"detail": {"state": [{"anything-but": {"prefix": "PA"}}]}}, False),
    ({"detail": {"state": [{"anything-but": {"suffix": "X"}}]}}, True),
    ({"detail": {"state": [{"anything-but": {"equals-ignore-case": ["paid"]}}]}}, False),
    ({"detail": {"count": [{"anything-but": [1, 2]}]}}, True),
    ({"detail": {"amount": [{"numeric": [">", 10, "<=", 20]}]}}, True),
    ({"detail": {"amount": [{"numeric": ["<", 10]}]}}, False),
    ({"detail": {"amount": [{"numeric": ["=", 12.5]}]}}, True),
    ({"detail": {"state": [{"numeric": [">", 0]}]}}, False),
    ({"detail": {"ip": [{"cidr": "10.0.0.0/24"}]}}, True),
    ({"detail": {"ip": [{"cidr": "10.1.0.0/24"}]}}, False),
    ({"detail": {"file": [{"wildcard": "*.png"}]}}, True),
    ({"detail": {"file": [{"wildcard": "dog*"}]}}, False),
    ({"detail": {"missing": [{"exists": False}]}}, True),
    ({"detail": {"missing": [{"exists": True}]}}, False),
    ({"detail": {"state": [{"exists": True}]}}, True),
    ({"detail": {"missing": ["x"]}}, False),
    ({"detail": {"missing": [{"anything-but": "x"}]}}, False),
    ({"detail": {"items": {"sku": ["y2"]}}}, True),
    ({"detail": {"items": {"sku": ["z9"]}}}, False),
    ({"nothere": {"deeper": [{"exists": False}]}}, True),
    ({"source": ["shop"], "detail": {"state": ["NEW"]}}, False),
    ({"$or": [{"source": ["x"]}, {"detail": {"count": [3]}}]}, True),
    ({"$or": [{"source": ["x"]}, {"detail": {"count": [4]}}]}, False),
    ({"detail": {"$or": [{"state": ["NEW"]}, {"amount": [{"numeric": [">", 12]}]}]}}, True),
])
def test_matches(pattern, expected):
    assert compile_pattern(pattern).matches(EVENT) is expected


def test_a_string_pattern_is_json():
    assert compile_pattern('{"source": ["shop"]}').matches(EVENT)


@pytest.mark.parametrize("pattern", [
    "not json", "[1]", {}, {"source": "shop"}, {"source": []}, {"source": [[1]]},
    {"source": [{"prefix": 1}]}, {"source": [{"unknown-op": "x"}]}, {"source": [{"numeric": [">"]}]},
    {"source": [{"numeric": ["<", 5, ">", 1]}]}, {"source": [{"exists": "yes"}]}, {"source": [{"cidr": "nope"}]},
    {"$or": [{"source": ["x"]}]}, {"source": [{"prefix": "a", "suffix": "b"}]}, {"source": [{"wildcard": "a**"}]},
])
def test_invalid_patterns_are_refused(pattern):
    with pytest.raises(PatternError):
        compile_pattern(pattern)
