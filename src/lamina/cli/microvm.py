"""`lamina microvm ...`: MicroVM images (build from a directory, with the build log) and instances
(run, ls, get, suspend, resume, terminate), endpoint tokens, and `request` to call an instance."""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.table import Table
from rich.text import Text

from lamina.cli.client import Client, LaminaError
from lamina.cli.common import confirm, err, fail, make_client, out
from lamina.cli.packaging import PackagingError, zip_directory
from lamina.cli.tables import print_table
from lamina.microvm.validation import IMAGE_NAME

app = typer.Typer(name="microvm", help="MicroVMs: stateful sandboxes from images (the Lambda MicroVMs API).",
                  no_args_is_help=True)
image_app = typer.Typer(help="MicroVM images: built from a directory with a Dockerfile.", no_args_is_help=True)
app.add_typer(image_app, name="image")

API = "/2025-09-09"
UPLOADS = "/lamina/v1/microvm-uploads"
BASE_IMAGE = "arn:aws:lambda:us-east-1:aws:microvm-image:al2023-1"
BUILD_ROLE = "arn:aws:iam::000000000000:role/lamina"  # Lamina ignores it; the API requires one
RUNTIME_HOOKS = ("run", "resume", "suspend", "terminate")
BUILD_HOOKS = ("ready", "validate")
BUILD_WAIT_S = 1800.0

