"""JSON for the runtime's hot path, stdlib only: the same results as json.loads / json.dumps, with less overhead
per call (one invocation decodes its event and encodes its result once each)."""

from __future__ import annotations

import json
import json.encoder
from typing import Any

# A str as a JSON string: json.dumps without its overhead.
json_str = json.encoder.encode_basestring_ascii
_scan = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # set in JSONDecoder.__init__, not in typeshed


def loads(data: bytes) -> Any:
    """json.loads for the hot path: a UTF-8 document without surrounding whitespace (what the server sends, and
    nearly every payload) is scanned directly; anything else, errors included, goes through json.loads."""
    try:
        text = data.decode()
        value, end = _scan(text, 0)
    except (UnicodeDecodeError, StopIteration, ValueError):
        return json.loads(data)
    if end != len(text):
        return json.loads(data)
    return value


class Dumps:
    """json.dumps(value) with the default settings, reusing one C encoder (json.dumps builds one per call).
    Only where the C encoder exists (`Dumps.available`); use json.dumps otherwise."""

    available = getattr(json.encoder, "c_make_encoder", None) is not None

    def __init__(self) -> None:
        self._encoder = json.JSONEncoder()
        self._new()

    def _new(self) -> None:
        enc = self._encoder
        make = json.encoder.c_make_encoder  # type: ignore[attr-defined]  # the C accelerator typeshed omits
        self._c = make({}, enc.default, json.encoder.encode_basestring_ascii, None, enc.key_separator,
                       enc.item_separator, False, False, True)

    def __call__(self, value: Any) -> str:
        if value.__class__ is str:
            return json_str(value)
        try:
            return "".join(self._c(value, 0))
        except BaseException:
            self._new()  # an error can leave the encoder's cycle markers behind
            raise
