"""_X_AMZN_TRACE_ID, set for each invocation as AWS's runtime sets it, without glibc keeping every value."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any


class TraceVariable:
    """Sets _X_AMZN_TRACE_ID for each invocation, in os.environ and in the C environment (child processes, C code),
    as AWS's runtime does, but without os.environ's setenv(3): glibc keeps a copy of every value setenv was ever
    given (its known_values), about 110 bytes per invocation for the environment's whole life, enough to take a
    128 MB function to its memory limit after a million warm invocations. Instead the C environment points at a
    buffer of ours (putenv(3) keeps the pointer it is given) whose contents change in place."""

    NAME = "_X_AMZN_TRACE_ID"

    def __init__(self) -> None:
        # Every buffer the C environment was given stays alive (a longer value: a new one).
        self._buffers: list[Any] = []
        # set(value): through putenv and a buffer of ours where ctypes and os.environ's store are there, else the
        # plain os.environ assignment.
        self.set: Callable[[str], None] = self._set_environ
        try:
            import ctypes

            self._ctypes = ctypes
            self._putenv = ctypes.CDLL(None).putenv
            self._key = os.environ.encodekey(self.NAME)
            store = getattr(os.environ, "_data", None)  # os.environ's own store, which putenv bypasses
            if not isinstance(store, dict):
                raise TypeError("os.environ has no _data dict")
        except (ImportError, AttributeError, OSError, TypeError):
            return
        self._store: dict[Any, bytes] = store
        self.set = self._set_buffer

    def _set_environ(self, value: str) -> None:
        os.environ[self.NAME] = value

    def _set_buffer(self, value: str) -> None:
        raw = f"{self.NAME}={value}".encode()
        buffers = self._buffers
        if not buffers or len(buffers[-1]) <= len(raw):
            buffers.append(self._ctypes.create_string_buffer(max(256, 2 * len(raw))))
        buf = buffers[-1]
        buf.value = raw
        # Every time, not once: the handler may have set or deleted the variable itself since (setenv/unsetenv
        # replace or drop the pointer); for a variable already in the environment, glibc's putenv only swaps it.
        self._putenv(buf)
        self._store[self._key] = raw[len(self.NAME) + 1 :]
