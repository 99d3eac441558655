"""Layers with boto3 against a real `lamina serve`: Publish/Get/List/DeleteLayerVersion(s), GetLayerVersionByArn,
ListLayers, the layer version permissions, AWS's errors; and the runtime side — a function whose handler imports a
third-party package from a layer, layers unpacked at /opt in the order given (a later one's file wins), /opt/bin on
PATH, /opt read-only, a custom runtime's bootstrap from a layer, a function keeping its layers after a layer version
is deleted and across a restart."""

from __future__ import annotations

import io
import json
import urllib.request
import zipfile

import pytest
from botocore.exceptions import ClientError

from helpers import (
    ACCOUNT,
    HANDWRITTEN_BOOTSTRAP,
    REGION,
    RUNTIME,
    WAIT,
    create_function,
    failure,
    health,
    installed_files,
    invoke_ok,
    make_zip,
    sha256_b64,
    unique_name,
)

pytestmark = pytest.mark.timeout(120)

PY = f"python{RUNTIME.removeprefix('python')}"

# Reports where its imports came from and what it sees of /opt.
PROBE = '''
import os, shutil, subprocess, sys

def handler(event, context):
    import dnslib, shared, deep
    try:
        with open("/opt/probe", "w"):
            pass
        writable = True
    except OSError:
        writable = False
    tool = shutil.which("layer-tool.sh")
    return {"dnslib": dnslib.__file__, "shared": shared.WHO, "deep": deep.__file__, "opt_writable": writable,
            "tool": subprocess.run([tool], capture_output=True, text=True).stdout.strip() if tool else None,
            "sys_path": sys.path[:3]}
'''