EndpointOption = Annotated[
    str | None,
    typer.Option("--endpoint", help="Lamina server URL, or set LAMINA_ENDPOINT.", show_default="http://127.0.0.1:8800"),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the server's JSON.")]


def _client(ctx: typer.Context, endpoint: str | None) -> Client:

    return make_client(ctx, endpoint)


def _consoles():

    return out, err


def _fail(message: str) -> None:

    fail(message)


def _q(text: str) -> str:
    return quote(text, safe="")


def _ts(value: Any) -> str:
    if not isinstance(value, int | float):
        return "-"
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _print_json(data: Any) -> None:
    out, _ = _consoles()
    out.print_json(json.dumps(data))


def hooks_config(hooks: list[str], port: int | None) -> dict[str, Any] | None:
    """--hook run --hook ready ... as the API's hooks structure."""
    if not hooks and port is None:
        return None
    unknown = [h for h in hooks if h not in RUNTIME_HOOKS + BUILD_HOOKS]
    if unknown:
        raise typer.BadParameter(f"unknown hook(s) {', '.join(unknown)}: use {', '.join(RUNTIME_HOOKS + BUILD_HOOKS)}",
                                 param_hint="--hook")
    out: dict[str, Any] = {
        "microvmHooks": {h: "ENABLED" for h in hooks if h in RUNTIME_HOOKS},
        "microvmImageHooks": {h: "ENABLED" for h in hooks if h in BUILD_HOOKS},
    }
    if port is not None:
        out["port"] = port
    return out


def idle_policy(max_idle: int | None, suspended: int | None, auto_resume: bool | None) -> dict[str, Any] | None:
    """The idle policy from the flags: none at all unless --max-idle is given."""
    if max_idle is None:
        if suspended is not None or auto_resume is not None:
            raise typer.BadParameter("--suspended and --auto-resume need --max-idle (an idle policy has all three)",
                                     param_hint="--max-idle")
        return None
    return {"maxIdleDurationSeconds": max_idle,
            "suspendedDurationSeconds": suspended if suspended is not None else 28_800,
            "autoResumeEnabled": True if auto_resume is None else auto_resume}


# -- images -------------------------------------------------------------------------------------------


def _follow_build(client: Client, name: str, version: str) -> dict[str, Any]:
    """Print the build log as it grows until the version's build is done; the final version document."""
    out, err = _consoles()
    builds = client.request("GET", f"{API}/microvm-images/{_q(name)}/versions/{_q(version)}/builds").json()["items"]
    build_id = builds[0]["buildId"] if builds else None
    offset = 0
    deadline = time.monotonic() + BUILD_WAIT_S
    with err.status(f"Building [bold]{name}[/] version {version}…") as status:
        while True:
            if build_id is not None:
                resp = client.request("GET", f"/lamina/v1/microvm-images/{_q(name)}/versions/{_q(version)}/builds/"
                                      f"{_q(build_id)}/log", query={"offset": str(offset)})
                text = resp.body.decode("utf-8", "replace")
                offset += len(text)
                for line in text.splitlines():
                    err.print(Text(line, style="dim"), soft_wrap=True)
                    status.update(f"Building [bold]{name}[/] version {version}: {line[:60]}")
            ver = client.request("GET", f"{API}/microvm-images/{_q(name)}/versions/{_q(version)}").json()
            if ver["state"] in ("SUCCESSFUL", "FAILED"):
                if build_id is not None and offset == 0:
                    continue  # read the log once more
                return ver
            if time.monotonic() > deadline:
                _fail(f"Gave up after {BUILD_WAIT_S:.0f} s: the build of {name} {version} is still {ver['state']}")
            time.sleep(0.3)


@image_app.command("create")
def image_create(
    ctx: typer.Context,
    directory: Annotated[str, typer.Argument(help="Directory with a Dockerfile at its root.")],
    name: Annotated[str | None, typer.Option("--name", "-n", help="Image name.",
                                             show_default="the directory's")] = None,
    memory: Annotated[int | None, typer.Option(min=128, max=32768, help="Memory in MiB.", show_default="2048")] = None,
    hook: Annotated[list[str] | None, typer.Option("--hook", help="Enable a hook: run, resume, suspend, terminate, "
                                                                  "ready, validate (repeatable).")] = None,
    hooks_port: Annotated[int | None, typer.Option(min=1, max=65535, help="Port of the hooks server.",
                                                   show_default="9000")] = None,
    env: Annotated[list[str] | None, typer.Option("--env", "-e", help="KEY=VALUE, repeatable.")] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Follow the build until it is done.")] = True,
    endpoint: EndpointOption = None,
) -> None:
    """Build an image from DIR (zipped and uploaded); an existing image gets a new version."""
    import os

    out, err = _consoles()
    if name is None:
        name = os.path.basename(os.path.abspath(directory))
        if not IMAGE_NAME.fullmatch(name):
            _fail(f"{name!r} (the directory's name) is not a valid image name (letters, digits, _ and -, at most "
                  f"64): give one with --name.")
    if not os.path.isdir(directory):
        _fail(f"{directory} is not a directory: give the folder that holds the Dockerfile and the files it COPYs.")
    if not any(os.path.isfile(os.path.join(directory, n)) for n in ("Dockerfile", "dockerfile")):
        _fail(f"{directory} has no Dockerfile at its root.")
    try:
        archive = zip_directory(directory)
    except PackagingError as exc:
        _fail(str(exc))
    variables: dict[str, str] = {}
    for pair in env or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--env")
        variables[key] = value
    client = _client(ctx, endpoint)
    uri = client.request("POST", UPLOADS, body=archive, headers={"Content-Type": "application/zip"}).json()["uri"]
    body: dict[str, Any] = {"baseImageArn": BASE_IMAGE, "buildRoleArn": BUILD_ROLE, "codeArtifact": {"uri": uri}}
    if memory is not None:
        body["resources"] = [{"minimumMemoryInMiB": memory}]
    if (hooks := hooks_config(hook or [], hooks_port)) is not None:
        body["hooks"] = hooks
    if variables:
        body["environmentVariables"] = variables
    try:
        client.request("GET", f"{API}/microvm-images/{_q(name)}")
        exists = True
    except LaminaError as exc:
        if exc.status != 404:
            raise
        exists = False
    if exists:
        resp = client.request("PUT", f"{API}/microvm-images/{_q(name)}", json_body=body).json()
    else:
        resp = client.request("POST", f"{API}/microvm-images", json_body={"name": name, **body}).json()
    version = resp["imageVersion"]
    err.print(f"{'Updating' if exists else 'Creating'} image {name}: version {version}", markup=False)
    if not wait:
        out.print(resp["imageArn"], markup=False)
        return
    ver = _follow_build(client, name, version)
    if ver["state"] != "SUCCESSFUL":
        _fail(f"The build of {name} version {version} FAILED: {ver.get('stateReason') or 'see the log above'}")
    out.print(f"Built {name} version {version}: {resp['imageArn']}", markup=False, soft_wrap=True)
    out.print(f"Run it: lamina microvm run {name}", markup=False)


@image_app.command("ls")
def image_ls(ctx: typer.Context, as_json: JsonOption = False, endpoint: EndpointOption = None) -> None:
    """List images."""
    out, _ = _consoles()
    client = _client(ctx, endpoint)
    items: list[dict] = []
    token = None
    while True:
        page = client.request("GET", f"{API}/microvm-images", query={"nextToken": token} if token else None).json()
        items += page["items"]
        token = page.get("nextToken")
        if not token:
            break
    if as_json:
        _print_json(items)
        return
    table = Table("NAME", "STATE", "ACTIVE VERSION", "FAILED VERSION", "CREATED", box=None)
    for item in items:
        table.add_row(item["name"], item["state"], item.get("latestActiveImageVersion", "-"),
                      item.get("latestFailedImageVersion", "-"), _ts(item.get("createdAt")))
    print_table(out, table)


@image_app.command("get")
def image_get(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Image name or ARN.")],
              endpoint: EndpointOption = None) -> None:
    """An image and its versions (JSON)."""
    client = _client(ctx, endpoint)
    image = client.request("GET", f"{API}/microvm-images/{_q(name)}").json()
    image["versions"] = client.request("GET", f"{API}/microvm-images/{_q(name)}/versions").json()["items"]
    _print_json(image)


@image_app.command("rm")
def image_rm(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Image name or ARN.")],
             yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
             endpoint: EndpointOption = None) -> None:
    """Delete an image and all its versions (its MicroVMs must be terminated)."""
    out, _ = _consoles()
    client = _client(ctx, endpoint)
    confirm(f"Delete MicroVM image {name} and all its versions?", yes)
    client.request("DELETE", f"{API}/microvm-images/{_q(name)}")
    out.print(f"Deleted image {name}", markup=False)


# -- instances ----------------------------------------------------------------------------------------


@app.command("run")
def run(
    ctx: typer.Context,
    image: Annotated[str, typer.Argument(help="Image name or ARN.")],
    version: Annotated[str | None, typer.Option(help="Image version.", show_default="latest ACTIVE")] = None,
    max_idle: Annotated[int | None, typer.Option(help="Suspend after this many seconds without inbound "
                                                      "traffic (enables the idle policy; at least 60, or the "
                                                      "server's microvm_min_idle_seconds).")] = None,
    suspended: Annotated[int | None, typer.Option(help="Terminate after this many seconds suspended "
                                                       "(0: at once).", show_default="28800")] = None,
    auto_resume: Annotated[bool | None, typer.Option("--auto-resume/--no-auto-resume",
                                                     help="Resume on the first request.",
                                                     show_default="on with --max-idle")] = None,
    max_duration: Annotated[int | None, typer.Option(min=1, max=28800, help="Lifetime in seconds "
                                                     "(running + suspended).", show_default="28800")] = None,
    payload: Annotated[str | None, typer.Option(help="runHookPayload for the /run hook (≤ 16 KB).")] = None,
    client_token: Annotated[str | None, typer.Option(help="Idempotency token: the same token gives the same "
                                                          "MicroVM.")] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until it is RUNNING.")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the MicroVM id (ID=$(lamina microvm "
                                                              "run IMAGE -q)).")] = False,
    as_json: JsonOption = False,
    endpoint: EndpointOption = None,
) -> None:
    """Run a MicroVM from an image."""
    out, err = _consoles()
    body: dict[str, Any] = {"imageIdentifier": image}
    for key, value in (("imageVersion", version), ("maximumDurationInSeconds", max_duration),
                       ("runHookPayload", payload), ("clientToken", client_token),
                       ("idlePolicy", idle_policy(max_idle, suspended, auto_resume))):
        if value is not None:
            body[key] = value
    client = _client(ctx, endpoint)
    mvm = client.request("POST", f"{API}/microvms", json_body=body).json()
    if wait:
        with err.status(f"Starting {mvm['microvmId']}…"):
            deadline = time.monotonic() + 120
            while mvm["state"] == "PENDING" and time.monotonic() < deadline:
                time.sleep(0.05)
                mvm = client.request("GET", f"{API}/microvms/{_q(mvm['microvmId'])}").json()
        if mvm["state"] == "TERMINATED":
            _fail(f"{mvm['microvmId']} did not start: {mvm.get('stateReason') or 'no reason given'}")
    if as_json:
        _print_json(mvm)
        return
    if quiet:
        out.print(mvm["microvmId"], markup=False, soft_wrap=True)
        return
    # soft_wrap: an endpoint broken over two lines cannot be copied (rich wraps at 80 columns off a terminal).
    out.print(f"{mvm['microvmId']}  {mvm['state']}", markup=False, soft_wrap=True)
    out.print(f"  endpoint: {mvm['endpoint']}", markup=False, soft_wrap=True)
    out.print(f"  try: lamina microvm request {mvm['microvmId']} /", markup=False, soft_wrap=True)


