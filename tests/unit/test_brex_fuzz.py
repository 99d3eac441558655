"""Property tests for BREX and the formatters (hypothesis, deterministic, a few seconds in all).

1. Any text: compile returns a Brex or raises BrexSyntaxError (with a column inside the text), nothing else.
2. Generated valid expressions on arbitrary bytes: bytes or BrexEvalError, and the same answer as a
   small tree-walking reference interpreter written from the module's documented semantics (so the
   generated Python code is checked against the specification, not against itself).
3. Formatters: decode(encode(x)) == x wherever encode accepts x; bad text is a ValueError only.
"""

from __future__ import annotations

import contextlib
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lamina.gateway.udp import brex
from lamina.gateway.udp.brex import BrexEvalError, BrexSyntaxError
from lamina.gateway.udp.formatters import FORMATTERS, decode, encode

# derandomize: the same examples every run; no example database on disk. The deadline is only a hang
# detector (generous on a busy machine), not a performance claim.
FUZZ = settings(derandomize=True, database=None, deadline=2000, max_examples=300,
                suppress_health_check=[HealthCheck.too_slow])

BREX_ALPHABET = "[](),:?|+-*/%=!<>0123456789xXabcdefu8l16e32 \t"
TOKENS = ["[", "]", "(", ")", ",", ":", "?", "|", "+", "-", "*", "/", "%", "==", "!=", "<", "<=", ">", ">=",
          "0", "1", "7", "255", "0x10", "0xFFFF", "u8", "u16le", "u16be", "u32le", "u32be", " "]
PACKETS = [b"", b"\x00", bytes(range(8)), bytes(range(255, 191, -1)), b"\xfe\x05\x02\x03\x04\x05\x06"]


def _check_text(text: str) -> None:
    try:
        compiled = brex.compile(text)
    except BrexSyntaxError as exc:
        assert 1 <= exc.column <= max(len(text), brex.MAX_LENGTH) + 1
        assert exc.message
        return
    for packet in PACKETS:
        with contextlib.suppress(BrexEvalError):
            assert isinstance(compiled(packet), bytes)


@FUZZ
@given(st.text(max_size=300))
def test_any_text_compiles_or_is_a_syntax_error(text: str) -> None:
    _check_text(text)


@FUZZ
@given(st.one_of(st.text(alphabet=BREX_ALPHABET, max_size=300),
                 st.lists(st.sampled_from(TOKENS), max_size=120).map("".join)))
def test_brex_like_text_compiles_or_is_a_syntax_error(text: str) -> None:
    _check_text(text)


# ---------------------------------------------------------------------------------------------- valid expressions
# A tree is a tuple; render() gives fully parenthesised text, ref() evaluates it by the documented rules.

READS = {"u8": (1, "big"), "u16le": (2, "little"), "u16be": (2, "big"), "u32le": (4, "little"),
         "u32be": (4, "big")}

# Mostly offsets that fall inside the data, so that both results and errors are common.
small_ints = st.one_of(st.integers(0, 12), st.integers(0, 12), st.integers(0, 70),
                       st.sampled_from([0xFE, 0xFD, 0xFFFF, 2**64 - 1]))
