"""What an environment gets to call Lamina's services (dispatch/service_access.py): the endpoint, credentials issued
for the function's role and ARN, and the SDK copy its Python can run (the newest one not above its version)."""

from __future__ import annotations

from pathlib import Path

from lamina.dispatch.service_access import CREDENTIALS_SECONDS, ServiceAccess
from lamina.dispatch.spec import FunctionSpec
from lamina.runtime.startup import SDK_PATH_ENV
from lamina.sandbox.interpreters import Interpreter
from lamina.sandbox.process import ProcessBackend

ARN = "arn:aws:lambda:us-east-1:123456789012:function:f"


class Issuer:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def issue(self, account: str, role: str, function_arn: str, seconds: float = 0.0,
              now: float | None = None) -> dict[str, str | int]:
        self.calls.append((account, role, function_arn, seconds))
        return {"AWS_ACCESS_KEY_ID": "ASIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "s", "AWS_SESSION_TOKEN": "t",
                "Expiration": 0}


def spec(runtime: str, tmp: Path) -> FunctionSpec:
    return FunctionSpec("f", ARN, "$LATEST", runtime, "app.handler", 128, 3, tmp, "sha", role="arn:aws:iam::1:role/r")


def python(minor: int) -> Interpreter:
    return Interpreter(f"python3.{minor}", f"3.{minor}.1", f"/usr/bin/python3.{minor}", "/usr", "system")


def test_endpoint_and_credentials_for_the_function(tmp_path: Path) -> None:
    issuer = Issuer()
    access = ServiceAccess(endpoint="http://127.0.0.1:8800", credentials=issuer)
    env = access.environment(spec("nodejs20.x", tmp_path), ProcessBackend(), None)
    assert env == {"AWS_ENDPOINT_URL": "http://127.0.0.1:8800", "AWS_ACCESS_KEY_ID": "ASIAEXAMPLE",
                   "AWS_SECRET_ACCESS_KEY": "s", "AWS_SESSION_TOKEN": "t"}
    assert issuer.calls == [("123456789012", "arn:aws:iam::1:role/r", ARN, CREDENTIALS_SECONDS)]
    assert access.expires_at() is not None
    assert ServiceAccess().expires_at() is None and ServiceAccess().environment(
        spec("python3.12", tmp_path), ProcessBackend(), python(12)) == {}


def test_each_python_gets_the_newest_sdk_copy_not_above_its_version(tmp_path: Path) -> None:
    sdk = tmp_path / "sdk"
    for version in ("3.9", "3.10", "3.13"):
        (sdk / "python" / version).mkdir(parents=True)
    access = ServiceAccess(sdk_dir=sdk)
    backend = ProcessBackend()
    got = {minor: access.environment(spec(f"python3.{minor}", tmp_path), backend, python(minor)).get(SDK_PATH_ENV)
           for minor in (9, 10, 12, 13, 14)}
    assert got == {9: f"{sdk}/python/3.9", 10: f"{sdk}/python/3.10", 12: f"{sdk}/python/3.10",
                   13: f"{sdk}/python/3.13", 14: f"{sdk}/python/3.13"}
    assert access.sdk_for(python(12)) == sdk
    node = Interpreter("nodejs20.x", "20.1.0", "/usr/bin/node", "/usr", "system")
    assert access.sdk_for(node) is None and SDK_PATH_ENV not in access.environment(spec("nodejs20.x", tmp_path),
                                                                                    backend, node)
    only_new = ServiceAccess(sdk_dir=tmp_path / "sdk2")
    (tmp_path / "sdk2" / "python" / "3.10").mkdir(parents=True)
    assert only_new.sdk_for(python(9)) is None  # no copy a 3.9 can run


def test_environments_with_a_network_of_their_own_get_the_network_endpoint(tmp_path: Path) -> None:
    """The linux sandbox's environments reach Lamina at their network hub's listener, not the server's address."""

    class PrivateNetwork(ProcessBackend):
        private_network = True

    access = ServiceAccess(endpoint="http://127.0.0.1:8800", network_endpoint="http://169.254.1.1:8800")
    fn = spec("python3.12", tmp_path)
    assert access.environment(fn, PrivateNetwork(), None)["AWS_ENDPOINT_URL"] == "http://169.254.1.1:8800"
    assert access.environment(fn, ProcessBackend(), None)["AWS_ENDPOINT_URL"] == "http://127.0.0.1:8800"
    assert ServiceAccess(endpoint="http://127.0.0.1:8800").environment(fn, PrivateNetwork(), None) == {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:8800"}


def test_node_gets_the_javascript_sdk_when_it_is_installed(tmp_path: Path) -> None:
    sdk = tmp_path / "sdk"
    node = Interpreter("nodejs20.x", "20.1.0", "/usr/bin/node", "/usr", "system")
    access = ServiceAccess(sdk_dir=sdk)
    backend = ProcessBackend()
    assert access.sdk_for(node) is None and access.node_modules(backend, node) is None
    (sdk / "nodejs" / "node_modules").mkdir(parents=True)
    assert access.sdk_for(node) == sdk
    assert access.node_modules(backend, node) == f"{sdk}/nodejs/node_modules"
    assert access.node_modules(backend, python(12)) is None and access.sdk_for(python(12)) is None
