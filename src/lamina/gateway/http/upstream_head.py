"""The HTTP/1.1 request head the gateway's proxies send upstream (a function's HTTP app, a MicroVM's
port): the pieces both build the same way, the forwarding headers and the body's framing."""

from __future__ import annotations


def connection_listed(headers: list[tuple[bytes, bytes]]) -> set[bytes]:
    """Header names a Connection header declares hop-by-hop (not to be forwarded)."""
    out: set[bytes] = set()
    for name, value in headers:
        if name == b"connection":
            out.update(token.strip().lower() for token in value.split(b","))
    return out


def add_forwarded(out: list[tuple[bytes, bytes]], forwarded_for: bytes | None, client_ip: str, scheme: str) -> None:
    """X-Forwarded-For (the client's own value, if any, then the client's address) and X-Forwarded-Proto."""
    out.append((b"x-forwarded-for", (forwarded_for + b", " if forwarded_for else b"") + client_ip.encode()))
    out.append((b"x-forwarded-proto", scheme.encode()))


def request_head(method: str, path: bytes, query: bytes, out: list[tuple[bytes, bytes]], length: bytes | None,
                 chunked: bool) -> tuple[bytes, bool]:
    """(the request line and `out`'s headers with the body's framing header added, whether a body follows).
    The body is chunked as the client sent it, or as long as its Content-Length says."""
    has_body = chunked or (length is not None and length.strip() not in (b"", b"0"))
    if chunked:
        out.append((b"transfer-encoding", b"chunked"))
    elif length is not None:
        out.append((b"content-length", length))
    target = path + (b"?" + query if query else b"")
    head = b"%s %s HTTP/1.1\r\n%s\r\n" % (method.encode("latin-1"), target,
                                          b"".join(k + b": " + v + b"\r\n" for k, v in out))
    return head, has_body
