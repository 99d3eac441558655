"""The real AWS runtime interface client (`python -m awslambdaric app.handler`, 4.x) against RuntimeApiServer.

No sandbox and no `lamina serve`: the server runs on this test's own event loop, on a listening socket
bound to 127.0.0.1, and the RIC process is the venv's python with AWS_LAMBDA_RUNTIME_API pointing at it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
import time
import uuid
from pathlib import Path

import pytest
import uvloop

from helpers import require_command
from lamina.dispatch.runtime_api import RuntimeApiServer
from lamina.runtime.wire import KIND_ERROR, KIND_INIT_ERROR, KIND_READY, KIND_RESULT

pytest.importorskip("awslambdaric")
pytestmark = pytest.mark.timeout(20)

ARN = "arn:aws:lambda:us-east-1:000000000000:function:ric-fn"

APP = '''
import os
import shutil

def handler(event, context):
    if "size" in event:
        return "x" * event["size"]
    if event.get("fail"):
        raise ValueError("boom: " + event["fail"])
    return {
        "echo": event,
        "request_id": context.aws_request_id,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "function_name": context.function_name,
        "function_version": context.function_version,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "invoked_function_arn": context.invoked_function_arn,
        "trace_env": os.environ.get("_X_AMZN_TRACE_ID"),
    }
'''


class QueueHost:
    def __init__(self) -> None:
        self.frames: asyncio.Queue[tuple[int, dict, bytes]] = asyncio.Queue()

    def on_frame(self, kind: int, header: dict, body: bytes) -> None:
        self.frames.put_nowait((kind, header, body))

    async def next(self, timeout: float = 4.0) -> tuple[int, dict, bytes]:
        return await asyncio.wait_for(self.frames.get(), timeout)


class Relay:
    """A TCP relay between the RIC and the Runtime API server that records what each side sent, in order."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.log: list[tuple[str, bytes]] = []  # ("ric" | "api", bytes) as the relay read them
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    def close(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _connection(self, ric_r: asyncio.StreamReader, ric_w: asyncio.StreamWriter) -> None:
        api_r, api_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        await asyncio.gather(self._pipe(ric_r, api_w, "ric"), self._pipe(api_r, ric_w, "api"))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, who: str) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(1 << 16):
                self.log.append((who, data))
                writer.write(data)
                await writer.drain()
        writer.close()

    def expect_continue(self, marker: bytes) -> tuple[bool, bool]:
        """For the one request whose head contains marker: (it sent `Expect: 100-continue`, the server's
        `100 Continue` reached the relay before the first byte of the request's body)."""
        sent = b""
        head_end = None
        expect = answered = False
        for who, data in self.log:
            if who == "api":
                answered = answered or (head_end is not None and b" 100 Continue\r\n" in data)
                continue
            sent += data
            if head_end is None:
                at = sent.find(marker)
                end = sent.find(b"\r\n\r\n", at)
                if at >= 0 and end >= 0:
                    expect = b"\r\nexpect: 100-continue" in sent[at:end].lower()
                    head_end = end + 4
            if head_end is not None and len(sent) > head_end:
                return expect, answered
        raise AssertionError(f"no request with {marker!r} and a body went through the relay")


@contextlib.asynccontextmanager
async def ric(tmp_path: Path, app_source: str, relay: bool = False):
    """(host, server, process, relay): the RIC running app.handler against a fresh RuntimeApiServer, through
    a Relay if asked (else None)."""
    (tmp_path / "app.py").write_text(app_source)
    host = QueueHost()
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = RuntimeApiServer(host, sock, function_name="ric-fn", function_version="$LATEST", handler="app.handler")
    await server.start()
    between = Relay(port) if relay else None
    if between is not None:
        port = await between.start()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}",
        "AWS_LAMBDA_FUNCTION_NAME": "ric-fn",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/ric-fn",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2024/01/01/[$LATEST]0123456789abcdef",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "_HANDLER": "app.handler",
        "LAMBDA_TASK_ROOT": str(tmp_path),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    log = open(tmp_path / "ric.log", "wb")  # noqa: SIM115 - closed below, after the process
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "awslambdaric", "app.handler", cwd=tmp_path,
                                                env=env, stdin=asyncio.subprocess.DEVNULL, stdout=log,
                                                stderr=asyncio.subprocess.STDOUT)
    try:
        yield host, server, proc, between
    finally:
        if between is not None:
            between.close()
        server.close()
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        log.close()


