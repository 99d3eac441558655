"""Property test: the compiled event-pattern matcher (eventpattern/) agrees with a straightforward interpreter of
AWS's content-filter semantics written here, over generated patterns (every operator, nesting, arrays, $or) and
generated events."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from lamina.eventpattern import compile_pattern

MISSING = object()
KEYS = ["a", "b", "c"]
STRINGS = ["x", "xy", "yx", "XY", "10.0.0.7", "10.1.0.1", "img.png", ""]
NUMBERS = [0, 1, 2.5, -3, 100]

scalars = st.one_of(st.sampled_from(STRINGS), st.sampled_from(NUMBERS), st.booleans(), st.none())
leaf_values = st.one_of(scalars, st.lists(scalars, max_size=3))
events = st.recursive(st.dictionaries(st.sampled_from(KEYS), leaf_values, max_size=3),
                      lambda inner: st.dictionaries(st.sampled_from(KEYS), st.one_of(leaf_values, inner,
                                                                                      st.lists(inner, max_size=2)),
                                                    max_size=3), max_leaves=6)

text = st.sampled_from(["x", "y", "X", "png", "10."])
conditions = st.one_of(
    scalars,
    st.builds(lambda s: {"prefix": s}, text), st.builds(lambda s: {"suffix": s}, text),
    st.builds(lambda s: {"prefix": {"equals-ignore-case": s}}, text),
    st.builds(lambda s: {"equals-ignore-case": s}, text),
    st.builds(lambda v: {"anything-but": v}, st.one_of(st.sampled_from(STRINGS), st.sampled_from(NUMBERS),
                                                       st.lists(st.sampled_from(STRINGS), min_size=1, max_size=2))),
    st.builds(lambda s: {"anything-but": {"prefix": s}}, text),
    st.builds(lambda s: {"anything-but": {"suffix": s}}, text),
    st.builds(lambda s: {"anything-but": {"equals-ignore-case": s}}, text),
    st.builds(lambda lo, hi: {"numeric": [">=", lo, "<", hi]}, st.sampled_from([-5, 0, 1]), st.sampled_from([2, 50])),
    st.builds(lambda n: {"numeric": ["=", n]}, st.sampled_from(NUMBERS)),
    st.builds(lambda b: {"exists": b}, st.booleans()),
    st.builds(lambda c: {"cidr": c}, st.sampled_from(["10.0.0.0/24", "10.0.0.0/8"])),
    st.builds(lambda w: {"wildcard": w}, st.sampled_from(["*.png", "x*", "*y*", "10.*.7"])),
)
patterns = st.recursive(
    st.dictionaries(st.sampled_from(KEYS), st.lists(conditions, min_size=1, max_size=3), min_size=1, max_size=2),
    lambda inner: st.one_of(
        st.dictionaries(st.sampled_from(KEYS), st.one_of(st.lists(conditions, min_size=1, max_size=2), inner),
                        min_size=1, max_size=2),
        st.builds(lambda alts: {"$or": alts}, st.lists(inner, min_size=2, max_size=2))),
    max_leaves=5)


def is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def cond_ok(c: Any, v: Any) -> bool:
    if c is None or isinstance(c, bool):
        return v is c
    if is_num(c):
        return is_num(v) and float(v) == float(c)
    if isinstance(c, str):
        return v == c
    (op, arg), = c.items()
    if op in ("prefix", "suffix"):
        if isinstance(arg, dict):
            return isinstance(v, str) and affix(op, v.lower(), arg["equals-ignore-case"].lower())
        return isinstance(v, str) and affix(op, v, arg)
    if op == "equals-ignore-case":
        return isinstance(v, str) and v.lower() == arg.lower()
    if op == "anything-but":
        if isinstance(arg, dict):
            (inner, s), = arg.items()
            if inner == "equals-ignore-case":
                return not (isinstance(v, str) and v.lower() == s.lower())
            return not (isinstance(v, str) and affix(inner, v, s))
        values = arg if isinstance(arg, list) else [arg]
        return not any((isinstance(x, str) and v == x) or (is_num(x) and is_num(v) and float(v) == float(x))
                       for x in values)
    if op == "numeric":
        ops = {">=": float.__ge__, "<": float.__lt__, "=": float.__eq__}
        return is_num(v) and all(ops[arg[i]](float(v), float(arg[i + 1])) for i in range(0, len(arg), 2))
    if op == "cidr":
        try:
            return isinstance(v, str) and ipaddress.ip_address(v) in ipaddress.ip_network(arg)
        except ValueError:
            return False
    if op == "wildcard":
        return isinstance(v, str) and re.fullmatch(".*".join(map(re.escape, arg.split("*"))), v, re.S) is not None
    raise AssertionError(op)


def affix(op: str, v: str, s: str) -> bool:
    return v.startswith(s) if op == "prefix" else v.endswith(s)


def interpret(pattern: dict, event: Any) -> bool:
    for key, spec in pattern.items():
        if key == "$or":
            if not any(interpret(p, event) for p in spec):
                return False
            continue
        value = event.get(key, MISSING) if isinstance(event, dict) else MISSING
        if isinstance(spec, dict):
            if isinstance(value, dict):
                ok = interpret(spec, value)
            elif isinstance(value, list):
                ok = (any(interpret(spec, x) for x in value if isinstance(x, dict))
                      or (not value and interpret(spec, {})))
            else:
                ok = interpret(spec, {})
        else:
            exists = [c["exists"] for c in spec if isinstance(c, dict) and "exists" in c]
            others = [c for c in spec if not (isinstance(c, dict) and "exists" in c)]
            if value is MISSING:
                ok = False in exists
            elif True in exists:
                ok = True
            else:
                items = value if isinstance(value, list) else [value]
                ok = any(cond_ok(c, x) for c in others for x in items)
        if not ok:
            return False
    return True


@settings(max_examples=500, deadline=None)
@given(patterns, events)
def test_compiled_agrees_with_interpreter(pattern: dict, event: dict) -> None:
    assert compile_pattern(pattern).matches(event) == interpret(pattern, event)
