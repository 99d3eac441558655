"""Environment._stream_piece / _streamed_result: a response a custom runtime streams goes to the invocation's stream
as it comes (up to AWS's 20 MiB streaming limit), or is joined into the result for a plain Invoke."""

from __future__ import annotations

import json

from lamina.dispatch.environment import MAX_RESPONSE_BYTES, STREAM_LIMIT_BYTES, Environment
from lamina.dispatch.invocation import Invocation


def _env(stream=None) -> Environment:
    env = Environment.__new__(Environment)  # only the streaming state is used here
    env.current = Invocation("rid", b"{}", "arn", stream=stream)
    env._streamed = 0
    env._stream_parts = []
    return env


def test_pieces_go_to_the_stream_as_they_come() -> None:
    got: list[bytes] = []
    env = _env(got.append)
    env._stream_piece(b"a")
    assert got == [b"a"]
    env._stream_piece(b"bc")
    assert env._streamed_result(b"", None) == (b"", None, True)
    assert got == [b"a", b"bc"] and env._streamed == 0


def test_without_a_stream_the_pieces_are_the_result() -> None:
    env = _env()
    env._stream_piece(b"a")
    env._stream_piece(b"bc")
    assert env._streamed_result(b"", None) == (b"abc", None, False)


def test_an_error_replaces_what_was_streamed() -> None:
    env = _env()
    env._stream_piece(b"partial")
    assert env._streamed_result(b'{"errorType":"X"}', "X") == (b'{"errorType":"X"}', "X", False)


def test_over_the_synchronous_limit_without_a_stream() -> None:
    env = _env()
    piece = b"x" * (1024 * 1024)
    for _ in range(7):
        env._stream_piece(piece)
    assert env._stream_parts == []  # past the limit nothing more is kept
    body, error_type, streamed = env._streamed_result(b"", None)
    assert error_type == "Function.ResponseSizeTooLarge" and not streamed
    assert json.loads(body)["errorMessage"].startswith(f"Response payload size ({7 * len(piece)} bytes) exceeded")
    assert str(MAX_RESPONSE_BYTES) in json.loads(body)["errorMessage"]


def test_over_the_streaming_limit() -> None:
    got: list[bytes] = []
    env = _env(got.append)
    piece = b"x" * (1024 * 1024)
    for _ in range(STREAM_LIMIT_BYTES // len(piece) + 2):
        env._stream_piece(piece)
    assert sum(map(len, got)) == STREAM_LIMIT_BYTES  # nothing past the limit went out
    body, error_type, streamed = env._streamed_result(b"", None)
    assert error_type == "Function.ResponseSizeTooLarge" and streamed
    assert str(STREAM_LIMIT_BYTES) in json.loads(body)["errorMessage"]
