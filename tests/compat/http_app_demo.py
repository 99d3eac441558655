#!/usr/bin/python3
"""lambda-dispatch's demo app (spec/dispatch.md §4.4), re-implemented with the standard library only.

Shipped as the `bootstrap` of HTTP-app test functions: it listens on 127.0.0.1:$AWS_LWA_PORT (else
$PORT, else 8080), serves HTTP/1.1 keep-alive with a thread per connection, and answers 503 on every
route until its simulated init (INIT_SLEEP_MS) is over, counting the requests that came too early.
Beyond the demo's contract, for tests that check order rather than time: /stats says when /health
first answered 200 (`ready_at`, wall clock), and a request may wait on a named gate that another
request to the same environment opens (/open-gate?gate=NAME).
"""

import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

PORT = int(os.environ.get("AWS_LWA_PORT") or os.environ.get("PORT") or 8080)
INIT_SLEEP_MS = int(os.environ.get("INIT_SLEEP_MS") or 0)
ENV_ID = os.urandom(8).hex()
READY = threading.Event()
LOCK = threading.Lock()
STATS = {"early": 0, "in_flight": 0, "max_in_flight": 0, "requests": 0, "ready_at": None}
GATES: dict = {}
GATE_WAIT_S = 30
CHUNK = 64 * 1024


def _gate(name: str) -> threading.Event:
    with LOCK:
        return GATES.setdefault(name, threading.Event())


def _init() -> None:
    time.sleep(INIT_SLEEP_MS / 1000)
    READY.set()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):
        if os.environ.get("ACCESS_LOG"):
            print(fmt % args, flush=True)

    # ------------------------------------------------------------------ helpers

    def body_chunks(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return
                left = size
                while left:
                    data = self.rfile.read(min(left, CHUNK))
                    if not data:
                        return
                    left -= len(data)
                    yield data
                self.rfile.readline()
        left = int(self.headers.get("Content-Length") or 0)
        while left > 0:
            data = self.rfile.read(min(left, CHUNK))
            if not data:
                return
            left -= len(data)
            yield data

    def reply(self, status: int, body: bytes, ctype: str = "text/plain", headers=(), reason=None) -> None:
        self.send_response(status, reason)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def start_chunked(self, status: int = 200, ctype: str = "application/octet-stream") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def end_chunks(self) -> None:
        self.wfile.write(b"0\r\n\r\n")

    def json(self, doc, status: int = 200) -> None:
        self.reply(status, json.dumps(doc).encode(), "application/json")

    # ------------------------------------------------------------------ routes

    def route(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        path = url.path
        if path == "/health":
            if READY.is_set():
                with LOCK:
                    STATS["ready_at"] = STATS["ready_at"] or time.time()
                self.reply(200, b"OK")
            else:
                self.reply(503, b"initialising")
            return
        if path == "/health-quick":
            self.reply(200, b"OK")
            return
        with LOCK:
            STATS["requests"] += 1
            if not READY.is_set():
                STATS["early"] += 1
        if not READY.is_set():
            self.reply(503, b"not ready")
            return
        with LOCK:
            STATS["in_flight"] += 1
            STATS["max_in_flight"] = max(STATS["max_in_flight"], STATS["in_flight"])
        try:
            getattr(self, "r_" + path.strip("/").replace("-", "_"), self.r_not_found)(query)
        finally:
            with LOCK:
                STATS["in_flight"] -= 1

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = route

    def r_not_found(self, query) -> None:
        for _ in self.body_chunks():
            pass
        self.reply(404, b"no such route")

    def r_ping(self, query) -> None:
        self.reply(200, b"pong")

    def r_headers(self, query) -> None:
        self.json([[k.lower(), v] for k, v in self.headers.items()])

    def r_debug(self, query) -> None:
        size = sum(len(c) for c in self.body_chunks())
        self.json({"method": self.command, "target": self.path, "body_len": size,
                   "headers": [[k.lower(), v] for k, v in self.headers.items()]})

    def r_stats(self, query) -> None:
        with LOCK:
            self.json(dict(STATS, env=ENV_ID, pid=os.getpid()))

    def r_delay(self, query) -> None:
        delay = int(query.get("delay", ["20"])[0])
        start = time.time()
        time.sleep(delay / 1000)
        with LOCK:
            peak = STATS["max_in_flight"]
        self.json({"message": f"Delayed for {delay} ms", "env": ENV_ID, "start": start, "end": time.time(),
                   "max_in_flight": peak})

    def r_chunked_response(self, query) -> None:
        """The first chunk, then after delay_ms (or once gate=NAME is opened) the last one; a gate that is
        not opened within GATE_WAIT_S ends the response with GATE NEVER OPENED instead."""
        self.start_chunked(ctype="text/plain")
        self.chunk(b"INITIAL PAYLOAD RESPONSE\n")
        if "gate" in query:
            opened = _gate(query["gate"][0]).wait(GATE_WAIT_S)
            self.chunk(b"FINAL PAYLOAD RESPONSE\n" if opened else b"GATE NEVER OPENED\n")
        else:
            time.sleep(int(query.get("delay_ms", ["5000"])[0]) / 1000)
            self.chunk(b"FINAL PAYLOAD RESPONSE\n")
        self.end_chunks()

    def r_open_gate(self, query) -> None:
        _gate(query["gate"][0]).set()
        self.reply(200, b"opened")

    def _echo(self, transform) -> None:
        ctype = self.headers.get("Content-Type", "application/octet-stream")
        length = self.headers.get("Content-Length")
        if length is not None and transform is None:
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", length)
            self.end_headers()
            for data in self.body_chunks():
                self.wfile.write(data)
            return
        self.start_chunked(ctype=ctype)
        for data in self.body_chunks():
            self.chunk(transform(data) if transform else data)
        self.end_chunks()

    def r_echo(self, query) -> None:
        self._echo(None)

    def r_double_echo(self, query) -> None:
        self._echo(lambda data: data + data)

    def r_half_echo(self, query) -> None:
        self._echo(lambda data: data[: len(data) // 2])

    def r_bytes(self, query) -> None:
        """`size` bytes of a repeating pattern, with a Content-Length, written 1 MiB at a time."""
        size = int(query.get("size", ["0"])[0])
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        block = bytes(range(256)) * 4096
        while size > 0:
            self.wfile.write(block[: min(size, len(block))])
            size -= len(block)

    def r_odd_status(self, query) -> None:
        self.reply(519, b"I'm a teapot", reason="I'm a teapot")

    def r_cookies(self, query) -> None:
        self.reply(200, b"cookies", headers=[("Set-Cookie", "a=1; Path=/"), ("Set-Cookie", "b=2; HttpOnly"),
                                             ("Set-Cookie", "c=3; Max-Age=60"), ("X-Multi", "one"),
                                             ("X-Multi", "two")])

    def r_crash(self, query) -> None:
        time.sleep(int(query.get("after_ms", ["0"])[0]) / 1000)
        os._exit(3)

    def r_events(self, query) -> None:
        body = b"".join(self.body_chunks())
        self.json({"passthrough": json.loads(body or b"null"), "content_type": self.headers.get("Content-Type")})


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    threading.Thread(target=_init, daemon=True).start()
    server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    server.daemon_threads = True
    print(f"demo app listening on 127.0.0.1:{PORT} (pid {os.getpid()})", flush=True)
    sys.stdout.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