@app.command("ls")
def ls(ctx: typer.Context,
       image: Annotated[str | None, typer.Option(help="Only this image's MicroVMs.")] = None,
       all_states: Annotated[bool, typer.Option("--all", "-a", help="Include TERMINATED ones.")] = False,
       as_json: JsonOption = False, endpoint: EndpointOption = None) -> None:
    """List MicroVMs."""
    out, _ = _consoles()
    client = _client(ctx, endpoint)
    items: list[dict] = []
    token = None
    while True:
        query = {k: val for k, val in (("imageIdentifier", image), ("nextToken", token)) if val}
        page = client.request("GET", f"{API}/microvms", query=query or None).json()
        items += page["items"]
        token = page.get("nextToken")
        if not token:
            break
    if not all_states:
        items = [i for i in items if i["state"] != "TERMINATED"]
    if as_json:
        _print_json(items)
        return
    table = Table(box=None)
    table.add_column("ID", no_wrap=True, min_width=len("mvm-") + 36)  # ids are what users copy: never cut
    for heading in ("STATE", "IMAGE", "VERSION", "STARTED"):
        table.add_column(heading)
    for item in items:
        table.add_row(item["microvmId"], item["state"], item["imageArn"].rsplit(":", 1)[-1], item["imageVersion"],
                      _ts(item.get("startedAt")))
    print_table(out, table)


