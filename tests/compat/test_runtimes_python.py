"""The Python version a function asks for is the one it runs on: python3.X on a Python 3.X interpreter found on the
host (each version's zygote its own), the runtime's features on every version, an absent version refused at
CreateFunction with how to install one, and the interpreters reported by health and `lamina runtimes`.

Each python3.X runs if this machine has that interpreter, else is skipped with the reason the server gives."""

from __future__ import annotations

import base64
import json
import os

import pytest

from helpers import (
    cmdline,
    create_function,
    descendants,
    failure,
    health,
    invoke,
    make_zip,
    run_lamina,
    unique_name,
)
from lamina.sandbox.interpreters import PYTHON_RUNTIMES

pytestmark = pytest.mark.timeout(180)

HANDLER = '''\
import logging, os, subprocess, sys


def handler(event, context):
    logging.getLogger().warning("running on %s", sys.version.split()[0])
    if event.get("fail"):
        raise KeyError("no such key")
    if event.get("sub"):
        # `python3` on PATH is the function's own interpreter, as /var/lang/bin/python3 is on AWS.
        out = subprocess.run(["python3", "-c", "import sys; print(sys.version_info[:2])"], capture_output=True,
                             text=True)
        return {"sub": out.stdout.strip(), "err": out.stderr[-500:]}
    return {"version": list(sys.version_info[:2]), "executable": sys.executable, "path0": sys.path[0],
            "task_root": os.environ["LAMBDA_TASK_ROOT"],
            "exec_env": os.environ["AWS_EXECUTION_ENV"], "remaining": context.get_remaining_time_in_millis(),
            "request_id": context.aws_request_id}
'''


@pytest.fixture(scope="module")
def runtimes(endpoint: str) -> dict:
    return health(endpoint)["runtimes"]


def _need(runtimes: dict, runtime: str) -> dict:
    if runtime not in runtimes["available"]:
        pytest.skip(f"{runtime} is not on this machine: {runtimes['missing'].get(runtime, '')}")
    return runtimes["available"][runtime]


@pytest.mark.parametrize("runtime", PYTHON_RUNTIMES)
def test_the_function_runs_on_the_python_it_asks_for(lambda_client, functions, runtimes: dict, runtime: str) -> None:
    interp = _need(runtimes, runtime)
    minor = int(runtime.split(".")[1])
    name = functions({"app.py": HANDLER}, prefix="py", Runtime=runtime)
    resp, body = invoke(lambda_client, name, {}, LogType="Tail")
    assert "FunctionError" not in resp, body
    assert body["version"] == [3, minor], body
    assert body["exec_env"] == f"AWS_Lambda_{runtime}" and body["path0"] == body["task_root"] and body["remaining"] > 0
    assert os.path.basename(body["executable"]) == os.path.basename(interp["executable"]), (body, interp)
    log = base64.b64decode(resp["LogResult"]).decode()
    assert f"running on {interp['version']}" in log and body["request_id"] in log, log
    # An error, as AWS's Python runtime reports it, on this version too.
    resp, err = invoke(lambda_client, name, {"fail": True})
    assert resp["FunctionError"] == "Unhandled"
    assert err["errorType"] == "KeyError" and err["errorMessage"] == "'no such key'", err
    assert any('app.py", line' in frame for frame in err["stackTrace"]), err
    resp, sub = invoke(lambda_client, name, {"sub": True})
    assert "FunctionError" not in resp and sub["sub"] == f"(3, {minor})", sub


def test_each_version_has_its_own_zygote(lamina_server, lambda_client, functions, runtimes: dict) -> None:
    present = [rt for rt in PYTHON_RUNTIMES if rt in runtimes["available"]]
    if len(present) < 2:
        pytest.skip(f"needs two Python versions on this machine, has {present}")
    names = {rt: functions({"app.py": HANDLER}, prefix="pz", Runtime=rt) for rt in present[:2]}
    for rt, name in names.items():
        body = invoke(lambda_client, name, {})[1]
        assert body["version"] == [3, int(rt.split(".")[1])], body
    # The server's runtime processes (zygotes and their forks) run python_handler.py on each version's interpreter.
    interpreters = {cmdline(pid).split(b"\0")[0].decode() for pid in descendants(lamina_server.pid)
                    if b"python_handler.py" in cmdline(pid)}
    for rt in names:
        assert runtimes["available"][rt]["executable"] in interpreters, (rt, interpreters)


