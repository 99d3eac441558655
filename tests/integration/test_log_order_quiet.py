"""Log lines written below Python (os.write / libc write(2) on fd 1 and 2, a child process's output, a partial
line) land in the right invocation, between its START and END, also now that the server skips draining the log
pipe when the runtime reports it empty ("quiet" results). Runs many invocations back to back, alternating
silent ones (the quiet path) with ones that write, so a skipped drain would show as a mark in the wrong place."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request

import pytest

from helpers import decode_log, invoke, request_id

pytestmark = pytest.mark.timeout(120)

HANDLER = '''
import ctypes, os, subprocess, sys

libc = ctypes.CDLL(None)


def handler(event, context):
    mark = event.get("mark")
    how = event.get("how")
    if how == "oswrite":
        os.write(1, ("OSWRITE-1 %s\\n" % mark).encode())
        os.write(2, ("OSWRITE-2 %s\\n" % mark).encode())
    elif how == "libc":
        data = ("LIBC %s\\n" % mark).encode()
        libc.write(1, data, len(data))
    elif how == "child":
        subprocess.run(["/bin/sh", "-c", "echo CHILD " + mark], check=True)
    elif how == "redirected":
        # The handler points fd 1 elsewhere for a moment: what it wrote before still counts.
        os.write(1, ("BEFORE-REDIRECT %s\\n" % mark).encode())
        saved = os.dup(1)
        null = os.open("/dev/null", os.O_WRONLY)
        os.dup2(null, 1)
        os.write(1, b"to /dev/null\\n")
        os.dup2(saved, 1)
        os.close(saved)
        os.close(null)
    elif how == "partial":
        sys.stdout.write("PARTIAL %s" % mark)  # no newline
    return {"mark": mark}
'''

KINDS = {"oswrite": ["OSWRITE-1", "OSWRITE-2"], "libc": ["LIBC"], "child": ["CHILD"],
         "redirected": ["BEFORE-REDIRECT"], "partial": ["PARTIAL"], "silent": []}


def _between(lines: list[str], rid: str, needle: str) -> bool:
    start = next(i for i, line in enumerate(lines) if f"START RequestId: {rid}" in line)
    end = next(i for i, line in enumerate(lines) if f"END RequestId: {rid}" in line)
    return any(needle in line for line in lines[start + 1 : end])


def test_writes_below_python_stay_in_their_invocation(lambda_client, functions, endpoint):
    name = functions({"app.py": HANDLER})
    order = ["silent", "oswrite", "silent", "libc", "silent", "silent", "child", "redirected", "silent",
             "partial", "silent", "oswrite", "libc", "silent"] * 3
    seen: list[tuple[str, str, str]] = []
    for i, how in enumerate(order):
        mark = f"m{i}-{how}"
        resp, body = invoke(lambda_client, name, {"mark": mark, "how": how}, LogType="Tail")
        assert resp["StatusCode"] == 200 and "FunctionError" not in resp and body == {"mark": mark}
        rid = request_id(resp)
        lines = [line for line in decode_log(resp).splitlines() if line.strip()]
        for prefix in KINDS[how]:
            assert _between(lines, rid, f"{prefix} {mark}"), (how, mark, lines)
        # Nothing of an earlier invocation leaks into this one.
        for other_how, other_mark, _ in seen:
            if other_how != "silent":
                assert not any(other_mark in line for line in lines), (other_mark, lines)
        seen.append((how, mark, rid))

    # The function's stored log has every mark inside its own invocation, in order.
    url = f"{endpoint}/lamina/v1/functions/{urllib.parse.quote(name)}/logs?start_time=0&follow=false"
    deadline = time.monotonic() + 10
    while True:
        with urllib.request.urlopen(url, timeout=10) as r:
            messages = [json.loads(line)["message"] for line in r.read().decode().splitlines() if line.strip()]
        if any(f"END RequestId: {seen[-1][2]}" in m for m in messages) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    for how, mark, rid in seen:
        for prefix in KINDS[how]:
            assert _between(messages, rid, f"{prefix} {mark}"), (how, mark)