@app.command("get")
def get(ctx: typer.Context, microvm_id: Annotated[str, typer.Argument(help="MicroVM id.")],
        endpoint: EndpointOption = None) -> None:
    """A MicroVM (JSON)."""
    _print_json(_client(ctx, endpoint).request("GET", f"{API}/microvms/{_q(microvm_id)}").json())


@app.command("logs")
def logs(ctx: typer.Context, microvm_id: Annotated[str, typer.Argument(help="MicroVM id.")],
         follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until it is TERMINATED.")] = False,
         endpoint: EndpointOption = None) -> None:
    """Print the application's stdout and stderr (while the MicroVM lives; the log goes with it)."""
    client = _client(ctx, endpoint)
    offset = 0
    while True:
        resp = client.request("GET", f"/lamina/v1/microvms/{_q(microvm_id)}/log", query={"offset": str(offset)})
        sys.stdout.buffer.write(resp.body)
        sys.stdout.buffer.flush()
        offset = int(resp.headers.get("x-lamina-next-offset") or offset + len(resp.body))
        if resp.body:
            continue  # more may be waiting (one response carries at most 1 MiB)
        if not follow or resp.headers.get("x-lamina-microvm-state") == "TERMINATED":
            return
        time.sleep(0.5)


def _action(ctx: typer.Context, endpoint: str | None, microvm_id: str, method: str, suffix: str, done: str) -> None:
    out, _ = _consoles()
    client = _client(ctx, endpoint)
    client.request(method, f"{API}/microvms/{_q(microvm_id)}{suffix}")
    state = client.request("GET", f"{API}/microvms/{_q(microvm_id)}").json()["state"]
    out.print(f"{done} {microvm_id}: {state}", markup=False)


@app.command("suspend")
def suspend(ctx: typer.Context, microvm_id: Annotated[str, typer.Argument(help="MicroVM id.")],
            endpoint: EndpointOption = None) -> None:
    """Suspend a RUNNING MicroVM (memory, disk and processes are kept)."""
    _action(ctx, endpoint, microvm_id, "POST", "/suspend", "Suspended")