def layer_arn(name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:layer:{name}"


@pytest.fixture
def layers(lambda_client):
    """publish(files, name=None, **kwargs) -> PublishLayerVersion's response; every version is deleted at teardown."""
    published: list[tuple[str, int]] = []

    def publish(files: dict[str, str | bytes], name: str | None = None, **kwargs) -> dict:
        name = name or unique_name("layer")
        resp = lambda_client.publish_layer_version(LayerName=name, Content={"ZipFile": make_zip(files)}, **kwargs)
        published.append((name, resp["Version"]))
        return resp

    yield publish
    for name, number in published:
        lambda_client.delete_layer_version(LayerName=name, VersionNumber=number)


def test_publish_get_list_delete(lambda_client, layers):
    name = unique_name("layer")
    package = make_zip({"python/mod.py": "X = 1\n"})
    first = lambda_client.publish_layer_version(
        LayerName=name, Content={"ZipFile": package}, Description="d", LicenseInfo="MIT",
        CompatibleRuntimes=[RUNTIME, "nodejs20.x"], CompatibleArchitectures=["x86_64"])
    assert first["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert first["Version"] == 1 and first["LayerArn"] == layer_arn(name)
    assert first["LayerVersionArn"] == f"{layer_arn(name)}:1"
    assert first["Content"]["CodeSha256"] == sha256_b64(package) and first["Content"]["CodeSize"] == len(package)
    assert first["CompatibleRuntimes"] == [RUNTIME, "nodejs20.x"] and first["LicenseInfo"] == "MIT"
    # Content.Location serves the package itself.
    with urllib.request.urlopen(first["Content"]["Location"]) as resp:
        assert resp.read() == package
    second = lambda_client.publish_layer_version(LayerName=name, Content={"ZipFile": package})
    assert second["Version"] == 2 and "CompatibleRuntimes" not in second

    got = lambda_client.get_layer_version(LayerName=name, VersionNumber=1)
    assert got["LayerVersionArn"] == first["LayerVersionArn"] and got["Description"] == "d"
    by_arn = lambda_client.get_layer_version_by_arn(Arn=first["LayerVersionArn"])
    assert by_arn["Version"] == 1
    # A layer ARN works as the LayerName too.
    assert lambda_client.get_layer_version(LayerName=layer_arn(name), VersionNumber=2)["Version"] == 2

    listed = lambda_client.list_layer_versions(LayerName=name)["LayerVersions"]
    assert [v["Version"] for v in listed] == [2, 1]
    assert "Content" not in listed[0]
    # Filters: only versions declaring the runtime or architecture compatible.
    only = lambda_client.list_layer_versions(LayerName=name, CompatibleRuntime=RUNTIME)["LayerVersions"]
    assert [v["Version"] for v in only] == [1]
    mine = [item for item in lambda_client.list_layers()["Layers"] if item["LayerName"] == name]
    assert mine == [{"LayerName": name, "LayerArn": layer_arn(name),
                     "LatestMatchingVersion": {k: val for k, val in second.items()
                                               if k in ("LayerVersionArn", "Version", "Description", "CreatedDate")}}]
    filtered = [item for item in lambda_client.list_layers(CompatibleArchitecture="x86_64")["Layers"]
                if item["LayerName"] == name]
    assert filtered[0]["LatestMatchingVersion"]["Version"] == 1
    assert not [item for item in lambda_client.list_layers(CompatibleRuntime="java21")["Layers"]
                if item["LayerName"] == name]

    # Deleting is idempotent; numbers are never reused, even once every version is gone.
    for number in (1, 1, 2, 7):
        lambda_client.delete_layer_version(LayerName=name, VersionNumber=number)
    assert lambda_client.list_layer_versions(LayerName=name)["LayerVersions"] == []
    assert not [item for item in lambda_client.list_layers()["Layers"] if item["LayerName"] == name]
    assert layers({"a.txt": "a"}, name=name)["Version"] == 3


def test_pagination(lambda_client, layers):
    name = unique_name("layer")
    for _ in range(3):
        layers({"a.txt": "a"}, name=name)
    page = lambda_client.list_layer_versions(LayerName=name, MaxItems=2)
    assert [v["Version"] for v in page["LayerVersions"]] == [3, 2]
    rest = lambda_client.list_layer_versions(LayerName=name, MaxItems=2, Marker=page["NextMarker"])
    assert [v["Version"] for v in rest["LayerVersions"]] == [1] and "NextMarker" not in rest
    versions = [v["Version"] for v in lambda_client.get_paginator("list_layer_versions").paginate(
        LayerName=name, PaginationConfig={"PageSize": 1}).build_full_result()["LayerVersions"]]
    assert versions == [3, 2, 1]


def test_errors(lambda_client, layers):
    name = unique_name("layer")
    layers({"a.txt": "a"}, name=name)
    missing = "The resource you requested does not exist."
    assert failure(lambda_client.get_layer_version, LayerName=unique_name("nope"), VersionNumber=1) == (
        404, "ResourceNotFoundException", missing)
    assert failure(lambda_client.get_layer_version, LayerName=name, VersionNumber=2) == (
        404, "ResourceNotFoundException", missing)
    for number in (0, -1):
        assert failure(lambda_client.get_layer_version, LayerName=name, VersionNumber=number) == (
            400, "InvalidParameterValueException", "Layer Version Cannot be less than 1")
    assert failure(lambda_client.delete_layer_version, LayerName=name, VersionNumber=-1)[1] == (
        "InvalidParameterValueException")
    status, code, message = failure(lambda_client.get_layer_version_by_arn, Arn=layer_arn(name))
    assert (status, code) == (400, "ValidationException") and "at 'arn'" in message
    status, code, message = failure(lambda_client.publish_layer_version, LayerName=name,
                                    Content={"ZipFile": make_zip({"a": "a"})},
                                    CompatibleRuntimes=["cobol"], CompatibleArchitectures=["sparc", "x86_64"])
    assert (status, code) == (400, "ValidationException")
    assert message.startswith("2 validation errors detected: Value '[cobol]' at 'compatibleRuntimes'")
    assert "Value '[sparc, x86_64]' at 'compatibleArchitectures'" in message
    status, code, message = failure(lambda_client.list_layers, CompatibleRuntime="cobol")
    assert (status, code) == (400, "ValidationException") and "at 'compatibleRuntime'" in message
    assert failure(lambda_client.publish_layer_version, LayerName=name,
                   Content={"ZipFile": b"not a zip"})[:2] == (400, "InvalidParameterValueException")


def test_permissions(lambda_client, layers):
    name = unique_name("layer")
    layers({"a.txt": "a"}, name=name)
    version_arn = f"{layer_arn(name)}:1"
    assert failure(lambda_client.get_layer_version_policy, LayerName=name, VersionNumber=1) == (
        404, "ResourceNotFoundException", "No policy is associated with the given resource.")
    added = lambda_client.add_layer_version_permission(LayerName=name, VersionNumber=1, StatementId="s1",
                                                       Action="lambda:GetLayerVersion", Principal="*")
    assert added["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert json.loads(added["Statement"]) == {"Sid": "s1", "Effect": "Allow", "Principal": "*",
                                              "Action": "lambda:GetLayerVersion", "Resource": version_arn}
    assert failure(lambda_client.add_layer_version_permission, LayerName=name, VersionNumber=1, StatementId="s1",
                   Action="lambda:GetLayerVersion", Principal="*")[:2] == (409, "ResourceConflictException")
    assert failure(lambda_client.add_layer_version_permission, LayerName=name, VersionNumber=1, StatementId="s2",
                   Action="lambda:GetLayerVersion", Principal="*", RevisionId="wrong")[:2] == (
        412, "PreconditionFailedException")
    assert failure(lambda_client.add_layer_version_permission, LayerName=name, VersionNumber=1, StatementId="s3",
                   Action="lambda:InvokeFunction", Principal="*")[:2] == (400, "ValidationException")
    assert failure(lambda_client.add_layer_version_permission, LayerName=name, VersionNumber=2, StatementId="s3",
                   Action="lambda:GetLayerVersion", Principal="*") == (
        404, "ResourceNotFoundException", f"Layer version {version_arn[:-1]}2 does not exist.")
    second = lambda_client.add_layer_version_permission(
        LayerName=name, VersionNumber=1, StatementId="s2", Action="lambda:GetLayerVersion", Principal=ACCOUNT,
        OrganizationId="o-abcdefghij", RevisionId=added["RevisionId"])
    policy = lambda_client.get_layer_version_policy(LayerName=name, VersionNumber=1)
    assert policy["RevisionId"] == second["RevisionId"]
    assert [s["Sid"] for s in json.loads(policy["Policy"])["Statement"]] == ["s1", "s2"]
    assert failure(lambda_client.remove_layer_version_permission, LayerName=name, VersionNumber=1,
                   StatementId="nope") == (404, "ResourceNotFoundException",
                                           "Statement nope is not found in resource policy.")
    lambda_client.remove_layer_version_permission(LayerName=name, VersionNumber=1, StatementId="s2",
                                                  RevisionId=policy["RevisionId"])
    after = json.loads(lambda_client.get_layer_version_policy(LayerName=name, VersionNumber=1)["Policy"])
    assert [s["Sid"] for s in after["Statement"]] == ["s1"]


def test_function_layers_validation(lambda_client, layers, functions):
    name = unique_name("layer")
    one, two = layers({"a.txt": "a"}, name=name), layers({"a.txt": "b"}, name=name)
    fn = functions({"app.py": "def handler(e, c):\n    return 1\n"})

    def refused(arns: list[str]) -> tuple[int, str, str]:
        return failure(lambda_client.update_function_configuration, FunctionName=fn, Layers=arns)

    assert refused([one["LayerVersionArn"], two["LayerVersionArn"]]) == (
        400, "InvalidParameterValueException", "Two different versions of the same layer are not allowed to be "
        f"referenced in the same function. {one['LayerVersionArn']} and {two['LayerVersionArn']} are versions of "
        "the same layer.")
    assert refused([f"{layer_arn(name)}:9"]) == (
        400, "InvalidParameterValueException", f"Layer version {layer_arn(name)}:9 does not exist.")
    assert refused([layer_arn(name)])[:2] == (400, "ValidationException")
    assert refused([one["LayerVersionArn"].replace(REGION, "eu-west-1")]) == (
        400, "InvalidParameterValueException",
        f"Layers are not in the same region as the function. Layers are expected to be in region {REGION}.")
    six = [layers({"a.txt": "a"})["LayerVersionArn"] for _ in range(6)]
    assert refused(six) == (400, "InvalidParameterValueException", "Cannot reference more than 5 layers.")
    with pytest.raises(ClientError):
        lambda_client.create_function(FunctionName=unique_name("t"), Runtime=RUNTIME, Role="arn:aws:iam::"
                                      f"{ACCOUNT}:role/r", Handler="app.handler",
                                      Code={"ZipFile": make_zip({"app.py": ""})}, Layers=six)
    # Accepted: in the configuration with each package's size; Layers=[] removes them again.
    lambda_client.update_function_configuration(FunctionName=fn, Layers=[two["LayerVersionArn"]])
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=fn, WaiterConfig=WAIT)
    cfg = lambda_client.get_function_configuration(FunctionName=fn)
    assert cfg["Layers"] == [{"Arn": two["LayerVersionArn"], "CodeSize": two["Content"]["CodeSize"]}]
    lambda_client.update_function_configuration(FunctionName=fn, Layers=[])
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=fn, WaiterConfig=WAIT)
    assert "Layers" not in lambda_client.get_function_configuration(FunctionName=fn)


