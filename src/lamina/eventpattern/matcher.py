"""The EventBridge event-pattern language (as Lambda's event filtering and EventBridge rules use it), compiled into
closures: a pattern is checked once when it is set and then matched against each event without re-reading it.

A pattern is a JSON object whose keys name fields of the event. A key's value is either a nested pattern (for a
nested object) or a non-empty array of conditions, any of which may match:
- a literal: a string, a number (compared as a number: 5 matches 5.0), true, false or null;
- {"prefix": "x"} / {"suffix": "x"}, either also as {"prefix": {"equals-ignore-case": "x"}};
- {"equals-ignore-case": "x"};
- {"anything-but": literal | [literals] | {"prefix": "x"} | {"suffix": "x"} | {"equals-ignore-case": "x" | [...]} |
  {"wildcard": "x*" | [...]}};
- {"numeric": [">", 0, "<=", 5]} (one or two comparisons, "=" alone);
- {"exists": true | false};
- {"cidr": "10.0.0.0/24"};
- {"wildcard": "*.png"} ("*" matches any run of characters).
"$or": [pattern, ...] at any level matches when any of the patterns does. Every key of a pattern must match.
When the event's field is an array, a condition matches if it matches any element. A missing field matches only
{"exists": false}; anything-but never matches a missing field.

Invalid patterns raise PatternError when compiled.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from typing import Any

import orjson

Check = Callable[[Any], bool]
_MISSING = object()
_NUMERIC_OPS = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, "=": lambda a, b: a == b,
                ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


class PatternError(ValueError):
    """The pattern is not valid event-pattern syntax (says where)."""


class Pattern:
    """A compiled pattern: matches(event) for a decoded JSON event (a dict). `matches` is the generated function
    itself (no method call in between)."""

    __slots__ = ("source", "matches")

    def __init__(self, source: dict, check: Check) -> None:
        self.source = source
        self.matches: Check = check


def compile_pattern(pattern: str | bytes | dict) -> Pattern:
    if isinstance(pattern, str | bytes):
        try:
            pattern = orjson.loads(pattern)
        except orjson.JSONDecodeError as exc:
            raise PatternError(f"the pattern is not JSON: {exc}") from None
    if not isinstance(pattern, dict):
        raise PatternError("a pattern must be a JSON object")
    _object(pattern, "$")   # checks the whole pattern, raising PatternError where it is not valid
    return Pattern(pattern, _Generator().function(pattern))


class _Generator:
    """Writes a pattern as the source of one Python function: each field read once with dict.get, string values
    (the common case) tested inline (set membership, startswith, ...), everything else through the closures
    above, which also define the semantics; the source is compiled once with exec."""

    def __init__(self) -> None:
        self.names: dict[str, object] = {"_M": _MISSING, "dict": dict, "str": str}
        self.lines: list[str] = ["def match(e0):", "    if type(e0) is not dict:",
                                 "        e0 = e0 if isinstance(e0, dict) else {}"]
        self.count = 0

    def name(self, value: object, prefix: str) -> str:
        self.count += 1
        key = f"_{prefix}{self.count}"
        self.names[key] = value
        return key

    def function(self, pattern: dict) -> Check:
        self.object(pattern, "e0", 1)
        self.lines.append("    return True")
        exec("\n".join(self.lines), self.names)   # noqa: S102 - our own generated source, no user text in code
        return self.names["match"]  # type: ignore[return-value]

    def emit(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)

    def object(self, pattern: dict, var: str, depth: int) -> None:
        """Lines that return False unless `var` (a dict) matches `pattern`."""
        for key, spec in pattern.items():
            if key == "$or":
                alternatives = [self.name(_object(p, "$"), "or") for p in spec]
                self.emit(depth, f"if not ({' or '.join(f'{a}({var})' for a in alternatives)}): return False")
                continue
            self.count += 1
            value = f"v{self.count}"
            self.emit(depth, f"{value} = {var}.get({key!r}, _M)")
            if isinstance(spec, dict):
                inner = self.name(_nested_value(_object(spec, "$")), "nested")
                self.emit(depth, f"if type({value}) is dict:")
                self.object(spec, value, depth + 1)
                self.emit(depth, f"elif not {inner}({value}): return False")
            else:
                general = self.name(_leaf_value(spec, "$"), "leaf")
                self.emit(depth, f"if type({value}) is str:")
                self.emit(depth + 1, f"if not ({self.string_test(spec, value)}): return False")
                number = self.number_test(spec, value)
                if number is not None:
                    self.emit(depth, f"elif type({value}) is int or type({value}) is float:")
                    self.emit(depth + 1, f"x = float({value})")
                    self.emit(depth + 1, f"if not ({number}): return False")
                self.emit(depth, f"elif not {general}({value}): return False")

    def string_test(self, conditions: list, v: str) -> str:
        """An expression: whether the string `v` satisfies any of `conditions` (as _leaf_value would say)."""
        exists, others = _split_exists(conditions, "$")
        if True in exists:
            return "True"
        parts: list[str] = []
        literals = {c for c in others if isinstance(c, str)}
        if literals:
            parts.append(f"{v} == {next(iter(literals))!r}" if len(literals) == 1
                         else f"{v} in {self.name(frozenset(literals), 'set')}")
        for c in others:
            if isinstance(c, str) or c is None or isinstance(c, bool | int | float):
                continue   # strings done above; other literals never equal a string
            (op, arg), = c.items()
            if op in ("prefix", "suffix") and isinstance(arg, str):
                parts.append(f"{v}.{'startswith' if op == 'prefix' else 'endswith'}({arg!r})")
            elif op == "equals-ignore-case":
                parts.append(f"{v}.casefold() == {arg.casefold()!r}")
            elif op == "numeric":
                continue   # never a string
            else:
                parts.append(f"{self.name(_condition(c, '$'), 'cond')}({v})")
        return " or ".join(parts) or "False"


    def number_test(self, conditions: list, v: str) -> str | None:
        """An expression of `x` (float(v), v an int or a float): whether the number satisfies any of `conditions`
        (as _leaf_value would say); None when no condition names a number (the general check is as fast)."""
        exists, others = _split_exists(conditions, "$")
        if True in exists:
            return "True"
        if not any(_is_number(c) or (isinstance(c, dict) and "numeric" in c) for c in others):
            return None
        parts: list[str] = []
        for c in others:
            if isinstance(c, str) or c is None or isinstance(c, bool):
                continue   # never equal a number
            if _is_number(c) and math.isfinite(c):
                parts.append(f"x == {float(c)!r}")
                continue
            if isinstance(c, dict) and "numeric" in c and all(_is_number(b) and math.isfinite(b)
                                                                for b in c["numeric"][1::2]):
                ops = c["numeric"]
                parts.append("(" + " and ".join(f"x {ops[i]} {float(ops[i + 1])!r}".replace(" = ", " == ")
                                                for i in range(0, len(ops), 2)) + ")")
                continue
            parts.append(f"{self.name(_condition(c, '$'), 'cond')}({v})")
        return " or ".join(parts) or "False"


def _nested_value(inner: Check) -> Check:
    """A nested pattern's check of a field's value that is not an object (as _nested does)."""
    def check(value: object) -> bool:
        if isinstance(value, dict):
            return inner(value)
        if isinstance(value, list):
            return any(inner(v) for v in value if isinstance(v, dict)) or (not value and inner({}))
        return inner({})
    return check


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _object(pattern: dict, where: str) -> Check:
    checks: list[Check] = []
    for key, value in pattern.items():
        here = f"{where}.{key}"
        if key == "$or":
            if not isinstance(value, list) or len(value) < 2 or not all(isinstance(p, dict) for p in value):
                raise PatternError(f"{here}: $or takes an array of at least two patterns")
            checks.append(_any_of([_object(p, here) for p in value]))
        elif isinstance(value, dict):
            checks.append(_nested(key, _object(value, here)))
        elif isinstance(value, list):
            checks.append(_leaf(key, value, here))
        else:
            raise PatternError(f"{here}: a pattern value must be an array of conditions or a nested pattern")
    if not checks:
        raise PatternError(f"{where}: an empty pattern")

    def all_match(event: object) -> bool:
        return all(check(event) for check in checks)
    return all_match


def _any_of(alternatives: list[Check]) -> Check:
    return lambda event: any(a(event) for a in alternatives)


def _nested(key: str, inner: Check) -> Check:
    def check(event: object) -> bool:
        value = event.get(key, _MISSING) if isinstance(event, dict) else _MISSING
        if isinstance(value, dict):
            return inner(value)
        if isinstance(value, list):
            return any(inner(v) for v in value if isinstance(v, dict)) or (not value and inner({}))
        return inner({})   # missing (or not an object): only exists:false leaves can match
    return check


def _leaf(key: str, conditions: list, where: str) -> Check:
    on_value = _leaf_value(conditions, where)

    def check(event: object) -> bool:
        return on_value(event.get(key, _MISSING) if isinstance(event, dict) else _MISSING)
    return check


def _split_exists(conditions: list, where: str) -> tuple[list[bool], list]:
    if not conditions:
        raise PatternError(f"{where}: an empty array of conditions")
    exists: list[bool] = []
    others: list = []
    for condition in conditions:
        if isinstance(condition, dict) and len(condition) == 1 and "exists" in condition:
            if not isinstance(condition["exists"], bool):
                raise PatternError(f"{where}: exists takes true or false")
            exists.append(condition["exists"])
        else:
            others.append(condition)
    return exists, others


def _leaf_value(conditions: list, where: str) -> Check:
    """A field's conditions as a check of the field's value (_MISSING when the event has no such field)."""
    exists, others = _split_exists(conditions, where)
    checks = [_condition(c, where) for c in others]

    def check(value: object) -> bool:
        if value is _MISSING:
            return False in exists
        if True in exists:
            return True
        if isinstance(value, list):
            return any(c(v) for v in value for c in checks)
        return any(c(value) for c in checks)
    return check


def _condition(condition: object, where: str) -> Check:
    if condition is None:
        return lambda v: v is None
    if isinstance(condition, bool):
        return lambda v: v is condition
    if _is_number(condition):
        number = float(condition)  # type: ignore[arg-type]
        return lambda v: _is_number(v) and float(v) == number
    if isinstance(condition, str):
        return lambda v: v == condition
    if not isinstance(condition, dict) or len(condition) != 1:
        raise PatternError(f"{where}: a condition is a literal or an object with one operator")
    (op, arg), = condition.items()
    if op in ("prefix", "suffix"):
        return _affix(op, arg, where, negate=False)
    if op == "equals-ignore-case":
        if not isinstance(arg, str):
            raise PatternError(f"{where}: equals-ignore-case takes a string")
        low = arg.casefold()
        return lambda v: isinstance(v, str) and v.casefold() == low
    if op == "anything-but":
        return _anything_but(arg, where)
    if op == "numeric":
        return _numeric(arg, where)
    if op == "cidr":
        if not isinstance(arg, str):
            raise PatternError(f"{where}: cidr takes a string")
        try:
            network = ipaddress.ip_network(arg, strict=False)
        except ValueError:
            raise PatternError(f"{where}: {arg!r} is not a CIDR block") from None
        return lambda v: isinstance(v, str) and _in_network(v, network)
    if op == "wildcard":
        regex = _wildcard(arg, where)
        return lambda v: isinstance(v, str) and regex.fullmatch(v) is not None
    raise PatternError(f"{where}: unknown operator {op!r}")


def _affix(op: str, arg: object, where: str, negate: bool) -> Check:
    ignore_case = False
    if isinstance(arg, dict) and len(arg) == 1 and "equals-ignore-case" in arg:
        arg = arg["equals-ignore-case"]
        ignore_case = True
    if not isinstance(arg, str):
        raise PatternError(f"{where}: {op} takes a string")
    text = arg.casefold() if ignore_case else arg

    def check(v: object) -> bool:
        if not isinstance(v, str):
            return negate
        s = v.casefold() if ignore_case else v
        hit = s.startswith(text) if op == "prefix" else s.endswith(text)
        return hit != negate
    return check


def _anything_but(arg: object, where: str) -> Check:
    if isinstance(arg, dict):
        if len(arg) != 1:
            raise PatternError(f"{where}: anything-but takes one operator")
        (op, inner), = arg.items()
        if op in ("prefix", "suffix"):
            return _affix(op, inner, where, negate=True)
        if op == "equals-ignore-case":
            values = inner if isinstance(inner, list) else [inner]
            if not values or not all(isinstance(x, str) for x in values):
                raise PatternError(f"{where}: anything-but equals-ignore-case takes strings")
            lows = {x.casefold() for x in values}
            return lambda v: not (isinstance(v, str) and v.casefold() in lows)
        if op == "wildcard":
            regexes = [_wildcard(x, where) for x in (inner if isinstance(inner, list) else [inner])]
            return lambda v: not (isinstance(v, str) and any(r.fullmatch(v) for r in regexes))
        raise PatternError(f"{where}: anything-but does not take {op!r}")
    values = arg if isinstance(arg, list) else [arg]
    if not values or not all(isinstance(x, str) or _is_number(x) for x in values):
        raise PatternError(f"{where}: anything-but takes strings or numbers")
    strings = {x for x in values if isinstance(x, str)}
    numbers = {float(x) for x in values if _is_number(x)}
    return lambda v: not ((isinstance(v, str) and v in strings) or (_is_number(v) and float(v) in numbers))


def _numeric(arg: object, where: str) -> Check:
    if not isinstance(arg, list) or len(arg) not in (2, 4):
        raise PatternError(f"{where}: numeric takes one or two comparisons")
    tests = []
    for i in range(0, len(arg), 2):
        op, bound = arg[i], arg[i + 1]
        if op not in _NUMERIC_OPS or not _is_number(bound) or (op == "=" and len(arg) == 4):
            raise PatternError(f"{where}: bad numeric comparison {op!r} {bound!r}")
        tests.append((_NUMERIC_OPS[op], float(bound)))
    if len(tests) == 2 and not (arg[0] in (">", ">=") and arg[2] in ("<", "<=")):
        raise PatternError(f"{where}: a numeric range is a lower bound then an upper bound")
    return lambda v: _is_number(v) and all(test(float(v), bound) for test, bound in tests)


def _wildcard(arg: object, where: str) -> re.Pattern[str]:
    if not isinstance(arg, str):
        raise PatternError(f"{where}: wildcard takes a string")
    if "**" in arg:
        raise PatternError(f"{where}: consecutive wildcard characters are not allowed")
    return re.compile(".*".join(re.escape(part) for part in arg.split("*")), re.DOTALL)


def _in_network(value: str, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    try:
        return ipaddress.ip_address(value) in network
    except ValueError:
        return False
