"""The request head the gateway's proxies (function HTTP apps, MicroVM ports) send upstream."""

from __future__ import annotations

from lamina.gateway.http.upstream_head import add_forwarded, connection_listed, request_head


def test_connection_listed_names_are_lowercased_and_trimmed() -> None:
    headers = [(b"connection", b"Keep-Alive, X-Private"), (b"x-private", b"1"), (b"connection", b"upgrade")]
    assert connection_listed(headers) == {b"keep-alive", b"x-private", b"upgrade"}
    assert connection_listed([(b"host", b"a")]) == set()


def test_forwarded_for_appends_the_client_to_what_the_client_sent() -> None:
    out: list[tuple[bytes, bytes]] = []
    add_forwarded(out, b"10.0.0.1", "127.0.0.1", "https")
    assert out == [(b"x-forwarded-for", b"10.0.0.1, 127.0.0.1"), (b"x-forwarded-proto", b"https")]
    out = []
    add_forwarded(out, None, "::1", "http")
    assert out == [(b"x-forwarded-for", b"::1"), (b"x-forwarded-proto", b"http")]


def test_head_with_a_content_length_body_and_a_query() -> None:
    head, has_body = request_head("POST", b"/a b", b"x=1", [(b"host", b"h")], b"5", False)
    assert has_body
    assert head == b"POST /a b?x=1 HTTP/1.1\r\nhost: h\r\ncontent-length: 5\r\n\r\n"


def test_head_with_a_chunked_body_drops_the_length() -> None:
    head, has_body = request_head("PUT", b"/", b"", [], b"9", True)
    assert has_body
    assert head == b"PUT / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n"


def test_no_body_when_the_length_is_zero_or_absent() -> None:
    for length in (b"0", b" ", None):
        head, has_body = request_head("GET", b"/p", b"", [], length, False)
        assert not has_body
        assert head.startswith(b"GET /p HTTP/1.1\r\n")
    assert b"content-length: 0" in request_head("GET", b"/", b"", [], b"0", False)[0]
