"""CloudWatch Logs filter patterns (FilterLogEvents' filterPattern, StartLiveTail's logEventFilterPattern): the subset
Lamina matches, compiled once per request.

- terms: `ERROR Exception` (every term, case-sensitive), quoted phrases `"Task timed out"`, `?ERROR ?WARN` (any of
  the `?` terms), `-Exiting` (none of the `-` terms);
- JSON: `{ $.level = "ERROR" }` on messages that are JSON objects: selectors `$.a.b`, `$.a[0]`; `=` `!=` on strings
  (`*` is a wildcard) and numbers, `<` `>` `<=` `>=` on numbers; `IS NULL`, `IS TRUE`, `IS FALSE`, `EXISTS`,
  `NOT EXISTS`; `&&`, `||` and parentheses.
Other forms (space-delimited `[a, b]`, `%regex%`) are refused with InvalidParameterException, never ignored.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from lamina.functions.errors import AwsError

Matcher = Callable[[str], bool]

_MISSING = object()


def invalid(message: str) -> AwsError:
    return AwsError("InvalidParameterException", message, 400, __type="InvalidParameterException")


def compile_pattern(text: str | None) -> Matcher:
    """A function telling whether a log message matches the pattern (an empty one matches everything)."""
    pattern = (text or "").strip()
    if not pattern:
        return lambda message: True
    if pattern.startswith("{"):
        if not pattern.endswith("}"):
            raise invalid("Invalid filter pattern: a JSON filter pattern ends with '}'.")
        return _json_matcher(_JsonParser(pattern[1:-1]).parse())
    if pattern.startswith("["):
        raise invalid("Space-delimited filter patterns ([a, b, ...]) are not supported by Lamina; use terms, "
                      "quoted phrases, ?terms or a JSON pattern.")
    return _term_matcher(pattern)


# ----------------------------------------------------------------------------------------------- terms

_TERM = re.compile(r'([?-]?)(?:"((?:[^"\\]|\\.)*)"|(\S+))')


def _term_matcher(pattern: str) -> Matcher:
    required: list[str] = []
    optional: list[str] = []
    excluded: list[str] = []
    pos = 0
    while pos < len(pattern):
        if pattern[pos].isspace():
            pos += 1
            continue
        m = _TERM.match(pattern, pos)
        if m is None:
            raise invalid(f"Invalid filter pattern at {pattern[pos:]!r}: a quoted phrase is not closed.")
        prefix, quoted, bare = m.groups()
        if quoted is None and bare.startswith('"'):
            raise invalid(f"Invalid filter pattern at {pattern[pos:]!r}: a quoted phrase is not closed.")
        term = quoted.replace('\\"', '"') if quoted is not None else bare
        if quoted is None and len(term) > 1 and term.startswith("%") and term.endswith("%"):
            raise invalid("Regular-expression filter patterns (%...%) are not supported by Lamina.")
        if term:
            {"?": optional, "-": excluded, "": required}[prefix].append(term)
        pos = m.end()

    def match(message: str) -> bool:
        if any(t not in message for t in required) or any(t in message for t in excluded):
            return False
        return not optional or any(t in message for t in optional)

    return match


# ----------------------------------------------------------------------------------------------- JSON

_TOKEN = re.compile(r"""\s*(?:
    (?P<op>&&|\|\||!=|<=|>=|=|<|>|\(|\))
  | (?P<sel>\$(?:\.[A-Za-z_@][\w@-]*|\[\d+\]|\.\*|\[\*\])*)
  | "(?P<str>(?:[^"\\]|\\.)*)"
  | (?P<word>[^\s()&|=!<>"]+)
)""", re.X)

Node = tuple[Any, ...]


class _JsonParser:
    def __init__(self, text: str) -> None:
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        text = text.rstrip()
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                raise invalid(f"Invalid JSON filter pattern near {text[pos:].strip()!r}.")
            kind = m.lastgroup
            assert kind is not None
            self.tokens.append((kind, m.group(kind)))
            pos = m.end()
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise invalid("Invalid JSON filter pattern: it ends too soon.")
        self.i += 1
        return tok

    def parse(self) -> Node:
        node = self.parse_or()
        if self.peek() is not None:
            raise invalid(f"Invalid JSON filter pattern near {self.peek()[1]!r}.")  # type: ignore[index]
        return node

    def parse_or(self) -> Node:
        node = self.parse_and()
        while self.peek() == ("op", "||"):
            self.take()
            node = ("or", node, self.parse_and())
        return node

    def parse_and(self) -> Node:
        node = self.parse_unary()
        while self.peek() == ("op", "&&"):
            self.take()
            node = ("and", node, self.parse_unary())
        return node

    def parse_unary(self) -> Node:
        if self.peek() == ("op", "("):
            self.take()
            node = self.parse_or()
            if self.take() != ("op", ")"):
                raise invalid("Invalid JSON filter pattern: a '(' is not closed.")
            return node
        kind, sel = self.take()
        if kind != "sel":
            raise invalid(f"Invalid JSON filter pattern: expected a selector such as $.level, not {sel!r}.")
        path = _path(sel)
        kind, value = self.take()
        if kind == "word" and value.upper() in ("IS", "NOT", "EXISTS"):
            word = value.upper()
            if word == "EXISTS":
                return ("exists", path, True)
            if word == "NOT":
                if self.take()[1].upper() != "EXISTS":
                    raise invalid("Invalid JSON filter pattern: NOT is followed by EXISTS.")
                return ("exists", path, False)
            what = self.take()[1].upper()
            if what not in ("NULL", "TRUE", "FALSE"):
                raise invalid("Invalid JSON filter pattern: IS is followed by NULL, TRUE or FALSE.")
            return ("is", path, {"NULL": None, "TRUE": True, "FALSE": False}[what])
        if kind != "op" or value not in ("=", "!=", "<", ">", "<=", ">="):
            raise invalid(f"Invalid JSON filter pattern: expected a comparison after {sel}, not {value!r}.")
        op = value
        kind, raw = self.take()
        if kind == "str":
            operand: object = raw.replace('\\"', '"')
        elif kind == "word":
            try:
                operand = float(raw)
            except ValueError:
                operand = raw
        else:
            raise invalid(f"Invalid JSON filter pattern: expected a value after {op}, not {raw!r}.")
        if isinstance(operand, str) and op not in ("=", "!="):
            raise invalid(f"Invalid JSON filter pattern: {op} compares numbers, not the string {operand!r}.")
        return ("cmp", path, op, operand)


def _path(selector: str) -> list[str | int]:
    out: list[str | int] = []
    for part in re.findall(r"\.([^.\[]+)|\[(\d+|\*)\]", selector[1:]):
        name, index = part
        if name == "*" or index == "*":
            raise invalid("Wildcard selectors ($.a.*, $.a[*]) are not supported by Lamina.")
        out.append(name if name else int(index))
    return out


def _lookup(doc: object, path: list[str | int]) -> object:
    for step in path:
        if isinstance(step, int):
            if not isinstance(doc, list) or step >= len(doc):
                return _MISSING
            doc = doc[step]
        else:
            if not isinstance(doc, dict) or step not in doc:
                return _MISSING
            doc = doc[step]
    return doc


def _evaluate(node: Node, doc: object) -> bool:
    kind = node[0]
    if kind == "and":
        return _evaluate(node[1], doc) and _evaluate(node[2], doc)
    if kind == "or":
        return _evaluate(node[1], doc) or _evaluate(node[2], doc)
    value = _lookup(doc, node[1])
    if kind == "exists":
        return (value is not _MISSING) == node[2]
    if kind == "is":
        return value is not _MISSING and value is node[2]
    _, _, op, operand = node
    if value is _MISSING:
        return False
    if isinstance(operand, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return op == "!=" and value is not None
        v = float(value)
        return {"=": v == operand, "!=": v != operand, "<": v < operand, ">": v > operand,
                "<=": v <= operand, ">=": v >= operand}[op]
    text = value if isinstance(value, str) else json.dumps(value)
    assert isinstance(operand, str)
    hit = _wildcard(operand).fullmatch(text) is not None if "*" in operand else text == operand
    return hit if op == "=" else not hit


def _wildcard(operand: str) -> re.Pattern[str]:
    """A string value with `*` wildcards (the only special character) as a regular expression."""
    return re.compile(".*".join(re.escape(part) for part in operand.split("*")), re.S)


def _json_matcher(tree: Node) -> Matcher:
    def match(message: str) -> bool:
        start = message.find("{")
        if start < 0:
            return False
        try:
            doc = json.loads(message[start:])
        except ValueError:
            return False
        return isinstance(doc, dict) and _evaluate(tree, doc)

    return match
