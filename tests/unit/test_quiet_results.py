"""The runtime's quiet flag: a RESULT/ERROR frame says "q" only when its log pipe holds no unread byte."""

from __future__ import annotations

import os
import socket

from lamina.runtime.channel import Channel
from lamina.runtime.wire import KIND_ERROR, KIND_RESULT, FrameDecoder


def _channel() -> tuple[Channel, socket.socket, int, int]:
    ours, theirs = socket.socketpair()
    r, w = os.pipe()
    return Channel(theirs.detach(), w), ours, r, w


def _frame(sock: socket.socket) -> tuple[int, dict, bytes]:
    dec = FrameDecoder()
    frames = dec.feed(sock.recv(1 << 16))
    assert len(frames) == 1
    return frames[0]


def test_quiet_only_when_the_pipe_is_empty():
    ch, sock, r, w = _channel()
    try:
        ch.send_result(KIND_RESULT, "rid-1", 1234, b'{"ok":1}')
        assert _frame(sock) == (KIND_RESULT, {"id": "rid-1", "rss_kb": 1234, "q": 1}, b'{"ok":1}')

        os.write(w, b"written below Python, not yet read\n")  # as C code or a child process would
        ch.send_result(KIND_ERROR, "rid-2", 1, b"{}")
        kind, header, _ = _frame(sock)
        assert kind == KIND_ERROR and "q" not in header and header["id"] == "rid-2"

        assert os.read(r, 4096).startswith(b"written below")  # the server drained it
        ch.send_result(KIND_RESULT, "rid-3", 1, b"null")
        assert _frame(sock)[1].get("q") == 1
    finally:
        ch.close()
        sock.close()
        os.close(r)
        os.close(w)


def test_a_partial_unread_byte_is_not_quiet():
    ch, sock, r, w = _channel()
    try:
        os.write(w, b"x")
        assert ch.quiet() is False
        os.read(r, 1)
        assert ch.quiet() is True
    finally:
        ch.close()
        sock.close()
        os.close(r)
        os.close(w)


def test_unknown_or_closed_log_fd_is_never_quiet():
    ours, theirs = socket.socketpair()
    ch = Channel(theirs.detach())  # no log fd (e.g. a runtime started without a zygote)
    try:
        assert ch.quiet() is False
        ch.send_result(KIND_RESULT, "rid", 1, b"{}")
        assert "q" not in _frame(ours)[1]
    finally:
        ch.close()
        ours.close()
    ch, sock, r, w = _channel()
    os.close(w)  # the handler closed it
    try:
        assert ch.quiet() is False
        assert ch.log_fd == -1
    finally:
        ch.close()
        sock.close()
        os.close(r)


def test_request_ids_are_json_escaped():
    ch, sock, r, w = _channel()
    try:
        ch.send_result(KIND_RESULT, 'odd "id" \\ é', 5, b"")
        assert _frame(sock)[1]["id"] == 'odd "id" \\ é'
    finally:
        ch.close()
        sock.close()
        os.close(r)
        os.close(w)