def _output(tmp_path: Path) -> str:
    return (tmp_path / "ric.log").read_text(errors="replace")[-4000:]


def test_ric_results_errors_and_context(tmp_path: Path) -> None:
    async def main() -> None:
        async with ric(tmp_path, APP) as (host, server, _proc, _):
            kind, _, _ = await host.next()
            assert kind == KIND_READY, _output(tmp_path)

            for i in range(3):  # several invocations on the RIC's one keep-alive connection
                rid = str(uuid.uuid4())
                deadline = int(time.time() * 1000) + 30000
                server.deliver({"id": rid, "deadline_ms": deadline, "arn": ARN,
                                "trace_id": f"Root=1-{i:08x}-abc;Parent=def;Sampled=1"},
                               json.dumps({"n": i}).encode())
                kind, header, body = await host.next()
                assert (kind, header) == (KIND_RESULT, {"id": rid}), (body, _output(tmp_path))
                out = json.loads(body)
                assert out["echo"] == {"n": i}
                assert out["request_id"] == rid
                assert 25000 < out["remaining_ms"] <= 30000
                assert out["function_name"] == "ric-fn" and out["function_version"] == "$LATEST"
                assert out["memory_limit_in_mb"] == "256"
                assert out["invoked_function_arn"] == ARN
                assert out["trace_env"] == f"Root=1-{i:08x}-abc;Parent=def;Sampled=1"

            rid = str(uuid.uuid4())
            server.deliver({"id": rid, "deadline_ms": int(time.time() * 1000) + 3000, "arn": ARN},
                           b'{"fail": "kaboom"}')
            kind, header, body = await host.next()
            assert kind == KIND_ERROR, (body, _output(tmp_path))
            # awslambdaric 4.x sends no Lambda-Runtime-Function-Error-Type: the type comes from the body.
            assert header == {"id": rid, "error_type": "ValueError"}
            err = json.loads(body)
            assert err["errorType"] == "ValueError" and err["errorMessage"] == "boom: kaboom"
            assert err["requestId"] == rid and isinstance(err["stackTrace"], list)

            # Still serving after a handler error.
            rid = str(uuid.uuid4())
            server.deliver({"id": rid, "deadline_ms": int(time.time() * 1000) + 3000, "arn": ARN}, b"{}")
            kind, header, body = await host.next()
            assert (kind, header) == (KIND_RESULT, {"id": rid})

    uvloop.run(main())


@pytest.mark.parametrize(("source", "error_type", "message"), [
    ("raise RuntimeError('init went wrong')\n", "RuntimeError", "init went wrong"),
    ("import no_such_module_here\n", "Runtime.ImportModuleError", "Unable to import module 'app'"),
])
def test_ric_init_error(tmp_path: Path, source: str, error_type: str, message: str) -> None:
    async def main() -> None:
        async with ric(tmp_path, source) as (host, _server, proc, _):
            kind, header, body = await host.next()
            assert kind == KIND_INIT_ERROR, (body, _output(tmp_path))
            assert header == {}
            err = json.loads(body)
            assert err["errorType"] == error_type, err
            assert message in err["errorMessage"], err
            # The RIC gives up after reporting it.
            rc = await asyncio.wait_for(proc.wait(), 4)
            assert rc != 0, _output(tmp_path)
            assert host.frames.empty()

    uvloop.run(main())


def test_ric_large_response_and_over_limit(tmp_path: Path) -> None:
    async def main() -> None:
        async with ric(tmp_path, APP, relay=True) as (host, server, proc, relay):
            assert (await host.next())[0] == KIND_READY, _output(tmp_path)
            # 3 MB: libcurl's POST must not stall (a request with `Expect: 100-continue` has its 100 Continue
            # before the client sends the body; awslambdaric 4.x sends none) and arrives whole.
            server.deliver({"id": "big", "deadline_ms": int(time.time() * 1000) + 5000, "arn": ARN},
                           b'{"size": 3000000}')
            kind, header, body = await host.next()
            assert (kind, header, len(body)) == (KIND_RESULT, {"id": "big"}, 3000002)
            expect, answered = relay.expect_continue(b"POST /2018-06-01/runtime/invocation/big/response ")
            assert answered or not expect, "the RIC was left waiting for a 100 Continue"
            # Over 6 MB: 413 to the RIC, Function.ResponseSizeTooLarge for the invocation; the RIC then exits.
            server.deliver({"id": "huge", "deadline_ms": int(time.time() * 1000) + 5000, "arn": ARN},
                           b'{"size": 7000000}')
            kind, header, body = await host.next()
            assert (kind, header) == (KIND_ERROR, {"id": "huge", "error_type": "Function.ResponseSizeTooLarge"})
            assert json.loads(body)["errorType"] == "Function.ResponseSizeTooLarge"
            assert await asyncio.wait_for(proc.wait(), 4) != 0
            assert "413" in _output(tmp_path)

    uvloop.run(main())


