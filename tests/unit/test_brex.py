"""BREX: every construct with expected bytes, the spec's examples, evaluation errors and syntax errors."""

from __future__ import annotations

import contextlib

import pytest

from lamina.gateway.udp import brex
from lamina.gateway.udp.brex import BrexError, BrexEvalError, BrexSyntaxError
from lamina.gateway.udp.formatters import encode

D = bytes(range(64))  # byte i holds i


def ev(expression: str, data: bytes = D) -> bytes:
    return brex.compile(expression)(data)


@pytest.mark.parametrize(("expression", "expected"), [
    ("[5]", b"\x05"),
    ("[2, 4]", b"\x02\x03\x04\x05"),
    ("[0, 10]", bytes(range(10))),
    ("[2:6]", b"\x02\x03\x04\x05"),
    ("[0:10]", bytes(range(10))),
    ("[60:]", b"\x3c\x3d\x3e\x3f"),
    ("[64:]", b""),
    ("[:3]", b"\x00\x01\x02"),
    ("[:]", D),
    ("[]", b""),
    ("[3:3]", b""),
    ("[63, 1]", b"\x3f"),
    ("[64, 0]", b""),
    ("  [ 2 :\t6 ]  ", b"\x02\x03\x04\x05"),
])
def test_ranges(expression: str, expected: bytes) -> None:
    assert ev(expression) == expected


def test_spec_examples() -> None:
    assert ev("[0:4]") == b"\x00\x01\x02\x03"
    assert ev("[2:]") == D[2:]
    # u8[0] + 1: the byte after the one byte 0 points at.
    assert ev("[u8[0] + 1]", b"\x03abcdef") == b"d"
    # u16le[0] * 2: 4 bytes at twice the little-endian value of bytes 0-1.
    assert ev("[u16le[0] * 2, 4]", b"\x03\x00" + bytes(range(2, 20))) == bytes([6, 7, 8, 9])
    assert ev("[u8[0] + 1, 10] | [5]", b"\x01" + bytes(range(1, 30))) == b"\x07"
    assert ev("[10:20] | [5]") == b"\x0f"
    assert ev("[0:100] | [50:60] | [0]", bytes(range(100))) == b"\x32"
    assert ev("[20:30] | [2:8] | [1]") == bytes([23])


MAVLINK = "[0] == 0xFE ? [3:5] : ([0] == 0xFD ? [5:7] : 0xFFFF)"


def test_mavlink_conditional() -> None:
    b = brex.compile(MAVLINK)
    v1 = bytes([0xFE, 9, 0, 42, 1, 0, 0, 0])  # MAVLink 1: system id [3], component id [4]
    v2 = bytes([0xFD, 9, 0, 0, 0, 42, 1, 0, 0, 0])  # MAVLink 2: system id [5], component id [6]
    other = bytes([0x55, 1, 2, 3, 4, 5, 6, 7])
    assert b(v1) == b"\x2a\x01"
    assert b(v2) == b"\x2a\x01"
    assert b(other) == b"\xff\xff"
    assert encode("hex", b(other)) == "ffff"
    # Without the parentheses (right-associative) it means the same.
    assert brex.compile(MAVLINK.replace("(", "").replace(")", ""))(v2) == b"\x2a\x01"
    # A too-short MAVLink 2 frame is an error, not a shorter tenant id.
    with pytest.raises(BrexEvalError, match="past the end"):
        b(bytes([0xFD, 1, 2, 3, 4, 5]))
    with pytest.raises(BrexEvalError):
        b(b"")