@app.command("resume")
def resume(ctx: typer.Context, microvm_id: Annotated[str, typer.Argument(help="MicroVM id.")],
           endpoint: EndpointOption = None) -> None:
    """Resume a SUSPENDED MicroVM."""
    _action(ctx, endpoint, microvm_id, "POST", "/resume", "Resumed")


@app.command("terminate")
def terminate(ctx: typer.Context, microvm_id: Annotated[str, typer.Argument(help="MicroVM id.")],
              endpoint: EndpointOption = None) -> None:
    """Terminate a MicroVM (idempotent)."""
    _action(ctx, endpoint, microvm_id, "DELETE", "", "Terminated")


def _token(client: Client, microvm_id: str, ports: list[int], all_ports: bool, minutes: int) -> str:
    allowed: list[dict[str, Any]] = [{"allPorts": {}}] if all_ports else [{"port": p} for p in ports or [8080]]
    resp = client.request("POST", f"{API}/microvms/{_q(microvm_id)}/auth-token",
                          json_body={"allowedPorts": allowed, "expirationInMinutes": minutes}).json()
    return resp["authToken"]["X-aws-proxy-auth"]


@app.command("token")
def token(
    ctx: typer.Context,
    microvm_id: Annotated[str, typer.Argument(help="MicroVM id.")],
    port: Annotated[list[int] | None, typer.Option("--port", "-p", min=1, max=65535,
                                                   help="Allowed port (repeatable).", show_default="8080")] = None,
    all_ports: Annotated[bool, typer.Option("--all-ports", help="Allow every port.")] = False,
    minutes: Annotated[int, typer.Option(min=1, max=60, help="Lifetime in minutes.")] = 15,
    endpoint: EndpointOption = None,
) -> None:
    """Print an endpoint token (send it as the X-aws-proxy-auth header)."""
    out, _ = _consoles()
    out.print(_token(_client(ctx, endpoint), microvm_id, port or [], all_ports, minutes), markup=False, soft_wrap=True)


def _is_text(content_type: str) -> bool:
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind.startswith("text/") or kind == "application/json" or kind.endswith("+json")


@app.command("request")
def request(
    ctx: typer.Context,
    microvm_id: Annotated[str, typer.Argument(help="MicroVM id.")],
    path: Annotated[str, typer.Argument(help="Path (and query) in the app.")] = "/",
    method: Annotated[str, typer.Option("-X", "--method", help="HTTP method.")] = "GET",
    data: Annotated[str | None, typer.Option("--data", "-d", help="Request body; @FILE reads a file.")] = None,
    header: Annotated[list[str] | None, typer.Option("--header", "-H", help="'Name: value', repeatable.")] = None,
    port: Annotated[int, typer.Option(min=1, max=65535, help="The app's port (X-aws-proxy-port).")] = 8080,
    endpoint: EndpointOption = None,
) -> None:
    """Call the MicroVM's endpoint with a fresh token; prints the response body."""
    _, err = _consoles()
    client = _client(ctx, endpoint)
    auth = _token(client, microvm_id, [port], False, 5)
    headers = {"X-aws-proxy-auth": auth, "X-aws-proxy-port": str(port)}
    for line in header or []:
        key, sep, value = line.partition(":")
        if not sep:
            raise typer.BadParameter(f"{line!r} is not 'Name: value'", param_hint="--header")
        headers[key.strip()] = value.strip()
    body = None
    if data is not None:
        body = open(data[1:], "rb").read() if data.startswith("@") else data.encode()  # noqa: SIM115
    target = f"/lamina/v1/microvm/{_q(microvm_id)}/{path.lstrip('/')}"
    with client.passthrough(method.upper(), target, body=body, headers=headers, timeout=300.0) as resp:
        if resp.status >= 300:
            err.print(f"HTTP {resp.status} {resp.reason}", markup=False)
        last = b"\n"
        while chunk := resp.read1(65536):
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
            last = chunk[-1:]
        if last != b"\n" and _is_text(resp.headers.get("Content-Type") or ""):
            # A text answer ends its line, as `lamina invoke`'s does (the next output or prompt starts on its
            # own); other bytes are written exactly, for `> file`.
            sys.stdout.buffer.write(b"\n")
            sys.stdout.buffer.flush()
    if resp.status >= 400:
        raise typer.Exit(1)
