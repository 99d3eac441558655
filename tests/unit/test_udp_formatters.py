"""The UDP formatters: fixed examples, what each does with bytes it cannot express, unknown names."""

from __future__ import annotations

import json

import pytest

from lamina.gateway.udp import formatters
from lamina.gateway.udp.formatters import FORMATTERS, decode, encode


def test_names() -> None:
    assert FORMATTERS == ("base64", "hex", "ascii", "utf8")


@pytest.mark.parametrize(("name", "data", "text"), [
    ("base64", b"hello", "aGVsbG8="),
    ("base64", b"", ""),
    ("base64", b"\x00\xff\xfe", "AP/+"),
    ("hex", b"\x00\xff\x10", "00ff10"),
    ("hex", b"", ""),
    ("ascii", b"OK\r\n\x00", "OK\r\n\x00"),
    ("utf8", "grüß 🙂".encode(), "grüß 🙂"),
    ("utf8", b"", ""),
])
def test_examples(name: str, data: bytes, text: str) -> None:
    assert encode(name, data) == text
    assert decode(name, text) == data
    # The text goes into JSON and comes back unchanged.
    assert json.loads(json.dumps({"Data": encode(name, data)}))["Data"] == text


def test_hex_decoding_accepts_upper_case_and_spaces() -> None:
    assert decode("hex", "00FF 10") == b"\x00\xff\x10"


def test_ascii_rejects_bytes_from_0x80() -> None:
    # No '?' replacement: two different packets must never become the same text (or tenant id).
    with pytest.raises(ValueError, match=r"byte 0x80 at offset 2 is not ASCII.*use the hex or base64 formatter"):
        encode("ascii", b"ab\x80")
    with pytest.raises(ValueError, match="character 'é' at offset 1 is not ASCII"):
        decode("ascii", "hé")


def test_utf8_rejects_invalid_sequences() -> None:
    for bad in (b"\xff", b"ab\xc3", b"\xed\xa0\x80", b"\xc0\xaf"):  # stray, truncated, surrogate, overlong
        with pytest.raises(ValueError, match="not valid UTF-8"):
            encode("utf8", bad)
    with pytest.raises(ValueError, match="at offset 3"):
        encode("utf8", b"abc\xff")
    with pytest.raises(ValueError, match="cannot be encoded as UTF-8"):
        decode("utf8", "a\ud800b")  # a lone surrogate (what surrogateescape would have produced)


@pytest.mark.parametrize("text", ["aGVsbG8", "aGVs bG8=", "aGVs\nbG8=", "a*==", "=aGVsbG8", "aGVsbG8==="])
def test_base64_decoding_is_strict(text: str) -> None:
    with pytest.raises(ValueError, match="not valid base64"):
        decode("base64", text)


@pytest.mark.parametrize("text", ["0", "zz", "0x10", "é0"])
def test_bad_hex(text: str) -> None:
    with pytest.raises(ValueError, match="not valid hex"):
        decode("hex", text)


@pytest.mark.parametrize("name", FORMATTERS)
def test_reply_data_must_be_a_string(name: str) -> None:
    for value in (None, 5, ["a"], b"aa"):
        with pytest.raises(ValueError, match="Data must be a JSON string"):
            decode(name, value)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["coap", "BASE64", "", None, "utf-8"])
def test_unknown_formatter(name: object) -> None:
    with pytest.raises(ValueError, match=r"unknown formatter .*; use one of base64, hex, ascii, utf8"):
        encode(name, b"x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown formatter"):
        decode(name, "x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown formatter"):
        formatters.encoder(name)  # type: ignore[arg-type]


def test_encoder_and_decoder_functions() -> None:
    for name in FORMATTERS:
        enc, dec = formatters.encoder(name), formatters.decoder(name)
        assert dec(enc(b"abc")) == b"abc"
