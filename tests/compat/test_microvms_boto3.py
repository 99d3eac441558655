"""boto3's `lambda-microvms` client drives the whole MicroVM lifecycle against `lamina serve`:
images (from a local directory and from an upload), versions, builds, run, get, list, tokens, the
endpoint proxy, suspend/resume/terminate, idempotency, tags and errors."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from microvm_support import BASE, ROLE, build, client, needs_root, proxy, token, wait_image, wait_state, write_app

from helpers import (
    ACCOUNT,
    REGION,
    assert_aws_error,
    make_zip,
    raw_request,
    require_aws_cli,
    run_lamina,
    unique_name,
)

pytestmark = needs_root

APP = r'''
import json, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COUNT = 0
HOOKS = []

class App(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def reply(self, status, body, ctype="text/plain"):
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        global COUNT
        if self.path == "/count":
            COUNT += 1
            self.reply(200, str(COUNT).encode())
        elif self.path == "/hooks":
            self.reply(200, json.dumps(HOOKS).encode(), "application/json")
        elif self.path == "/headers":
            self.reply(200, json.dumps(dict(self.headers.items())).encode(), "application/json")
        else:
            self.reply(200, b"hello from " + self.path.encode())

class Hooks(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0)).decode()
        HOOKS.append([self.path.rsplit("/", 1)[-1], body])
        print("hook", self.path.rsplit("/", 1)[-1], flush=True)  # for `lamina microvm logs`
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

threading.Thread(target=ThreadingHTTPServer(("0.0.0.0", 9000), Hooks).serve_forever, daemon=True).start()
ThreadingHTTPServer(("0.0.0.0", 8080), App).serve_forever()
'''

DOCKERFILE = """FROM public.ecr.aws/lambda/microvms:al2023-minimal
WORKDIR /app
COPY app.py .
ENV GREETING=hi
EXPOSE 8080
CMD ["python3", "app.py"]
"""

HOOKS = {"port": 9000, "microvmHooks": {"run": "ENABLED", "suspend": "ENABLED", "resume": "ENABLED",
                                        "terminate": "ENABLED", "runTimeoutInSeconds": 5}}


@pytest.fixture(scope="module")
def mvm(lamina_server):
    return client(lamina_server.endpoint)


@pytest.fixture(scope="module")
def image(mvm, tmp_path_factory: pytest.TempPathFactory) -> str:
    name = unique_name("img")
    folder = write_app(tmp_path_factory.mktemp("mvm-app"), {"app.py": APP, "Dockerfile": DOCKERFILE})
    got = build(mvm, name, folder, hooks=HOOKS, tags={"team": "core"}, resources=[{"minimumMemoryInMiB": 512}])
    assert got["state"] == "CREATED", got
    yield name
    for item in mvm.list_microvms(imageIdentifier=name)["items"]:
        mvm.terminate_microvm(microvmIdentifier=item["microvmId"])
    mvm.delete_microvm_image(imageIdentifier=name)


def arn(name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:microvm-image:{name}"


def code(err: pytest.ExceptionInfo) -> tuple[str, int]:
    return err.value.response["Error"]["Code"], err.value.response["ResponseMetadata"]["HTTPStatusCode"]


def test_image_versions_and_builds(mvm, image: str, lamina_server) -> None:
    got = mvm.get_microvm_image(imageIdentifier=arn(image))
    assert got["name"] == image and got["latestActiveImageVersion"] == "1.0" and got["tags"] == {"team": "core"}
    listed = [i["name"] for i in mvm.list_microvm_images(nameFilter=image)["items"]]
    assert listed == [image]
    ver = mvm.get_microvm_image_version(imageIdentifier=image, imageVersion="1.0")
    assert ver["state"] == "SUCCESSFUL" and ver["status"] == "ACTIVE" and ver["hooks"]["port"] == 9000
    assert ver["resources"] == [{"minimumMemoryInMiB": 512}] and ver["imageArn"] == arn(image)
    builds = mvm.list_microvm_image_builds(imageIdentifier=image, imageVersion="1.0")["items"]
    assert len(builds) == 1 and builds[0]["buildState"] == "SUCCESSFUL"
    one = mvm.get_microvm_image_build(imageIdentifier=image, imageVersion="1.0", buildId=builds[0]["buildId"])
    assert one["architecture"] in ("X86_64", "ARM_64") and one["imageVersion"] == "1.0"
    url = (f"{lamina_server.endpoint}/lamina/v1/microvm-images/{image}/versions/1.0/builds/"
           f"{builds[0]['buildId']}/log")
    log = urllib.request.urlopen(url).read().decode()
    assert "COPY app.py" in log and "build SUCCESSFUL" in log


def test_run_get_list_proxy_and_lifecycle(mvm, image: str, lamina_server) -> None:
    run = mvm.run_microvm(imageIdentifier=arn(image), runHookPayload="tenant-42", maximumDurationInSeconds=600)
    mid = run["microvmId"]
    assert run["state"] in ("PENDING", "RUNNING") and run["imageVersion"] == "1.0"
    assert run["endpoint"] == f"{mid}.lambda-microvm.{REGION}.localhost:{lamina_server.port}"
    doc = wait_state(mvm, mid, "RUNNING")
    assert doc["maximumDurationInSeconds"] == 600 and "startedAt" in doc
    auth = token(mvm, mid)
    status, _, body = proxy(lamina_server.endpoint, mid, "/hooks", auth=auth)
    assert status == 200
    hooks = json.loads(body)
    assert hooks[0][0] == "run" and json.loads(hooks[0][1]) == {"microvmId": mid, "runHookPayload": "tenant-42"}
    # The Host form, as the endpoint is returned; x-aws-proxy-* never reach the app.
    status, _, body = proxy(lamina_server.endpoint, mid, "/headers", auth=auth, port=8080, by_host=run["endpoint"])
    assert status == 200 and not any(k.lower().startswith("x-aws-proxy") for k in json.loads(body))
    assert proxy(lamina_server.endpoint, mid, "/count", auth=auth)[2] == b"1"
    # Suspend keeps memory; resume runs /resume; ResumeMicrovm on a RUNNING one is a 409.
    with pytest.raises(ClientError) as err:
        mvm.resume_microvm(microvmIdentifier=mid)
    assert code(err) == ("ConflictException", 409)
    mvm.suspend_microvm(microvmIdentifier=mid)
    assert wait_state(mvm, mid, "SUSPENDED")["state"] == "SUSPENDED"
    status, headers, _ = proxy(lamina_server.endpoint, mid, "/count", auth=auth)
    assert status == 409 and headers["x-amzn-errortype"] == "ConflictException"  # no idle policy: no auto-resume
    mvm.resume_microvm(microvmIdentifier=mid)
    wait_state(mvm, mid, "RUNNING")
    assert proxy(lamina_server.endpoint, mid, "/count", auth=auth)[2] == b"2"
    names = [h[0] for h in json.loads(proxy(lamina_server.endpoint, mid, "/hooks", auth=auth)[2])]
    assert names == ["run", "suspend", "resume"]
    listed = mvm.list_microvms(imageIdentifier=image, imageVersion="1.0")["items"]
    assert mid in [i["microvmId"] for i in listed]
    mvm.terminate_microvm(microvmIdentifier=mid)
    mvm.terminate_microvm(microvmIdentifier=mid)  # idempotent
    doc = mvm.get_microvm(microvmIdentifier=mid)
    assert doc["state"] == "TERMINATED" and "terminatedAt" in doc and doc["stateReason"]
    assert proxy(lamina_server.endpoint, mid, "/count", auth=auth)[0] == 410


def test_tokens_refused(mvm, image: str, lamina_server) -> None:
    a = mvm.run_microvm(imageIdentifier=image)["microvmId"]
    b = mvm.run_microvm(imageIdentifier=image)["microvmId"]
    wait_state(mvm, a, "RUNNING")
    wait_state(mvm, b, "RUNNING")
    for auth, port in ((None, None), (token(mvm, b), None), (token(mvm, a, [{"port": 9000}]), 8080),
                       (token(mvm, a)[:-4] + "AAAA", None)):
        status, headers, _ = proxy(lamina_server.endpoint, a, "/count", auth=auth, port=port)
        assert status == 403 and headers["x-amzn-errortype"] == "AccessDeniedException"
    ranged = token(mvm, a, [{"range": {"startPort": 8000, "endPort": 8100}}])
    assert proxy(lamina_server.endpoint, a, "/count", auth=ranged)[0] == 200
    for mid in (a, b):
        mvm.terminate_microvm(microvmIdentifier=mid)


def test_pagination_and_idempotency(mvm, image: str) -> None:
    first = mvm.run_microvm(imageIdentifier=image, clientToken="ct-" + image)
    again = mvm.run_microvm(imageIdentifier=image, clientToken="ct-" + image)
    assert again["microvmId"] == first["microvmId"]
    others = [mvm.run_microvm(imageIdentifier=image)["microvmId"] for _ in range(2)]
    seen = []
    for page in mvm.get_paginator("list_microvms").paginate(imageIdentifier=image, PaginationConfig={"PageSize": 1}):
        assert len(page["items"]) <= 1
        seen += [i["microvmId"] for i in page["items"]]
    assert {first["microvmId"], *others} <= set(seen) and len(seen) == len(set(seen))
    wait_state(mvm, first["microvmId"], "RUNNING")
    mvm.suspend_microvm(microvmIdentifier=first["microvmId"])
    # The same token finds the suspended instance instead of starting a second one.
    assert mvm.run_microvm(imageIdentifier=image, clientToken="ct-" + image)["state"] == "SUSPENDED"
    for mid in (first["microvmId"], *others):
        mvm.terminate_microvm(microvmIdentifier=mid)


def test_update_makes_versions(mvm, image: str, tmp_path: Path) -> None:
    name = unique_name("upd")
    folder = write_app(tmp_path / "v", {"app.py": APP, "Dockerfile": DOCKERFILE})
    build(mvm, name, folder)
    resp = mvm.update_microvm_image(imageIdentifier=name, baseImageArn=BASE, buildRoleArn=ROLE,
                                    codeArtifact={"uri": folder.as_uri()}, description="second")
    assert resp["imageVersion"] == "2.0"
    got = wait_image(mvm, name)
    assert got["state"] == "UPDATED" and got["latestActiveImageVersion"] == "2.0"
    versions = mvm.list_microvm_image_versions(imageIdentifier=name)["items"]
    assert [v["imageVersion"] for v in versions] == ["1.0", "2.0"] and versions[1]["description"] == "second"
    mvm.update_microvm_image_version(imageIdentifier=name, imageVersion="2.0", status="INACTIVE")
    assert mvm.get_microvm_image(imageIdentifier=name)["latestActiveImageVersion"] == "1.0"
    run = mvm.run_microvm(imageIdentifier=name)
    assert run["imageVersion"] == "1.0"
    with pytest.raises(ClientError) as err:
        mvm.run_microvm(imageIdentifier=name, imageVersion="2.0")
    assert code(err)[0] == "ConflictException"
    mvm.terminate_microvm(microvmIdentifier=run["microvmId"])
    assert mvm.delete_microvm_image_version(imageIdentifier=name, imageVersion="2.0")["state"] == "DELETED"
    assert mvm.delete_microvm_image(imageIdentifier=name)["state"] == "DELETED"
    with pytest.raises(ClientError) as err:
        mvm.get_microvm_image(imageIdentifier=name)
    assert code(err) == ("ResourceNotFoundException", 404)


def test_upload_and_failed_build(mvm, lamina_server) -> None:
    archive = make_zip({"Dockerfile": "FROM public.ecr.aws/lambda/microvms:al2023-minimal\nRUN exit 3\n"})
    req = urllib.request.Request(f"{lamina_server.endpoint}/lamina/v1/microvm-uploads", data=archive,
                                 method="POST", headers={"content-type": "application/zip"})
    uri = json.loads(urllib.request.urlopen(req).read())["uri"]
    assert uri.startswith("file:///")
    name = unique_name("bad")
    mvm.create_microvm_image(name=name, baseImageArn=BASE, buildRoleArn=ROLE, codeArtifact={"uri": uri})
    got = wait_image(mvm, name)
    assert got["state"] == "CREATE_FAILED" and got["latestFailedImageVersion"] == "1.0"
    ver = mvm.get_microvm_image_version(imageIdentifier=name, imageVersion="1.0")
    assert ver["state"] == "FAILED" and ver["stateReason"]
    with pytest.raises(ClientError) as err:
        mvm.run_microvm(imageIdentifier=name)
    assert code(err)[0] == "ConflictException"
    mvm.delete_microvm_image(imageIdentifier=name)


def test_tags(mvm, image: str) -> None:
    mvm.tag_resource(Resource=arn(image), Tags={"env": "test"})
    assert mvm.list_tags(Resource=arn(image))["Tags"] == {"team": "core", "env": "test"}
    mvm.untag_resource(Resource=arn(image), TagKeys=["team"])
    assert mvm.list_tags(Resource=arn(image))["Tags"] == {"env": "test"}
    with pytest.raises(ClientError) as err:
        mvm.list_tags(Resource=arn("nope"))
    assert code(err) == ("ResourceNotFoundException", 404)


def test_errors(mvm, image: str, tmp_path: Path, lamina_server) -> None:
    cases = [
        (lambda: mvm.get_microvm(microvmIdentifier="mvm-nope"), ("ResourceNotFoundException", 404)),
        (lambda: mvm.run_microvm(imageIdentifier="no-such-image"), ("ResourceNotFoundException", 404)),
        (lambda: mvm.run_microvm(imageIdentifier=image, maximumDurationInSeconds=28_801),
         ("ValidationException", 400)),
        (lambda: mvm.run_microvm(imageIdentifier=image, runHookPayload="x" * 16_385), ("ValidationException", 400)),
        (lambda: mvm.create_microvm_auth_token(microvmIdentifier="mvm-nope", allowedPorts=[{"port": 1}],
                                               expirationInMinutes=5), ("ResourceNotFoundException", 404)),
        (lambda: mvm.create_microvm_image(name=unique_name("s3"), baseImageArn=BASE, buildRoleArn=ROLE,
                                          codeArtifact={"uri": "s3://bucket/key.zip"}), ("ValidationException", 400)),
        (lambda: mvm.create_microvm_image(name=image, baseImageArn=BASE, buildRoleArn=ROLE,
                                          codeArtifact={"uri": tmp_path.as_uri()}), ("ConflictException", 409)),
        (lambda: mvm.suspend_microvm(microvmIdentifier="mvm-nope"), ("ResourceNotFoundException", 404)),
    ]
    for call, expected in cases:
        with pytest.raises(ClientError) as err:
            call()
        assert code(err) == expected, err.value.response
        assert err.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as err:
        mvm.create_microvm_auth_token(microvmIdentifier="mvm-nope", allowedPorts=[{"port": 1}],
                                      expirationInMinutes=61)
    assert code(err) == ("ValidationException", 400)
    # Below the server's minimum idle time (60 s here; botocore checks it too, so a raw request).
    resp = raw_request(lamina_server.endpoint, "POST", "/2025-09-09/microvms", json.dumps({
        "imageIdentifier": image,
        "idlePolicy": {"maxIdleDurationSeconds": 59, "suspendedDurationSeconds": 0, "autoResumeEnabled": True},
    }).encode(), {"content-type": "application/json"})
    assert_aws_error(resp, 400, "ValidationException", "maxIdleDurationSeconds")
    resp = raw_request(lamina_server.endpoint, "POST", "/2025-09-09/microvms", json.dumps({
        "imageIdentifier": image, "idlePolicy": {"maxIdleDurationSeconds": 60, "suspendedDurationSeconds": 0},
    }).encode(), {"content-type": "application/json"})
    assert_aws_error(resp, 400, "ValidationException", "autoResumeEnabled")
    resp = raw_request(lamina_server.endpoint, "POST", "/2025-09-09/microvms", b"[1]", {"content-type": "x"})
    assert resp.status == 400


def test_restart_terminates_instances_keeps_images(lamina_factory, tmp_path: Path) -> None:
    first = lamina_factory()
    mvm = client(first.endpoint)
    folder = write_app(tmp_path / "app", {"app.py": APP, "Dockerfile": DOCKERFILE})
    build(mvm, "survivor", folder)
    mid = mvm.run_microvm(imageIdentifier="survivor")["microvmId"]
    wait_state(mvm, mid, "RUNNING")
    first.stop()
    assert not first.kill_leftovers()  # the instance's processes went with the server
    second = lamina_factory(data_dir=first.data_dir)
    mvm = client(second.endpoint)
    doc = mvm.get_microvm(microvmIdentifier=mid)
    assert doc["state"] == "TERMINATED" and "restart" in doc["stateReason"]
    assert mvm.get_microvm_image(imageIdentifier="survivor")["state"] == "CREATED"
    again = mvm.run_microvm(imageIdentifier="survivor")["microvmId"]
    wait_state(mvm, again, "RUNNING")
    assert proxy(second.endpoint, again, "/count", auth=token(mvm, again))[2] == b"1"
    mvm.terminate_microvm(microvmIdentifier=again)


def test_cli(lamina_server, tmp_path: Path) -> None:
    folder = write_app(tmp_path / "cliapp", {"app.py": APP, "Dockerfile": DOCKERFILE})
    name = unique_name("cli")

    def lamina(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
        # No COLUMNS: piped output gets rich's default 80 columns, which must not break ids or endpoints.
        proc = run_lamina(lamina_server.endpoint, "microvm", *args, columns=None, timeout=300)
        assert (proc.returncode == 0) == ok, (args, proc.stdout, proc.stderr)
        return proc

    built = lamina("image", "create", str(folder), "--name", name, "--hook", "run", "--hooks-port", "9000")
    assert "Built" in built.stdout and "build SUCCESSFUL" in built.stderr
    run = json.loads(lamina("run", name, "--payload", "from-cli", "--json").stdout)
    mid = run["microvmId"]
    assert run["state"] == "RUNNING"
    assert lamina("request", mid, "/count").stdout == "1\n"  # a text answer ends its line
    hooks = json.loads(lamina("request", mid, "/hooks").stdout)
    assert json.loads(hooks[0][1])["runHookPayload"] == "from-cli"
    assert "hook run" in lamina("logs", mid).stdout  # the app's stdout
    assert "SUSPENDED" in lamina("suspend", mid).stdout
    assert mid in lamina("ls").stdout
    assert "RUNNING" in lamina("resume", mid).stdout
    assert "ConflictException" in lamina("resume", mid, ok=False).stderr
    assert lamina("token", mid, "--all-ports", "--minutes", "1").stdout.count(".") == 2
    plain = lamina("run", name).stdout.splitlines()
    other = plain[0].split()[0]
    endpoint = json.loads(lamina("get", other).stdout)["endpoint"]
    assert f"  endpoint: {endpoint}" in plain and f"  try: lamina microvm request {other} /" in plain, plain
    assert "TERMINATED" in lamina("terminate", other).stdout
    assert "TERMINATED" in lamina("terminate", mid).stdout
    assert "TERMINATED" in lamina("terminate", mid).stdout
    assert mid not in lamina("ls").stdout and mid in lamina("ls", "--all").stdout
    assert lamina("logs", mid).stdout == ""  # the log went with the instance
    assert "ResourceNotFoundException" in lamina("logs", "mvm-nope", ok=False).stderr
    lamina("image", "rm", name, "--yes")


def test_aws_cli(image: str, lamina_server, tmp_path: Path) -> None:
    """The AWS CLI's lambda-microvms commands, as the launch guide writes them."""
    aws_bin = require_aws_cli()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION=REGION,
               AWS_CONFIG_FILE=str(tmp_path / "none"), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
               AWS_EC2_METADATA_DISABLED="true", AWS_MAX_ATTEMPTS="1", AWS_PAGER="")

    def aws(*args: str) -> dict:
        proc = subprocess.run([str(aws_bin), "lambda-microvms", *args, "--endpoint-url", lamina_server.endpoint],
                              capture_output=True, text=True, env=env, timeout=90)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout) if proc.stdout.strip() else {}

    run = aws("run-microvm", "--image-identifier", arn(image), "--idle-policy",
              '{"autoResumeEnabled":true,"maxIdleDurationSeconds":900,"suspendedDurationSeconds":1800}',
              "--maximum-duration-in-seconds", "14400")
    mid = run["microvmId"]
    auth = aws("create-microvm-auth-token", "--microvm-identifier", mid, "--expiration-in-minutes", "30",
               "--allowed-ports", '[{"allPorts":{}}]')["authToken"]["X-aws-proxy-auth"]
    assert proxy(lamina_server.endpoint, mid, "/count", auth=auth, port=8080)[2] == b"1"
    aws("suspend-microvm", "--microvm-identifier", mid)
    assert proxy(lamina_server.endpoint, mid, "/count", auth=auth)[2] == b"2"  # auto-resumed
    got = aws("get-microvm", "--microvm-identifier", mid)
    assert got["state"] == "RUNNING" and got["idlePolicy"]["maxIdleDurationSeconds"] == 900
    aws("terminate-microvm", "--microvm-identifier", mid)
    assert aws("get-microvm", "--microvm-identifier", mid)["state"] == "TERMINATED"
