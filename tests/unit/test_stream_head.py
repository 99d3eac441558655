"""httpevent.response.stream_head: the head of a RESPONSE_STREAM function-URL response, told from its first bytes,
is the one stream_response gives the whole response, and the body starts where it says."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lamina.httpevent.response import (
    PRELUDE_MAX,
    STREAM_DELIMITER,
    BadResponse,
    WholeResponse,
    stream_head,
    stream_response,
)

_preludes = st.fixed_dictionaries({"statusCode": st.sampled_from([200, 201, 404, 519])}, optional={
    "headers": st.dictionaries(st.sampled_from(["content-type", "x-a", "x-b"]), st.text(
        st.characters(min_codepoint=32, max_codepoint=126), max_size=8), max_size=3),
    "cookies": st.lists(st.sampled_from(["a=1", "b=2; Path=/"]), max_size=2),
})
_payloads = st.one_of(
    st.builds(lambda p, body: json.dumps(p).encode() + STREAM_DELIMITER + body, _preludes, st.binary(max_size=40)),
    st.binary(max_size=40),
    st.builds(lambda doc: json.dumps(doc).encode(), st.one_of(st.integers(), st.text(max_size=5),
                                                              st.lists(st.integers(), max_size=3))),
)


@given(_payloads, st.data())
def test_head_from_the_first_bytes_matches_the_whole(payload: bytes, data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(payload)))
    try:
        whole = stream_response(payload)
    except BadResponse:
        whole = None
    for start in (payload[:cut], payload):
        try:
            told = stream_head(start)
        except (WholeResponse, BadResponse):
            continue  # answered from the whole response, as before
        if told is None:
            continue  # not yet: more bytes, or the end, tell
        head, offset = told
        assert whole is not None
        assert (head.status, head.headers) == (whole.status, whole.headers)
        assert payload[offset:] == whole.body


def test_prelude_then_body() -> None:
    start = b'{"statusCode": 201, "headers": {"x-a": "1"}}' + STREAM_DELIMITER + b"hel"
    head, offset = stream_head(start)
    assert head.status == 201 and (b"x-a", b"1") in head.headers and start[offset:] == b"hel"
    assert stream_head(b'{"statusCode": 201') is None  # the prelude is not complete yet


def test_bytes_that_cannot_be_json_are_octet_stream_at_once() -> None:
    head, offset = stream_head(b"data: 1\n\n")
    assert head.status == 200 and head.headers == [(b"content-type", b"application/octet-stream")] and offset == 0


@pytest.mark.parametrize("start", [b"[1, 2", b"123", b'"text', b"true", b" {", b"{" + b" " * PRELUDE_MAX])
def test_json_without_a_prelude_needs_the_whole(start: bytes) -> None:
    with pytest.raises(WholeResponse):
        stream_head(start)