def test_typed_reads() -> None:
    d = bytes([0x01, 0x02, 0x03, 0x04, 0x05])
    assert ev("u8[4]", d) == b"\x05"
    assert ev("u16le[0] == 0x0201", d) == b"\x01"
    assert ev("u16be[0] == 0x0102", d) == b"\x01"
    assert ev("u32le[1] == 0x05040302", d) == b"\x01"
    assert ev("u32be[1] == 0x02030405", d) == b"\x01"
    assert ev("u32be[1]", d) == b"\x02\x03\x04\x05"
    assert ev("u16le[3]", d) == b"\x05\x04"
    for bad in ("u8[5]", "u16le[4]", "u16be[4]", "u32le[2]", "u32be[2]", "u8[0 - 1]", "u16le[0 - 1]"):
        with pytest.raises(BrexEvalError):
            ev(bad, d)
    with pytest.raises(BrexEvalError, match=r"u32le\[2\] reads 4 bytes"):
        ev("u32le[2]", d)


def test_ranges_as_integers_are_big_endian() -> None:
    d = bytes([0x01, 0x02, 0x03, 0x04])
    assert ev("[0:2] == 0x0102", d) == b"\x01"
    assert ev("[0:2] == u16be[0]", d) == b"\x01"
    assert ev("[1] + 1", d) == b"\x03"
    assert ev("[[0]]", d) == b"\x02"  # a byte as an offset
    assert ev("[[0], [1]]", d) == b"\x02\x03"
    with pytest.raises(BrexEvalError, match="empty byte range"):
        ev("[] + 1", d)
    with pytest.raises(BrexEvalError, match="9-byte range"):
        ev("[0:9] + 1", bytes(9))
    assert ev("[0:8] + 0", b"\xff" * 8) == b"\xff" * 8


def test_arithmetic() -> None:
    assert ev("2 + 3 * 4") == b"\x0e"
    assert ev("(2 + 3) * 4") == b"\x14"
    assert ev("10 - 2 - 3") == b"\x05"  # left-associative
    assert ev("100 / 10 / 5") == b"\x02"
    assert ev("7 / 2") == b"\x03"
    assert ev("7 % 3") == b"\x01"
    assert ev("7 % 3 * 2") == b"\x02"
    # Truncation toward zero, remainder with the dividend's sign (floor division would give 6 and 7).
    assert ev("[(0 - 7) / 2 + 10]") == b"\x07"
    assert ev("[(0 - 7) % 3 + 5]") == b"\x04"
    assert ev("[7 / (0 - 2) + 10]") == b"\x07"
    assert ev("[7 % (0 - 3) + 5]") == b"\x06"
    assert ev("[u8[3] / u8[2]]") == b"\x01"  # computed divisor
    assert ev("[u8[9] % u8[4]]") == b"\x01"
    assert ev("--5") == b"\x05"
    assert ev("-(0 - 5)") == b"\x05"
    assert ev("2 * -3 + 7") == b"\x01"
    for zero in ("1 / 0", "1 % 0", "1 / u8[0]", "1 % [0]", "[1 / (u8[1] - 1)]"):
        with pytest.raises(BrexEvalError, match="by zero"):
            ev(zero)


def test_integers_become_big_endian_bytes() -> None:
    assert ev("0") == b"\x00"
    assert ev("255") == b"\xff"
    assert ev("256") == b"\x01\x00"
    assert ev("300") == b"\x01\x2c"
    assert ev("0xFFFF") == b"\xff\xff"
    # A hex literal keeps the width it is written with.
    assert ev("0x0001") == b"\x00\x01"
    assert ev("0x0") == b"\x00"
    assert ev("0x123") == b"\x01\x23"
    assert ev("0x00000000") == b"\x00" * 4
    assert ev("0xffffffffffffffff") == b"\xff" * 8
    # Computed integers use the fewest bytes.
    assert ev("0x0001 + 0") == b"\x01"
    assert ev("u16be[0]") == b"\x01"
    # Pipes pass integers on as bytes.
    assert ev("300 | [1]") == b"\x2c"
    assert ev("[0:4] | u16be[2] + 1") == b"\x02\x04"
    with pytest.raises(BrexEvalError, match="negative"):
        ev("0 - 1")
    with pytest.raises(BrexEvalError, match="negative"):
        ev("-1")
    with pytest.raises(BrexEvalError, match="negative"):
        ev("1 ? -0x01 : 2")