literals = st.one_of(
    st.builds(lambda v: ("lit", v, 0), small_ints),
    # Hex literals of their own width, or with leading zero bytes up to 8 bytes (16 digits, the limit).
    st.builds(lambda v, extra: ("lit", v, max((len(f"{v:x}") + 1) // 2, min(8, (len(f"{v:x}") + 1) // 2 + extra))),
              small_ints, st.integers(0, 2)),
)


def _extend(children: st.SearchStrategy) -> st.SearchStrategy:
    opt = st.one_of(st.none(), children)
    return st.one_of(
        st.builds(lambda e: ("index", e), children),
        st.builds(lambda a, b: ("len", a, b), children, children),
        st.builds(lambda a, b: ("slice", a, b), opt, opt),
        st.just(("empty",)),
        st.builds(lambda name, e: ("read", name, e), st.sampled_from(sorted(READS)), children),
        st.builds(lambda e: ("neg", e), children),
        st.builds(lambda op, a, b: ("bin", op, a, b), st.sampled_from("+-*/%"), children, children),
        st.builds(lambda op, a, b: ("cmp", op, a, b), st.sampled_from(["==", "!=", "<", "<=", ">", ">="]),
                  children, children),
        st.builds(lambda c, a, b: ("cond", c, a, b), children, children, children),
        st.builds(lambda a, b: ("pipe", a, b), children, children),
        # Shifted by a small constant, so that small negative results become usable offsets and bytes.
        st.builds(lambda a, k: ("bin", "+", a, ("lit", k, 0)), children, st.integers(1, 9)),
    )


# Leaves include short ranges and reads at small offsets: values that fit in the data and in an integer.
leaves = st.one_of(
    literals, st.just(("slice", None, None)), st.just(("empty",)),
    st.builds(lambda o, k: ("len", ("lit", o, 0), ("lit", k, 0)), st.integers(0, 8), st.integers(1, 4)),
    st.builds(lambda name, o: ("read", name, ("lit", o, 0)), st.sampled_from(sorted(READS)), st.integers(0, 8)),
    st.builds(lambda v: ("neg", ("lit", v, 0)), st.integers(1, 9)),
    # Small signed values computed from the data: negative dividends, divisors and offsets.
    st.builds(lambda o, k: ("bin", "-", ("index", ("lit", o, 0)), ("lit", k, 0)), st.integers(0, 8), st.integers(0, 6)),
)
trees = st.recursive(leaves, _extend, max_leaves=8)


def render(t: tuple) -> str:
    kind = t[0]
    if kind == "lit":
        return f"0x{t[1]:0{2 * t[2]}x}" if t[2] else str(t[1])
    if kind == "index":
        return f"[{render(t[1])}]"
    if kind == "len":
        return f"[{render(t[1])}, {render(t[2])}]"
    if kind == "slice":
        return f"[{'' if t[1] is None else render(t[1])}:{'' if t[2] is None else render(t[2])}]"
    if kind == "empty":
        return "[]"
    if kind == "read":
        return f"{t[1]}[{render(t[2])}]"
    if kind == "neg":
        return f"-({render(t[1])})"
    if kind in ("bin", "cmp"):
        return f"({render(t[2])} {t[1]} {render(t[3])})"
    if kind == "cond":
        return f"({render(t[1])} ? {render(t[2])} : {render(t[3])})"
    if kind == "pipe":
        return f"({render(t[1])} | {render(t[2])})"
    raise AssertionError(kind)


class RefError(Exception):
    pass


def static_type(t: tuple) -> str:
    kind = t[0]
    if kind in ("index", "len", "slice", "empty"):
        return "bytes"
    if kind == "cond":
        a, b = static_type(t[2]), static_type(t[3])
        return a if a == b else "mixed"
    if kind == "pipe":
        return static_type(t[2])
    return "int"


def ref_bytes(t: tuple, data: bytes) -> bytes:
    kind = t[0]
    n = len(data)
    if kind == "index":
        i = ref_int(t[1], data)
        if not 0 <= i < n:
            raise RefError
        return data[i : i + 1]
    if kind == "len":
        o, k = ref_int(t[1], data), ref_int(t[2], data)
        if o < 0 or k < 0 or o + k > n:
            raise RefError
        return data[o : o + k]
    if kind == "slice":
        s = 0 if t[1] is None else ref_int(t[1], data)
        e = n if t[2] is None else ref_int(t[2], data)
        if not 0 <= s <= e <= n:
            raise RefError
        return data[s:e]
    if kind == "empty":
        return b""
    if kind == "cond":
        return ref_bytes(t[2], data) if ref_int(t[1], data) else ref_bytes(t[3], data)
    if kind == "pipe":
        return ref_bytes(t[2], ref_bytes(t[1], data))
    if kind == "lit" and t[2]:
        return t[1].to_bytes(t[2], "big")
    v = ref_int(t, data)
    if v < 0:
        raise RefError
    return v.to_bytes(max(1, (v.bit_length() + 7) // 8), "big")


def ref_int(t: tuple, data: bytes) -> int:
    kind = t[0]
    if kind == "lit":
        return t[1]
    if kind in ("index", "len", "slice", "empty"):
        b = ref_bytes(t, data)
        if not 1 <= len(b) <= 8:
            raise RefError
        return int.from_bytes(b, "big")
    if kind == "read":
        size, order = READS[t[1]]
        i = ref_int(t[2], data)
        if i < 0 or i + size > len(data):
            raise RefError
        return int.from_bytes(data[i : i + size], order)
    if kind == "neg":
        return -ref_int(t[1], data)
    if kind == "bin":
        a, b = ref_int(t[2], data), ref_int(t[3], data)
        op = t[1]
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if b == 0:
            raise RefError
        q = abs(a) // abs(b) * (1 if (a < 0) == (b < 0) else -1)  # truncating
        return q if op == "/" else a - b * q
    if kind == "cmp":
        if static_type(t[2]) == static_type(t[3]) == "bytes":
            a, b = ref_bytes(t[2], data), ref_bytes(t[3], data)
        else:
            a, b = ref_int(t[2], data), ref_int(t[3], data)
        return int({"==": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[t[1]])
    if kind == "cond":
        return ref_int(t[2], data) if ref_int(t[1], data) else ref_int(t[3], data)
    if kind == "pipe":
        return ref_int(t[2], ref_bytes(t[1], data))
    raise AssertionError(kind)


# Besides the drawn bytes, every tree also runs on buffers whose bytes are small numbers, so that bytes
# read from the data and used as offsets or lengths land inside it and the non-error paths get exercised.
RICH = [bytes(i % 7 for i in range(64)), bytes((i * 5 + 3) % 11 for i in range(80)), bytes([2, 0, 1, 3]) * 8]


def subtrees(t: tuple) -> list[tuple]:
    out, todo = [], [t]
    while todo:
        node = todo.pop()
        out.append(node)
        todo.extend(x for x in node[1:] if isinstance(x, tuple))
    return out


@FUZZ
@given(trees, st.one_of(st.binary(min_size=32, max_size=300), st.binary(max_size=8), st.sampled_from(PACKETS)))
def test_valid_expressions_give_bytes_or_an_eval_error_as_specified(tree: tuple, data: bytes) -> None:
    # Every subtree is itself a valid expression: checking them all puts small shapes (a computed range,
    # a read at a computed offset) at the top, where their bytes are seen rather than masked.
    for sub in subtrees(tree):
        text = render(sub)
        compiled = brex.compile(text)  # every generated tree is valid BREX within the limits
        for buf in (data, *RICH):
            try:
                expected: bytes | None = ref_bytes(sub, buf)
            except RefError:
                expected = None
            try:
                got: bytes | None = compiled(buf)
                assert isinstance(got, bytes)
            except BrexEvalError:
                got = None
            assert got == expected, (text, buf, compiled.python_source)


# Integer-valued trees of small signed numbers, to check arithmetic (truncating / and %, negative dividends
# and divisors, inline constant divisors) and negative offsets, which random byte-valued trees rarely reach.
int_leaves = st.one_of(
    st.builds(lambda v: ("lit", v, 0), st.integers(0, 20)),
    st.builds(lambda v: ("neg", ("lit", v, 0)), st.integers(1, 20)),
    st.builds(lambda o, k: ("bin", "-", ("index", ("lit", o, 0)), ("lit", k, 0)), st.integers(0, 8), st.integers(0, 6)),
)


def _extend_int(children: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(
        st.builds(lambda op, a, b: ("bin", op, a, b), st.sampled_from("+-*/%"), children, children),
        st.builds(lambda op, a, k: ("bin", op, a, ("lit", k, 0)), st.sampled_from("/%"), children, st.integers(1, 7)),
        st.builds(lambda op, a, b: ("bin", op, a, b), st.sampled_from("/%"), int_leaves, int_leaves),
        st.builds(lambda e: ("neg", e), children),
        st.builds(lambda name, e: ("read", name, e), st.sampled_from(sorted(READS)), children),
        st.builds(lambda e: ("index", e), children),
        st.builds(lambda a, b: ("len", a, ("lit", 1, 0)), children, children),
        st.builds(lambda a, b: ("slice", a, b), children, children),
        st.builds(lambda op, a, b: ("cmp", op, a, b), st.sampled_from(["==", "!=", "<", "<=", ">", ">="]),
                  children, children),
        st.builds(lambda c, a, b: ("cond", c, a, b), children, children, children),
    )


int_trees = st.recursive(int_leaves, _extend_int, max_leaves=6)


@FUZZ
@given(int_trees)
def test_integer_expressions_match_the_reference(tree: tuple) -> None:
    # The sign and the magnitude as two expressions, since a negative result cannot itself become bytes.
    text = render(tree)
    sign = brex.compile(f"{text} < 0")
    magnitude = brex.compile(f"{text} < 0 ? -{text} : {text}")
    for buf in RICH:
        try:
            expected: int | None = ref_int(tree, buf)
        except RefError:
            expected = None
        try:
            got: int | None = int.from_bytes(magnitude(buf), "big") * (-1 if sign(buf) == b"\x01" else 1)
        except BrexEvalError:
            got = None
        assert got == expected, (text, buf, magnitude.python_source)


def test_the_generator_reaches_every_construct() -> None:
    # Guard against a strategy that silently stopped producing some node kinds.
    seen: set[str] = set()

    @settings(derandomize=True, database=None, max_examples=150)
    @given(trees)
    def collect(tree: tuple) -> None:
        todo = [tree]
        while todo:
            t = todo.pop()
            seen.add(t[0])
            todo.extend(x for x in t[1:] if isinstance(x, tuple))

    collect()
    assert seen >= {"lit", "index", "len", "slice", "empty", "read", "neg", "bin", "cmp", "cond", "pipe"}


# ---------------------------------------------------------------------------------------------- formatters

FMT = settings(derandomize=True, database=None, deadline=2000, max_examples=200)


@FMT
@given(st.binary(max_size=200))
def test_binary_formatters_round_trip(data: bytes) -> None:
    for name in ("base64", "hex"):
        text = encode(name, data)
        assert isinstance(text, str) and text.isascii()
        assert decode(name, text) == data


@FMT
@given(st.binary(max_size=200).map(lambda b: bytes(x & 0x7F for x in b)))
def test_ascii_round_trips(data: bytes) -> None:
    assert decode("ascii", encode("ascii", data)) == data


@FMT
@given(st.text(max_size=200).filter(lambda s: not any(0xD800 <= ord(c) <= 0xDFFF for c in s)))
def test_utf8_round_trips(text: str) -> None:
    data = text.encode("utf-8")
    assert encode("utf8", data) == text
    assert decode("utf8", encode("utf8", data)) == data


@FMT
@given(st.sampled_from(FORMATTERS), st.binary(max_size=100))
def test_encode_gives_text_or_a_value_error(name: str, data: bytes) -> None:
    try:
        text = encode(name, data)
    except ValueError:
        assert name in ("ascii", "utf8")
        return
    assert decode(name, text) == data


@FMT
@given(st.sampled_from(FORMATTERS), st.one_of(st.text(max_size=100),
                                               st.text(alphabet=string.hexdigits + string.ascii_letters + "+/= \n",
                                                       max_size=100)))
def test_decode_gives_bytes_or_a_value_error(name: str, text: str) -> None:
    try:
        data = decode(name, text)
    except ValueError:
        return
    assert isinstance(data, bytes)
    if name in ("ascii", "utf8"):  # hex and base64 accept variants (case, whitespace, padding bits)
        assert encode(name, data) == text
    else:
        assert decode(name, encode(name, data)) == data
