"""Packet formatters: how packet bytes become the JSON string `Data` (and a tenant id), and back.

The names follow Proxylity UDP Gateway's `Formatter` / `...Formatter` values (spec/udp-gateway.md §2.2-2.3):

- ``base64``: standard alphabet with ``=`` padding (RFC 4648 §4). Decoding is strict: characters
  outside the alphabet, missing padding or embedded whitespace are errors.
- ``hex``: two lower-case digits per byte. Decoding accepts either case and whitespace between
  bytes (as :meth:`bytes.fromhex` does).
- ``ascii``: bytes 0x00-0x7F, one character each. A byte >= 0x80 is an error, not a ``?`` or an
  escape: replacing bytes would map different packets to the same text (two tenants to one tenant
  id), so the caller is told instead and can drop the packet or pick ``hex``/``base64``.
- ``utf8``: strict UTF-8. Invalid sequences (and, when decoding text, lone surrogates) are errors
  for the same reason: ``errors="replace"`` would merge different packets, and ``surrogateescape``
  would put lone surrogates into JSON that strict parsers reject.

Errors are :class:`ValueError` with a message saying what is wrong and what to do.
``encoder(name)`` / ``decoder(name)`` return the function once, for a per-packet hot path.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable

FORMATTERS = ("base64", "hex", "ascii", "utf8")


def _need_str(text: object) -> None:
    if not isinstance(text, str):
        raise ValueError(f"Data must be a JSON string, not {type(text).__name__}")


def _b64_encode(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def _b64_decode(text: str) -> bytes:
    _need_str(text)
    try:
        return binascii.a2b_base64(text.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError(f"Data is not valid base64 ({exc}); send standard base64 with '=' padding") from None


def _hex_encode(data: bytes) -> str:
    return data.hex()


def _hex_decode(text: str) -> bytes:
    _need_str(text)
    try:
        return bytes.fromhex(text)
    except ValueError as exc:
        raise ValueError(f"Data is not valid hex ({exc}); send two hex digits per byte") from None


def _ascii_encode(data: bytes) -> str:
    try:
        return data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise ValueError(f"byte 0x{data[exc.start]:02x} at offset {exc.start} is not ASCII (0x00-0x7f); "
                         "use the hex or base64 formatter for binary data") from None


def _ascii_decode(text: str) -> bytes:
    _need_str(text)
    try:
        return text.encode("ascii")
    except UnicodeEncodeError as exc:
        raise ValueError(f"character {text[exc.start]!r} at offset {exc.start} is not ASCII; "
                         "use the utf8, hex or base64 formatter") from None


def _utf8_encode(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"bytes at offset {exc.start} are not valid UTF-8 ({exc.reason}); "
                         "use the hex or base64 formatter for binary data") from None


def _utf8_decode(text: str) -> bytes:
    _need_str(text)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"character at offset {exc.start} cannot be encoded as UTF-8 ({exc.reason}); "
                         "send valid Unicode text or use the hex or base64 formatter") from None


_ENCODERS: dict[str, Callable[[bytes], str]] = {
    "base64": _b64_encode, "hex": _hex_encode, "ascii": _ascii_encode, "utf8": _utf8_encode,
}
_DECODERS: dict[str, Callable[[str], bytes]] = {
    "base64": _b64_decode, "hex": _hex_decode, "ascii": _ascii_decode, "utf8": _utf8_decode,
}


def _unknown(name: object) -> ValueError:
    return ValueError(f"unknown formatter {name!r}; use one of {', '.join(FORMATTERS)}")


def encoder(name: str) -> Callable[[bytes], str]:
    """The function turning bytes into text for formatter `name` (ValueError if there is none)."""
    try:
        return _ENCODERS[name]
    except (KeyError, TypeError):
        raise _unknown(name) from None


def decoder(name: str) -> Callable[[str], bytes]:
    """The function turning text back into bytes for formatter `name` (ValueError if there is none)."""
    try:
        return _DECODERS[name]
    except (KeyError, TypeError):
        raise _unknown(name) from None


def encode(name: str, data: bytes) -> str:
    """`data` as text in formatter `name`; ValueError for an unknown formatter or bytes it cannot express."""
    return encoder(name)(data)


def decode(name: str, text: str) -> bytes:
    """`text` in formatter `name` back to bytes (e.g. a reply's Data); ValueError if it is not valid."""
    return decoder(name)(text)