def _deps_layer(layers) -> dict:
    """A third-party package (dnslib, pure Python) as pip would lay it out in a layer, plus a module two layers
    both have, a package under python/lib/pythonX.Y/site-packages and an executable in bin/."""
    files: dict[str, str | bytes] = {f"python/{path}": data for path, data in installed_files("dnslib").items()}
    files["python/shared.py"] = "WHO = 'deps'\n"
    files[f"python/lib/{PY}/site-packages/deep/__init__.py"] = ""
    files["bin/layer-tool.sh"] = "#!/bin/sh\necho from-layer-bin\n"
    return layers(files)


def test_handler_imports_from_layers(lambda_client, layers, functions, endpoint):
    deps = _deps_layer(layers)
    override = layers({"python/shared.py": "WHO = 'override'\n"})
    fn = functions({"app.py": PROBE}, Layers=[deps["LayerVersionArn"], override["LayerVersionArn"]])
    out = invoke_ok(lambda_client, fn)
    assert out["shared"] == "override"   # the later layer's file wins
    assert out["tool"] == "from-layer-bin"
    if health(endpoint)["sandbox"] == "linux":
        assert out["opt_writable"] is False   # read-only, as on AWS (the process backend cannot enforce it)
    opt = out["sys_path"][2].removesuffix("/python")
    assert out["dnslib"] == f"{opt}/python/dnslib/__init__.py"
    assert out["deep"] == f"{opt}/python/lib/{PY}/site-packages/deep/__init__.py"
    assert out["sys_path"] == ["/var/task" if opt == "/opt" else out["sys_path"][0],
                               f"{opt}/python/lib/{PY}/site-packages", f"{opt}/python"]

    # The other order: the first layer's module now wins.
    lambda_client.update_function_configuration(FunctionName=fn, Layers=[override["LayerVersionArn"],
                                                                         deps["LayerVersionArn"]])
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=fn, WaiterConfig=WAIT)
    assert invoke_ok(lambda_client, fn)["shared"] == "deps"

    # A published version keeps its layers; deleting the layer versions does not take them from the function.
    version = lambda_client.publish_version(FunctionName=fn)["Version"]
    lambda_client.delete_layer_version(LayerName=deps["LayerArn"].rsplit(":", 1)[1], VersionNumber=deps["Version"])
    assert invoke_ok(lambda_client, fn)["shared"] == "deps"
    assert invoke_ok(lambda_client, fn, Qualifier=version)["dnslib"].endswith("/python/dnslib/__init__.py")


