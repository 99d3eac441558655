"""The Python runtime's entry script as the sandbox runs it (`python -I -S python_handler.py`, the base interpreter,
nothing of Lamina importable): its modules load as the private package _lamina_runtime, the function sees none of
them under its own modules' names, and an invocation goes through (no server: the test is the other end)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import lamina.runtime.python_handler as entry
from lamina.runtime.wire import KIND_ERROR, KIND_INVOKE, KIND_READY, KIND_RESULT, Frame, FrameDecoder, encode_frame

APP = '''
import sys

def handler(event, context):
    if event.get("fail"):
        raise ValueError("asked to fail")
    import context as mine  # the function's own module named like one of the runtime's
    return {"mine": mine.WHO, "path0": sys.path[0], "lamina": sorted(m for m in sys.modules if "lamina" in m),
            "function": context.function_name}
'''


def _next(sock: socket.socket, decoder: FrameDecoder) -> Frame:
    while True:
        data = sock.recv(1 << 16)
        assert data, "the runtime closed its channel"
        frames = decoder.feed(data)
        if frames:
            assert len(frames) == 1
            return frames[0]


def test_the_entry_script_serves_a_channel(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "context.py").write_text("WHO = 'the function'\n")
    ours, theirs = socket.socketpair()
    python = getattr(sys, "_base_executable", None) or sys.executable
    env = {entry.CHANNEL_FD_ENV: str(theirs.fileno()), "_HANDLER": "app.handler", "LAMBDA_TASK_ROOT": str(tmp_path),
           "AWS_LAMBDA_FUNCTION_NAME": "fn"}
    proc = subprocess.Popen([python, "-I", "-S", entry.__file__], env=env, pass_fds=[theirs.fileno()],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    theirs.close()
    decoder = FrameDecoder()
    try:
        assert _next(ours, decoder)[0] == KIND_READY
        ours.sendall(encode_frame(KIND_INVOKE, {"id": "r-1", "deadline_ms": 2 ** 42, "arn": "arn:fn"}, b"{}"))
        kind, header, body = _next(ours, decoder)
        assert (kind, header["id"]) == (KIND_RESULT, "r-1")
        result = json.loads(body)
        assert result["mine"] == "the function"
        assert result["path0"] == str(tmp_path)
        assert result["function"] == "fn"
        assert result["lamina"] and all(name.partition(".")[0] == "_lamina_runtime" for name in result["lamina"])

        ours.sendall(encode_frame(KIND_INVOKE, {"id": "r-2", "deadline_ms": 2 ** 42, "arn": "arn:fn"},
                                  b'{"fail": true}'))
        kind, header, body = _next(ours, decoder)
        error = json.loads(body)
        assert (kind, error["errorType"], error["errorMessage"]) == (KIND_ERROR, "ValueError", "asked to fail")
        # Only the function's frames: none of the runtime's own files.
        assert len(error["stackTrace"]) == 1 and "app.py" in error["stackTrace"][0]
    finally:
        ours.close()
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert b"[ERROR] ValueError: asked to fail" in out