def test_an_absent_version_is_refused_at_create_with_how_to_install_it(lambda_client, runtimes: dict) -> None:
    absent = [rt for rt in PYTHON_RUNTIMES if rt not in runtimes["available"]]
    if not absent:
        pytest.skip("every python3.X Lamina knows is installed on this machine")
    runtime = absent[-1]
    version = runtime[len("python"):]
    status, code, message = failure(lambda_client.create_function, FunctionName=unique_name("abs"),
                                    Runtime=runtime, Role="arn:aws:iam::000000000000:role/lamina",
                                    Handler="app.handler", Code={"ZipFile": make_zip({"app.py": HANDLER})})
    assert (status, code) == (400, "InvalidParameterValueException"), message
    assert f"The runtime {runtime} is not available on this Lamina host" in message
    assert f"uv python install {version}" in message and "LAMINA_RUNTIME_PATHS" in message, message


def test_changing_to_an_absent_version_is_refused(lambda_client, functions, runtimes: dict) -> None:
    absent = [rt for rt in PYTHON_RUNTIMES if rt not in runtimes["available"]]
    if not absent:
        pytest.skip("every python3.X Lamina knows is installed on this machine")
    name = functions({"app.py": HANDLER}, prefix="chg")
    status, code, message = failure(lambda_client.update_function_configuration, FunctionName=name,
                                    Runtime=absent[0])
    assert (status, code) == (400, "InvalidParameterValueException") and "Install one" in message, message


def test_python38_is_deprecated_as_on_aws(lambda_client) -> None:
    status, code, message = failure(lambda_client.create_function, FunctionName=unique_name("old"),
                                    Runtime="python3.8", Role="arn:aws:iam::000000000000:role/lamina",
                                    Handler="app.handler", Code={"ZipFile": make_zip({"app.py": HANDLER})})
    assert (status, code) == (400, "InvalidParameterValueException")
    assert "python3.8 is no longer supported" in message, message


def test_a_configured_interpreter_is_used(lamina_factory, runtimes: dict, tmp_path) -> None:
    """runtime_paths names the interpreter: a symlink of our own to one that exists here."""
    present = [rt for rt in PYTHON_RUNTIMES if rt in runtimes["available"]]
    if not present:
        pytest.skip("no Python interpreter found on this machine")
    runtime = present[0]
    link = tmp_path / "bin" / "mypython"
    link.parent.mkdir()
    link.symlink_to(runtimes["available"][runtime]["executable"])
    server = lamina_factory(env={"LAMINA_RUNTIME_PATHS": f"{runtime}={link}"})
    mine = health(server.endpoint)["runtimes"]["available"][runtime]
    assert mine["source"] == "configured" and mine["executable"] == runtimes["available"][runtime]["executable"]
    client = server.client()
    name = unique_name("cfg")
    create_function(client, name, {"app.py": HANDLER}, Runtime=runtime)
    resp, body = invoke(client, name, {})
    assert "FunctionError" not in resp and body["version"] == [3, int(runtime.split(".")[1])], body


def test_lamina_runtimes_lists_what_this_host_can_run(endpoint: str, runtimes: dict) -> None:
    result = run_lamina(endpoint, "runtimes", "--json")
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    assert set(listed["available"]) == set(runtimes["available"])
    assert set(listed["missing"]) == set(runtimes["missing"])
    table = run_lamina(endpoint, "runtimes")
    assert table.returncode == 0, table.stderr
    for runtime, interp in runtimes["available"].items():
        assert runtime in table.stdout and interp["executable"] in table.stdout
    for runtime in runtimes["missing"]:
        assert runtime in table.stdout
    assert "provided.al2023" in table.stdout