def test_layers_survive_restart(lamina_factory):
    server = lamina_factory()
    client = server.client()
    deps = client.publish_layer_version(LayerName="deps", Content={"ZipFile": make_zip(
        {f"python/{path}": data for path, data in installed_files("dnslib").items()})})
    create_function(client, "uses-layer", {"app.py": "import dnslib\ndef handler(e, c):\n    return dnslib.__file__\n"},
                    Layers=[deps["LayerVersionArn"]])
    client.add_layer_version_permission(LayerName="deps", VersionNumber=1, StatementId="s1",
                                        Action="lambda:GetLayerVersion", Principal="*")
    server.stop()
    server = lamina_factory(data_dir=server.data_dir)
    client = server.client()
    assert invoke_ok(client, "uses-layer").endswith("/python/dnslib/__init__.py")
    assert client.get_layer_version(LayerName="deps", VersionNumber=1)["Content"]["CodeSha256"] == (
        deps["Content"]["CodeSha256"])
    assert json.loads(client.get_layer_version_policy(LayerName="deps", VersionNumber=1)["Policy"])["Statement"]
    client.delete_layer_version(LayerName="deps", VersionNumber=1)
    assert client.publish_layer_version(LayerName="deps", Content={"ZipFile": make_zip({"a": "a"})})["Version"] == 2