@pytest.mark.parametrize(("expression", "expected"), [
    ("[5] == 5", 1), ("[5] == 6", 0), ("[5] != 6", 1), ("[5] != 5", 0),
    ("[5] < 6", 1), ("[5] < 5", 0), ("[5] <= 5", 1), ("[5] <= 4", 0),
    ("[5] > 4", 1), ("[5] > 5", 0), ("[5] >= 5", 1), ("[5] >= 6", 0),
    ("1 + 1 == 2", 1), ("(1 == 1) + 1", 2), ("(1 < 2) == 1", 1),
])
def test_comparisons(expression: str, expected: int) -> None:
    assert ev(expression) == bytes([expected])


def test_comparing_byte_ranges() -> None:
    d = b"abab\x00b"
    assert ev("[0:2] == [2:4]", d) == b"\x01"
    # Byte strings compare with their lengths: "b" == "\x00b" as integers, not as bytes.
    assert ev("[1] == [4:6]", d) == b"\x00"
    assert ev("[1] == u16be[4]", d) == b"\x01"
    assert ev("[0:2] < [1:3]", d) == b"\x01"  # "ab" < "ba"
    assert ev("([0:2] | [:]) == [2:4]", d) == b"\x01"
    assert ev("(1 ? [0:2] : [4:6]) == [2:4]", d) == b"\x01"
    # A conditional of a range and an integer compares as integers.
    assert ev("(1 ? [4:6] : 7) == [1]", d) == b"\x01"


def test_conditionals() -> None:
    assert ev("1 ? 2 : 3") == b"\x02"
    assert ev("0 ? 2 : 3") == b"\x03"
    assert ev("0 ? 1 : 0 ? 2 : 3") == b"\x03"  # right-associative
    assert ev("1 ? 2 : 0 ? 4 : 5") == b"\x02"
    assert ev("0 ? 1 : 1 ? 2 : 3") == b"\x02"
    assert ev("[0] ? 5 : 6") == b"\x06"  # byte 0 is zero
    assert ev("[1:3] ? 5 : 6") == b"\x05"
    assert ev("[1 ? 2 : 3]") == b"\x02"  # '?' binds inside brackets
    assert ev("[(1 ? 2 : 3) : 5]") == b"\x02\x03\x04"
    assert ev("1 ? [1:3] | [1] : [0]") == b"\x02"  # a pipe between '?' and ':'
    # Pipes bind loosest: the conditional's bytes are piped.
    assert ev("[0] == 0 ? [1:3] : [3:5] | [0]") == b"\x01"
    # Only the chosen branch is evaluated: the other may be out of range.
    assert ev("[0] == 0 ? [1] : [1000]") == b"\x01"
    assert ev("1 ? 1 : 1 / 0") == b"\x01"


def test_pipes_use_each_stage_as_data() -> None:
    assert ev("[10:20] | [:]") == bytes(range(10, 20))
    assert ev("[10:20] | [u8[0] - 10]") == b"\x0a"  # typed reads see the stage's data
    assert ev("[10:20] | [9]") == b"\x13"
    with pytest.raises(BrexEvalError, match="outside the data \\(10 bytes\\)"):
        ev("[10:20] | [10]")
    assert ev("([0:4] | [1]) + 1") == b"\x02"
    assert ev("[([10:20] | [2]) : 14]") == b"\x0c\x0d"


