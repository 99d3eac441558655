"""Helpers for the MicroVM compat suites: the boto3 client, waiting on states, building an image from
a directory, and requests through a server's MicroVM endpoint proxy (loopback only)."""

from __future__ import annotations

import contextlib
import http.client
import os
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from helpers import ACCESS_KEY, REGION, SECRET_KEY, LaminaServer

BASE = "arn:aws:lambda:us-east-1:aws:microvm-image:al2023-1"
ROLE = "arn:aws:iam::000000000000:role/lamina"

# A server whose idle policies may be as short as 1 s (botocore itself enforces the model's 60 s minimum:
# talk to it with client(..., validate=False)).
LOW_IDLE_ENV = {"LAMINA_MICROVM_MIN_IDLE_SECONDS": "1"}

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="MicroVM instances need root (the linux sandbox backend)")


def client(endpoint: str, validate: bool = True):
    """validate=False: no client-side checks (to send what the model forbids, e.g. idle times under 60 s)."""
    return boto3.client("lambda-microvms", endpoint_url=endpoint, region_name=REGION,
                        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                        config=Config(retries={"total_max_attempts": 1}, read_timeout=120, connect_timeout=5,
                                      parameter_validation=validate))


def write_app(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def build(mvm, name: str, folder: Path, timeout: float = 600, **extra) -> dict:
    """CreateMicrovmImage from a local directory; waits until the build is done and returns GetMicrovmImage."""
    mvm.create_microvm_image(name=name, baseImageArn=BASE, buildRoleArn=ROLE,
                             codeArtifact={"uri": folder.as_uri()}, **extra)
    return wait_image(mvm, name, timeout)


def build_or_fail(mvm, server: LaminaServer, name: str, folder: Path, what: str) -> str:
    """build(), failing the test with the version's stateReason and the server's output unless it is CREATED."""
    if build(mvm, name, folder)["state"] != "CREATED":
        ver = mvm.get_microvm_image_version(imageIdentifier=name, imageVersion="1.0")
        pytest.fail(f"the {what} image did not build: {ver.get('stateReason')}\n{server.output()[-4000:]}")
    return name


@contextlib.contextmanager
def low_idle_server(tmp: Path) -> Iterator[LaminaServer]:
    """A `lamina serve` of a test module's own (data and log under tmp) with LOW_IDLE_ENV; stopped after."""
    srv = LaminaServer(data_dir=tmp / "data", log_path=tmp / "server.log", extra_env=dict(LOW_IDLE_ENV))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
        srv.kill_leftovers()


def wait_image(mvm, name: str, timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        image = mvm.get_microvm_image(imageIdentifier=name)
        if image["state"] not in ("CREATING", "UPDATING"):
            return image
        assert time.monotonic() < deadline, f"image {name} still {image['state']}"
        time.sleep(0.2)


def wait_state(mvm, microvm_id: str, states: tuple[str, ...] | str, timeout: float = 60) -> dict:
    wanted = (states,) if isinstance(states, str) else states
    deadline = time.monotonic() + timeout
    while True:
        doc = mvm.get_microvm(microvmIdentifier=microvm_id)
        if doc["state"] in wanted:
            return doc
        assert time.monotonic() < deadline, f"{microvm_id} is {doc['state']}, not {wanted}: {doc.get('stateReason')}"
        time.sleep(0.05)


def token(mvm, microvm_id: str, ports: list[dict] | None = None, minutes: int = 5) -> str:
    resp = mvm.create_microvm_auth_token(microvmIdentifier=microvm_id, allowedPorts=ports or [{"port": 8080}],
                                         expirationInMinutes=minutes)
    return resp["authToken"]["X-aws-proxy-auth"]


def proxy(endpoint: str, microvm_id: str, path: str = "/", method: str = "GET", auth: str | None = None,
          port: int | None = None, body: bytes | None = None, headers: dict[str, str] | None = None,
          by_host: str | None = None) -> tuple[int, dict[str, str], bytes]:
    """A request through the server's endpoint proxy: the path form, or the Host form with by_host."""
    host, server_port = endpoint.split("://", 1)[1].rsplit(":", 1)
    hdrs = dict(headers or {})
    if auth is not None:
        hdrs["X-aws-proxy-auth"] = auth
    if port is not None:
        hdrs["X-aws-proxy-port"] = str(port)
    if by_host is not None:
        hdrs["Host"] = by_host
        target = path
    else:
        target = f"/lamina/v1/microvm/{microvm_id}{path}"
    conn = http.client.HTTPConnection(host, int(server_port), timeout=60)
    try:
        conn.request(method, target, body=body, headers=hdrs)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()
