"""Talking to an HTTP app: raw HTTP/1.1 over keep-alive connections from the server to one environment's app."""

from __future__ import annotations

import asyncio
import collections
from typing import cast

import httptools

BODY_HIGH_WATER = 1 << 20         # response bytes buffered from the app before reading pauses
BODY_LOW_WATER = 256 << 10


class AppError(Exception):
    """The app could not be reached, or did not answer properly (the client gets a 502)."""


class AppResponse:
    """One response read from an app connection: status and headers, then the body as it arrives."""

    def __init__(self, conn: AppConnection, head_only: bool) -> None:
        self.conn = conn
        self.head_only = head_only
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.keep_alive = False
        self.complete = False
        self.error: AppError | None = None
        self.received = False            # any byte of it arrived
        self._head: asyncio.Future = asyncio.get_running_loop().create_future()
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._paused = False
        self._wake: asyncio.Future | None = None
        self._until_close = False
        self.parser = httptools.HttpResponseParser(self)

    # httptools callbacks
    def on_message_begin(self) -> None:
        if self.complete:
            self.keep_alive = False  # a second response nobody asked for: the connection is not reusable
        elif not self._head.done():
            self.headers = []  # after an informational (1xx) response, the real one

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.complete:
            self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        if self.complete:
            return
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            return  # informational: the real response follows on the same parser
        self.status = status
        self.keep_alive = self.parser.should_keep_alive()
        names = {n for n, _ in self.headers}
        self._until_close = (b"content-length" not in names and b"transfer-encoding" not in names
                             and status not in (204, 304) and not self.head_only)
        if not self._head.done():
            self._head.set_result(None)
        if self.head_only:
            self._finish()

    def on_body(self, body: bytes) -> None:
        if self.complete:
            return
        self._chunks.append(body)
        self._size += len(body)
        if self._size > BODY_HIGH_WATER and not self._paused and self.conn.transport is not None:
            self._paused = True
            self.conn.transport.pause_reading()
        self._notify()

    def on_message_complete(self) -> None:
        if not self._head.done() and 100 <= self.parser.get_status_code() < 200:
            return
        self._finish()

    # feeding
    def feed(self, data: bytes) -> None:
        self.received = True
        if self.complete:
            if data.strip():
                self.keep_alive = False  # bytes nobody asked for: the connection is not reusable
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self.fail(AppError("the app switched protocols, which the proxy does not support"))
        except httptools.HttpParserError as exc:
            self.fail(AppError(f"the app sent an invalid HTTP response: {exc}"))

    def _finish(self) -> None:
        if not self.complete:
            self.complete = True
            self._notify()

    def lost(self, exc: Exception | None) -> None:
        if self.complete:
            return
        if self._head.done() and self._until_close and self.error is None:
            self.keep_alive = False
            self._finish()  # a body delimited by the end of the connection
            return
        what = "before it answered" if not self._head.done() else "in the middle of its response"
        self.fail(AppError(f"the app closed the connection {what}"))

    def fail(self, error: AppError) -> None:
        if self.complete or self.error is not None:
            return
        self.error = error
        self.keep_alive = False
        if not self._head.done():
            self._head.set_exception(error)
            self._head.exception()
        self._notify()

    def _notify(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    # reading
    async def head(self) -> None:
        await self._head

    async def next_chunk(self) -> bytes | None:
        """The next piece of the body, or None at its end; AppError if it broke off."""
        while not self._chunks:
            if self.complete:
                return None
            if self.error is not None:
                raise self.error
            self._wake = asyncio.get_running_loop().create_future()
            await self._wake
        chunk = self._chunks.popleft()
        while self._chunks and len(chunk) < 65536:  # small pieces go out together
            chunk += self._chunks.popleft()
        self._size -= len(chunk)
        if self._paused and self._size < BODY_LOW_WATER and self.conn.transport is not None:
            self._paused = False
            self.conn.transport.resume_reading()
        return chunk

    async def read_all(self, limit: int) -> bytes:
        parts, size = [], 0
        while (chunk := await self.next_chunk()) is not None:
            size += len(chunk)
            if size > limit:
                raise OverflowError(size)
            parts.append(chunk)
        return b"".join(parts)


class AppConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection from the server to the app in one environment."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.response: AppResponse | None = None
        self.closed = False
        self.idle_since = 0.0
        self._writable: asyncio.Future | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a stream's (asyncio types the argument as the base)
        self.transport.set_write_buffer_limits(high=256 << 10)

    def data_received(self, data: bytes) -> None:
        if self.response is not None:
            self.response.feed(data)
        else:
            self.close()  # nothing was asked: a confused app

    def eof_received(self) -> bool | None:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.response is not None:
            self.response.lost(exc)
        if self._writable is not None and not self._writable.done():
            self._writable.set_exception(AppError("the app closed the connection"))
            self._writable.exception()

    def pause_writing(self) -> None:
        self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    def begin(self, head: bytes, head_only: bool = False) -> AppResponse:
        """Send a request head; its response will arrive on the returned AppResponse."""
        if self.closed or self.transport is None:
            raise AppError("the connection to the app is closed")
        self.response = AppResponse(self, head_only)
        self.transport.write(head)
        return self.response

    async def write(self, data: bytes) -> None:
        if self.closed or self.transport is None:
            raise AppError("the app closed the connection")
        self.transport.write(data)
        if self._writable is not None:
            await self._writable

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