@pytest.mark.parametrize(("expression", "data", "message"), [
    ("[4]", b"abcd", "byte offset 4 is outside the data (4 bytes)"),
    ("[u8[0] - 1]", b"\x00", "byte offset -1 is negative"),
    ("[0 - 1]", b"abcd", "byte offset -1 is negative"),
    ("[2:5]", b"abcd", "range [2:5] reaches past the end of the data (4 bytes)"),
    ("[5:]", b"abcd", "range [5:] reaches past the end"),
    ("[3:2]", b"abcd", "range [3:2] ends before it starts"),
    ("[u8[0]:u8[1]]", b"\x03\x02\x00\x00", "range [3:2] ends before it starts"),
    ("[u8[0]:]", b"\x09", "range [9:] reaches past the end"),
    ("[:u8[0]]", b"\x09", "range [0:9] reaches past the end"),
    ("[0 - 1:2]", b"abcd", "starts at a negative offset"),
    ("[1:0 - 2]", b"abcd", "ends at a negative offset"),
    ("[u8[0] - 9:2]", b"\x03", "starts at a negative offset"),
    ("[3, 2]", b"abcd", "range [3, 2] (offset, length) reaches past the end of the data (4 bytes)"),
    ("[u8[0], 2]", b"\x03abc", "range [3, 2] (offset, length) reaches past"),
    ("[0 - 1, 2]", b"abcd", "negative offset"),
    ("[u8[0] - 1, 1]", b"\x00abc", "range [-1, 1] (offset, length) starts at a negative offset"),
    ("[u8[0] - 1, u8[0] + 2]", b"\x00abc", "negative offset"),
    ("[u8[0], 1]", b"\x04abc", "range [4, 1] (offset, length) reaches past"),
    ("[u8[0] - 1 : 2]", b"\x00abc", "starts at a negative offset"),
    ("[u8[0] : 5]", b"\x00abc", "range [0:5] reaches past"),
    ("u16be[u8[0] - 1]", b"\x00abc", "offset is negative"),
    ("u16be[u8[0]]", b"\x03abc", "u16be[3] reads 2 bytes"),
    ("[1, 0 - 2]", b"abcd", "negative length"),
    ("[1, u8[0] - 2]", b"\x01abc", "negative length"),
])
def test_reads_outside_the_data_are_errors(expression: str, data: bytes, message: str) -> None:
    with pytest.raises(BrexEvalError) as info:
        ev(expression, data)
    assert message in str(info.value)


@pytest.mark.parametrize(("expression", "column", "message"), [
    ("", 1, "expected an expression"),
    ("   ", 1, "the expression is empty"),
    ("[", 2, "expected a number, '['"),
    ("[0:4", 5, "expected ']' to close '[' at column 1"),
    ("[0, 4", 6, "expected ']' to close '['"),
    ("[0 4]", 4, "expected ']' to close '[' at column 1, ',' (offset, length) or ':' (start:end), got '4'"),
    ("[0:4]]", 6, "expected an operator, '|' or the end of the expression, got ']'"),
    ("[0:4] |", 8, "expected a number"),
    ("foo[0]", 1, "unknown name 'foo'"),
    ("u8", 3, "expected '[' after u8"),
    ("u8[0", 5, "expected ']' to close u8[ at column 1"),
    ("u16[0]", 1, "unknown name 'u16'"),
    ("(1 + 2", 7, "expected ')' to close '(' at column 1"),
    ("1 ? 2", 6, "expected ':' after the '?' branch at column 3"),
    ("1 < 2 < 3", 7, "comparisons cannot be chained"),
    ("[0] = 1", 5, "expected '=='"),
    ("!1", 1, "expected '!='"),
    ("[0] & 1", 5, "unexpected character '&'"),
    ("[0] $", 5, "unexpected character '$'"),
    ("0x", 1, "expected hex digits after '0x'"),
    ("0xZZ", 1, "expected hex digits"),
    ("12ab", 1, "not a number"),
    ("0x12345678901234567", 1, "at most 16 hex digits"),
    ("18446744073709551616", 1, "too large"),
    ("[0] + * 1", 7, "expected a number"),
    ("[0] ++ 1", 6, "expected a number"),
    ("[0:4] 1", 7, "expected an operator"),
    ("[é]", 2, "unexpected character 'é'"),
])
def test_syntax_errors_name_the_column(expression: str, column: int, message: str) -> None:
    with pytest.raises(BrexSyntaxError) as info:
        brex.compile(expression)
    assert info.value.column == column, str(info.value)
    assert message in info.value.message
    assert str(info.value).startswith(f"column {column}: ")