def test_custom_runtime_bootstrap_from_layer(lambda_client, layers, functions):
    """provided.al2023 with no bootstrap in the package runs the one a layer brings (/opt/bootstrap)."""
    runtime = layers({"bootstrap": HANDWRITTEN_BOOTSTRAP})
    fn = functions({"README": "code without a bootstrap"}, Runtime="provided.al2023", handler="x",
                   Layers=[runtime["LayerVersionArn"]])
    assert invoke_ok(lambda_client, fn, {"via": "layer"})["echo"] == {"via": "layer"}


def test_account_code_size_counts_layers(lambda_client, layers):
    before = lambda_client.get_account_settings()["AccountUsage"]["TotalCodeSize"]
    published = layers({"a.txt": "x" * 1000})
    after = lambda_client.get_account_settings()["AccountUsage"]["TotalCodeSize"]
    assert after - before == published["Content"]["CodeSize"]


def test_layer_zip_is_unpacked_as_packaged(lambda_client, layers, functions):
    """Symlinks inside a layer stay links inside it; exec bits are kept."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo("python/real.py")
        info.external_attr = 0o100644 << 16
        zf.writestr(info, "V = 'real'\n")
        link = zipfile.ZipInfo("python/alias.py")
        link.external_attr = 0o120777 << 16
        zf.writestr(link, "real.py")
    published = lambda_client.publish_layer_version(LayerName=unique_name("layer"),
                                                    Content={"ZipFile": buf.getvalue()})
    try:
        fn = functions({"app.py": "import alias\ndef handler(e, c):\n    return alias.V\n"},
                       Layers=[published["LayerVersionArn"]])
        assert invoke_ok(lambda_client, fn) == "real"
    finally:
        lambda_client.delete_layer_version(LayerName=published["LayerArn"].rsplit(":", 1)[1], VersionNumber=1)


def test_node_handler_requires_module_from_layer(lambda_client, layers, functions, endpoint):
    """A layer holding a Node.js module under nodejs/node_modules: `require` finds it through NODE_PATH."""
    available = health(endpoint)["runtimes"]["available"]
    runtime = next((r for r in sorted(available) if r.startswith("nodejs")), None)
    if runtime is None:
        pytest.skip("no Node.js on this host")
    lib = layers({"nodejs/node_modules/greeter/package.json": json.dumps({"name": "greeter", "main": "index.js"}),
                  "nodejs/node_modules/greeter/index.js": "exports.greet = (n) => `hello ${n} from a layer`;"})
    fn = functions({"index.js": "const { greet } = require('greeter');\n"
                                "exports.handler = async (event) => ({ text: greet(event.name), "
                                "path: require.resolve('greeter') });"},
                   Runtime=runtime, handler="index.handler", Layers=[lib["LayerVersionArn"]])
    out = invoke_ok(lambda_client, fn, {"name": "node"})
    assert out["text"] == "hello node from a layer"
    assert out["path"].endswith("/nodejs/node_modules/greeter/index.js")