BOOTSTRAP = r"""#!/bin/bash
# The AWS tutorial's shell runtime: every call is a fresh curl connection.
set -euo pipefail
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
while true; do
  HEADERS="$(mktemp)"
  EVENT=$(curl -sS -LD "$HEADERS" "$API/invocation/next")
  REQUEST_ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)
  if [[ "$EVENT" == *fail* ]]; then
    curl -sS -o /dev/null -X POST "$API/invocation/$REQUEST_ID/error" \
      -H "Lambda-Runtime-Function-Error-Type: Shell.Failed" -d "shell says no"
  elif [[ "$EVENT" == *big* ]]; then
    # Over curl's threshold (1 MB): curl sends `Expect: 100-continue` and waits for the answer.
    BODY="$(mktemp)"
    { printf '{"got": "'; head -c 2000000 /dev/zero | tr '\0' x; printf '"}'; } > "$BODY"
    curl -sS -o /dev/null -X POST "$API/invocation/$REQUEST_ID/response" --data-binary @"$BODY"
  else
    curl -sS -o /dev/null -X POST "$API/invocation/$REQUEST_ID/response" -d "{\"got\": $EVENT}"
  fi
done
"""


def test_curl_bootstrap_runtime(tmp_path: Path) -> None:
    require_command("curl", "apt-get install curl")
    async def main() -> None:
        (tmp_path / "bootstrap").write_text(BOOTSTRAP)
        (tmp_path / "bootstrap").chmod(0o755)
        host = QueueHost()
        sock = socket.create_server(("127.0.0.1", 0))
        server = RuntimeApiServer(host, sock, function_name="sh", function_version="1", handler="function.handler")
        await server.start()
        relay = Relay(sock.getsockname()[1])
        port = await relay.start()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{port}"}
        proc = await asyncio.create_subprocess_exec(str(tmp_path / "bootstrap"), cwd=tmp_path, env=env,
                                                    stdin=asyncio.subprocess.DEVNULL)
        try:
            assert (await host.next())[0] == KIND_READY
            for i in range(3):
                server.deliver({"id": f"sh-{i}", "deadline_ms": int(time.time() * 1000) + 5000, "arn": ARN},
                               json.dumps({"i": i}).encode())
                kind, header, body = await host.next()
                assert (kind, header, json.loads(body)) == (KIND_RESULT, {"id": f"sh-{i}"}, {"got": {"i": i}})
            server.deliver({"id": "sh-f", "deadline_ms": int(time.time() * 1000) + 5000, "arn": ARN}, b'"fail"')
            kind, header, body = await host.next()
            assert (kind, header) == (KIND_ERROR, {"id": "sh-f", "error_type": "Shell.Failed"})
            assert json.loads(body) == {"errorMessage": "shell says no", "errorType": "Shell.Failed"}
            # A 2 MB response: curl's 100-continue is answered before it sends the body.
            server.deliver({"id": "sh-big", "deadline_ms": int(time.time() * 1000) + 5000, "arn": ARN}, b'"big"')
            kind, header, body = await host.next()
            assert (kind, header, json.loads(body)) == (KIND_RESULT, {"id": "sh-big"}, {"got": "x" * 2000000})
            assert relay.expect_continue(b"POST /2018-06-01/runtime/invocation/sh-big/response ") == (True, True)
            await asyncio.sleep(0.05)
            assert host.frames.empty()  # the answered invocation is not offered again
        finally:
            relay.close()
            server.close()
            if proc.returncode is None:
                proc.kill()
            await proc.wait()

    uvloop.run(main())