def test_largest_literals_compile() -> None:
    assert ev("18446744073709551615") == b"\xff" * 8
    assert ev("0x0000000000000001") == b"\x00" * 7 + b"\x01"


def test_limits_on_length_and_nesting() -> None:
    assert brex.compile("[" + " " * 1022 + "]")(D) == b""  # 1,024 characters
    with pytest.raises(BrexSyntaxError, match="at most 1024") as info:
        brex.compile("[" + " " * 1023 + "]")
    assert info.value.column == 1025
    assert ev("(" * 32 + "1" + ")" * 32) == b"\x01"
    nested = "(" * 33 + "1" + ")" * 33
    with pytest.raises(BrexSyntaxError, match="too deeply nested") as info:
        brex.compile(nested)
    assert info.value.column == 33
    with pytest.raises(BrexSyntaxError, match="too deeply nested"):
        brex.compile("+".join(["1"] * 40))
    assert ev("+".join(["1"] * 20)) == b"\x14"
    # Inputs that would exhaust a naive recursive parser (RecursionError) raise BrexSyntaxError.
    for hostile in ("(" * 1024, "[" * 1024, "u8[" * 300, "1?" * 500, "0 ? 1 : " * 120 + "1", "[:] | " * 150 + "[:]",
                    "[" * 40 + "0" + "]" * 40, "u8[" * 40 + "0" + "]" * 40, "-(" * 40 + "1" + ")" * 40):
        with pytest.raises(BrexSyntaxError, match="too deeply nested|expected"):
            brex.compile(hostile)
    assert ev("-" * 1022 + "1") == b"\x01"  # minus signs cancel in pairs, without recursion
    with pytest.raises(BrexEvalError, match="negative"):
        ev("-" * 1023 + "1")


def test_deepest_allowed_expressions_compile_and_run() -> None:
    # At the nesting limit, every construct still compiles to valid Python and evaluates.
    shapes = [
        lambda e: f"[{e},1]", lambda e: f"[1,{e}]", lambda e: f"[{e}:{e}]" if len(e) < 200 else f"[0:{e}]",
        lambda e: f"u32le[{e}]", lambda e: f"([:] | {e})", lambda e: f"0 ? 1 : {e}", lambda e: f"(u8[0] / {e})",
        lambda e: f"({e} % 3)", lambda e: f"({e} == [0:2])", lambda e: f"[[:] | u16le[{e}] / u8[0], u8[1]]",
    ]
    for shape in shapes:
        expression, deepest = "0", None
        while True:
            try:
                b = brex.compile(expression)
            except BrexSyntaxError as exc:
                assert "too deeply nested" in exc.message
                break
            deepest = b
            expression = shape(expression)
        assert deepest is not None
        with contextlib.suppress(BrexEvalError):
            assert isinstance(deepest(bytes(range(40))), bytes)


def test_compiled_object() -> None:
    b = brex.compile("[0:4]")
    assert isinstance(b, brex.Brex)
    assert b.source == "[0:4]"
    assert repr(b) == "Brex('[0:4]')"
    assert "def brex" in b.python_source
    assert b.evaluate(D) == b(D) == D[:4]
    # Any buffer works; the result is bytes.
    assert b(bytearray(D)) == D[:4] and type(b(bytearray(D))) is bytes
    assert b(memoryview(D)) == D[:4]
    with pytest.raises(TypeError):
        b(1234)  # type: ignore[arg-type]
    assert brex.compile("[:]")(D) is D
    assert brex.compile("[0:4]") is not b  # no shared state between compiled expressions


def test_error_classes() -> None:
    assert issubclass(BrexSyntaxError, BrexError) and issubclass(BrexEvalError, BrexError)
    assert issubclass(BrexError, ValueError)
    with pytest.raises(BrexSyntaxError):
        brex.compile(None)  # type: ignore[arg-type]
    with pytest.raises(BrexSyntaxError):
        brex.compile(b"[0]")  # type: ignore[arg-type]
