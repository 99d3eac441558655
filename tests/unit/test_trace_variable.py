"""_X_AMZN_TRACE_ID per invocation without glibc's setenv keeping every value (the runtime's TraceVariable)."""

import subprocess
import sys
from pathlib import Path

import lamina.runtime.trace_variable as runtime

SCRIPT = r"""
import os, subprocess, sys
sys.path.insert(0, sys.argv[1])
import trace_variable

def rss_kb():
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0])

def child_sees():
    return subprocess.run(["sh", "-c", 'printf %s "$_X_AMZN_TRACE_ID"'], capture_output=True, text=True).stdout

trace = trace_variable.TraceVariable()
trace.set("Root=1-first")
assert os.environ["_X_AMZN_TRACE_ID"] == "Root=1-first" == child_sees()
before = rss_kb()
for i in range(100_000):
    trace.set("Root=1-%08x-%024x" % (i, i))
grown = rss_kb() - before
last = "Root=1-%08x-%024x" % (i, i)
assert os.environ["_X_AMZN_TRACE_ID"] == last == child_sees()
os.environ["_X_AMZN_TRACE_ID"] = "set by the handler"
trace.set("Root=1-after-the-handler")
assert os.environ["_X_AMZN_TRACE_ID"] == "Root=1-after-the-handler" == child_sees()
del os.environ["_X_AMZN_TRACE_ID"]
trace.set("Root=1-" + "x" * 600)
assert os.environ["_X_AMZN_TRACE_ID"] == "Root=1-" + "x" * 600 == child_sees()
print(grown)
"""


def test_trace_variable_reaches_children_and_does_not_grow_memory():
    here = str(Path(runtime.__file__).parent)
    out = subprocess.run([sys.executable, "-c", SCRIPT, here], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    # os.environ[...] = value (setenv) grows by ~110 bytes a call: ~11 MB for these 100,000 values.
    assert int(out.stdout) < 2048
