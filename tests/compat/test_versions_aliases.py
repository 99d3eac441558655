"""Versions and aliases with boto3 against a real `lamina serve`: PublishVersion, ListVersionsByFunction,
the alias operations, invoking a version or an alias (weighted routing included), deleting a version,
AWS's error types and messages, persistence across a restart, and a function URL on an alias."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from helpers import (
    ROLE,
    RUNTIME,
    WAIT,
    FunctionUrl,
    create_function,
    decode_log,
    environments,
    failure,
    fn_arn,
    invoke,
    make_zip,
    sha256_b64,
    unique_name,
    wait_environments,
)

pytestmark = pytest.mark.timeout(120)

# Reports which code (VERSION), which configuration (COLOR) and which version ran it, and a token
# made on first use in each environment process (forks of one zygote start with it unset).
HANDLER = '''
import os, uuid

_ENV = {}

def handler(event, context):
    if "id" not in _ENV:
        _ENV["id"] = uuid.uuid4().hex
    return {"code": VERSION, "color": os.environ.get("COLOR"), "fn_version": context.function_version,
            "env_version": os.environ["AWS_LAMBDA_FUNCTION_VERSION"], "arn": context.invoked_function_arn,
            "env_id": _ENV["id"]}
'''


def code(version: str) -> dict[str, str]:
    return {"app.py": f"VERSION = {version!r}\n" + HANDLER}


def _update_code(client, name: str, version: str, **kwargs) -> dict:
    resp = client.update_function_code(FunctionName=name, ZipFile=make_zip(code(version)), **kwargs)
    client.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    return resp


def _two_versions(client, name: str) -> None:
    """Version 1 runs code v1 with COLOR=red, version 2 code v2 with COLOR=blue ($LATEST too)."""
    assert client.publish_version(FunctionName=name)["Version"] == "1"
    _update_code(client, name, "v2")
    client.update_function_configuration(FunctionName=name, Environment={"Variables": {"COLOR": "blue"}})
    client.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    assert client.publish_version(FunctionName=name)["Version"] == "2"


@pytest.fixture
def fn(lambda_client, functions) -> str:
    return functions(code("v1"), prefix="ver", Environment={"Variables": {"COLOR": "red"}})


def test_publish_and_list_versions(lambda_client, fn):
    latest = lambda_client.get_function_configuration(FunctionName=fn)
    v1 = lambda_client.publish_version(FunctionName=fn, Description="first")
    assert v1["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert v1["Version"] == "1" and v1["FunctionArn"] == fn_arn(fn) + ":1", v1
    assert (v1["State"], v1["LastUpdateStatus"], v1["Description"]) == ("Active", "Successful", "first")
    assert v1["CodeSha256"] == latest["CodeSha256"] and v1["Environment"] == {"Variables": {"COLOR": "red"}}
    assert v1["RevisionId"] != latest["RevisionId"]
    # Publishing changes $LATEST's revision; publishing again with nothing changed returns version 1.
    assert lambda_client.get_function_configuration(FunctionName=fn)["RevisionId"] != latest["RevisionId"]
    again = lambda_client.publish_version(FunctionName=fn, Description="ignored")
    assert (again["Version"], again["RevisionId"], again["Description"]) == ("1", v1["RevisionId"], "first")

    # Preconditions on $LATEST: its code hash and revision.
    status, err, message = failure(lambda_client.publish_version, FunctionName=fn, CodeSha256="bogus")
    assert (status, err) == (400, "InvalidParameterValueException"), message
    assert message == (f"CodeSHA256 (bogus) is different from current CodeSHA256 in $LATEST "
                       f"({latest['CodeSha256']}). Please try again with the CodeSHA256 in $LATEST.")
    status, err, message = failure(lambda_client.publish_version, FunctionName=fn, RevisionId="nope")
    assert (status, err) == (412, "PreconditionFailedException") and "Revision Id" in message

    _update_code(lambda_client, fn, "v2")
    current = lambda_client.get_function_configuration(FunctionName=fn)
    v2 = lambda_client.publish_version(FunctionName=fn, CodeSha256=current["CodeSha256"],
                                       RevisionId=current["RevisionId"])
    assert v2["Version"] == "2" and v2["Description"] == "", v2  # the description comes from $LATEST

    listed = lambda_client.list_versions_by_function(FunctionName=fn)["Versions"]
    assert [v["Version"] for v in listed] == ["$LATEST", "1", "2"]
    assert [v["FunctionArn"] for v in listed] == [fn_arn(fn) + q for q in (":$LATEST", ":1", ":2")]
    assert all("State" not in v and "LastUpdateStatus" not in v for v in listed), listed
    pages, marker = [], None
    while True:
        kwargs = {"Marker": marker} if marker else {}
        page = lambda_client.list_versions_by_function(FunctionName=fn, MaxItems=1, **kwargs)
        pages.append([v["Version"] for v in page["Versions"]])
        marker = page.get("NextMarker")
        if not marker:
            break
    assert pages == [["$LATEST"], ["1"], ["2"]]

    got = lambda_client.get_function(FunctionName=fn, Qualifier="1")
    assert got["Configuration"]["Version"] == "1" and got["Configuration"]["FunctionArn"] == fn_arn(fn) + ":1"
    assert got["Configuration"]["CodeSha256"] == latest["CodeSha256"]
    assert lambda_client.get_function_configuration(FunctionName=f"{fn}:2")["CodeSha256"] == current["CodeSha256"]
    conf = lambda_client.get_function_configuration(FunctionName=fn, Qualifier="$LATEST")
    assert conf["FunctionArn"] == fn_arn(fn) + ":$LATEST" and conf["Version"] == "$LATEST"


def test_invoke_versions(lambda_client, fn):
    _two_versions(lambda_client, fn)
    resp, body = invoke(lambda_client, fn, {}, Qualifier="1", LogType="Tail")
    assert resp["ExecutedVersion"] == "1" and "FunctionError" not in resp, body
    assert body["code"] == "v1" and body["color"] == "red", body
    assert body["fn_version"] == body["env_version"] == "1" and body["arn"] == fn_arn(fn) + ":1"
    assert f"START RequestId: {resp['ResponseMetadata']['HTTPHeaders']['x-amzn-requestid']} Version: 1" \
        in decode_log(resp)

    resp, v2 = invoke(lambda_client, fn_arn(fn) + ":2", {})
    assert resp["ExecutedVersion"] == "2" and (v2["code"], v2["color"], v2["fn_version"]) == ("v2", "blue", "2")
    assert v2["arn"] == fn_arn(fn) + ":2"
    resp, latest = invoke(lambda_client, fn, {})
    assert resp["ExecutedVersion"] == "$LATEST" and (latest["code"], latest["color"]) == ("v2", "blue")
    assert latest["fn_version"] == "$LATEST"
    # Same code and configuration, but version 2 and $LATEST never share an environment.
    assert latest["env_id"] != v2["env_id"]
    resp, again = invoke(lambda_client, f"{fn}:2", {})
    assert again["env_id"] == v2["env_id"], "version 2's warm environment was not reused"

    resp = lambda_client.invoke(FunctionName=fn, Qualifier="1", InvocationType="DryRun")
    assert resp["StatusCode"] == 204 and resp["ExecutedVersion"] == "1"


def test_version_and_qualifier_errors(lambda_client, fn):
    lambda_client.publish_version(FunctionName=fn)
    status, err, message = failure(lambda_client.get_function, FunctionName=fn, Qualifier="9")
    assert (status, err, message) == (404, "ResourceNotFoundException", f"Function not found: {fn_arn(fn)}:9")
    status, err, message = failure(lambda_client.invoke, FunctionName=fn, Qualifier="9")
    assert (status, err) == (404, "ResourceNotFoundException") and message.endswith(":9")
    status, err, message = failure(lambda_client.invoke, FunctionName=fn, Qualifier="nosuchalias")
    assert (status, err) == (404, "ResourceNotFoundException") and message.endswith(":nosuchalias")
    status, err, message = failure(lambda_client.get_function_configuration, FunctionName=f"{fn}:1", Qualifier="2")
    assert (status, err) == (400, "InvalidParameterValueException") and "derived qualifier" in message
    status, err, _ = failure(lambda_client.update_function_configuration, FunctionName=f"{fn}:1", Timeout=5)
    assert (status, err) == (400, "InvalidParameterValueException")
    status, err, message = failure(lambda_client.delete_function, FunctionName=fn, Qualifier="$LATEST")
    assert (status, err) == (400, "InvalidParameterValueException") and "$LATEST" in message
    status, err, _ = failure(lambda_client.publish_version, FunctionName=unique_name("missing"))
    assert (status, err) == (404, "ResourceNotFoundException")


def test_aliases_lifecycle(lambda_client, fn):
    _two_versions(lambda_client, fn)
    created = lambda_client.create_alias(FunctionName=fn, Name="live", FunctionVersion="1", Description="prod")
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert created["AliasArn"] == fn_arn(fn) + ":live" and created["FunctionVersion"] == "1"
    assert created["Description"] == "prod" and "RoutingConfig" not in created and created["RevisionId"]
    got = lambda_client.get_alias(FunctionName=fn, Name="live")
    assert {k: got[k] for k in ("AliasArn", "Name", "FunctionVersion", "RevisionId")} == \
        {k: created[k] for k in ("AliasArn", "Name", "FunctionVersion", "RevisionId")}

    resp, body = invoke(lambda_client, fn, {}, Qualifier="live")
    assert resp["ExecutedVersion"] == "1" and body["code"] == "v1" and body["arn"] == fn_arn(fn) + ":live"
    resp, body = invoke(lambda_client, f"{fn}:live", {})
    assert resp["ExecutedVersion"] == "1" and body["fn_version"] == "1"
    conf = lambda_client.get_function_configuration(FunctionName=fn, Qualifier="live")
    assert conf["FunctionArn"] == fn_arn(fn) + ":live" and conf["Version"] == "1"
    assert lambda_client.get_function(FunctionName=fn_arn(fn) + ":live")["Configuration"]["Version"] == "1"

    status, err, message = failure(lambda_client.update_alias, FunctionName=fn, Name="live", FunctionVersion="2",
                                   RevisionId="stale")
    assert (status, err) == (412, "PreconditionFailedException") and "GetFunction/GetAlias" in message
    updated = lambda_client.update_alias(FunctionName=fn, Name="live", FunctionVersion="2",
                                         RevisionId=created["RevisionId"])
    assert updated["FunctionVersion"] == "2" and updated["Description"] == "prod"
    assert updated["RevisionId"] != created["RevisionId"]
    resp, body = invoke(lambda_client, fn, {}, Qualifier="live")
    assert resp["ExecutedVersion"] == "2" and body["code"] == "v2"

    lambda_client.create_alias(FunctionName=fn, Name="beta", FunctionVersion="1")
    lambda_client.create_alias(FunctionName=fn, Name="edge", FunctionVersion="$LATEST")
    names = [a["Name"] for a in lambda_client.list_aliases(FunctionName=fn)["Aliases"]]
    assert names == ["beta", "edge", "live"]
    assert [a["Name"] for a in lambda_client.list_aliases(FunctionName=fn, FunctionVersion="1")["Aliases"]] == \
        ["beta"]
    first = lambda_client.list_aliases(FunctionName=fn, MaxItems=2)
    assert [a["Name"] for a in first["Aliases"]] == ["beta", "edge"] and first["NextMarker"]
    rest = lambda_client.list_aliases(FunctionName=fn, MaxItems=2, Marker=first["NextMarker"])
    assert [a["Name"] for a in rest["Aliases"]] == ["live"] and "NextMarker" not in rest
    resp, body = invoke(lambda_client, fn, {}, Qualifier="edge")
    assert resp["ExecutedVersion"] == "$LATEST"

    assert lambda_client.delete_alias(FunctionName=fn, Name="beta")["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert lambda_client.delete_alias(FunctionName=fn, Name="beta")["ResponseMetadata"]["HTTPStatusCode"] == 204
    status, err, message = failure(lambda_client.get_alias, FunctionName=fn, Name="beta")
    assert (status, err, message) == (404, "ResourceNotFoundException", f"Cannot find alias arn: {fn_arn(fn)}:beta")
    status, err, message = failure(lambda_client.update_alias, FunctionName=fn, Name="beta", FunctionVersion="1")
    assert (status, err, message) == (404, "ResourceNotFoundException", f"Alias not found: {fn_arn(fn)}:beta")
    status, err, _ = failure(lambda_client.invoke, FunctionName=fn, Qualifier="beta")
    assert (status, err) == (404, "ResourceNotFoundException")


def test_alias_validation_errors(lambda_client, fn):
    _two_versions(lambda_client, fn)
    lambda_client.create_alias(FunctionName=fn, Name="live", FunctionVersion="1")
    cases = [
        ({"Name": "live", "FunctionVersion": "1"}, 409, "ResourceConflictException",
         f"Alias already exists: {fn_arn(fn)}:live"),
        ({"Name": "2024", "FunctionVersion": "1"}, 400, "ValidationException",
         "1 validation error detected: Value '2024' at 'name' failed to satisfy constraint: Member must satisfy "
         "regular expression pattern: (?!^[0-9]+$)([a-zA-Z0-9-_]+)"),
        ({"Name": "a", "FunctionVersion": "10"}, 404, "ResourceNotFoundException",
         f"Function not found: {fn_arn(fn)}:10"),
        ({"Name": "a", "FunctionVersion": "1", "RoutingConfig": {"AdditionalVersionWeights": {"2": 0.5, "3": 0.1}}},
         400, "InvalidParameterValueException", "Number of items in AdditionalVersionWeights cannot be greater than 1"),
        ({"Name": "a", "FunctionVersion": "1", "RoutingConfig": {"AdditionalVersionWeights": {"2": 2.0}}},
         400, "ValidationException",
         "1 validation error detected: Value '{2=2.0}' at 'routingConfig.additionalVersionWeights' failed to "
         "satisfy constraint: Map value must satisfy constraint: [Member must have value less than or equal to 1.0, "
         "Member must have value greater than or equal to 0.0, Member must not be null]"),
        ({"Name": "a", "FunctionVersion": "1", "RoutingConfig": {"AdditionalVersionWeights": {"1": 0.5}}},
         400, "InvalidParameterValueException",
         "Invalid function version 1. Function version 1 is already included in routing configuration."),
        ({"Name": "a", "FunctionVersion": "$LATEST", "RoutingConfig": {"AdditionalVersionWeights": {"1": 0.5}}},
         400, "InvalidParameterValueException",
         "$LATEST is not supported for an alias pointing to more than 1 version"),
        ({"Name": "a", "FunctionVersion": "1", "RoutingConfig": {"AdditionalVersionWeights": {"$LATEST": 0.5}}},
         400, "ValidationException", None),
        ({"Name": "a", "FunctionVersion": "1", "RoutingConfig": {"AdditionalVersionWeights": {"10": 0.5}}},
         404, "ResourceNotFoundException", f"Function not found: {fn_arn(fn)}:10"),
    ]
    for kwargs, status, code_, message in cases:
        got = failure(lambda_client.create_alias, FunctionName=fn, **kwargs)
        assert got[:2] == (status, code_), (kwargs, got)
        if message is not None:
            assert got[2] == message, (kwargs, got)
    status, err, message = failure(lambda_client.create_alias, FunctionName=unique_name("missing"), Name="a",
                                   FunctionVersion="1")
    assert (status, err) == (404, "ResourceNotFoundException") and message.endswith(":1")
    # Nothing was created by the failed calls.
    assert [a["Name"] for a in lambda_client.list_aliases(FunctionName=fn)["Aliases"]] == ["live"]
    # An empty routing configuration is no routing configuration.
    alias = lambda_client.create_alias(FunctionName=fn, Name="plain", FunctionVersion="1",
                                       RoutingConfig={"AdditionalVersionWeights": {}})
    assert "RoutingConfig" not in alias


def test_weighted_alias_routes_both_versions(lambda_client, fn):
    _two_versions(lambda_client, fn)
    alias = lambda_client.create_alias(FunctionName=fn, Name="canary", FunctionVersion="1",
                                       RoutingConfig={"AdditionalVersionWeights": {"2": 0.3}})
    assert alias["RoutingConfig"] == {"AdditionalVersionWeights": {"2": 0.3}}
    seen: Counter[str] = Counter()
    for _ in range(200):
        resp, body = invoke(lambda_client, fn, {}, Qualifier="canary")
        assert "FunctionError" not in resp, body
        executed = resp["ExecutedVersion"]
        assert body["fn_version"] == executed and body["code"] == {"1": "v1", "2": "v2"}[executed], (executed, body)
        seen[executed] += 1
    assert set(seen) == {"1", "2"}, seen
    assert 25 <= seen["2"] <= 100, seen  # expected 60 of 200 (sd about 6.5)

    # Weights are updated in place; an empty map removes the routing.
    lambda_client.update_alias(FunctionName=fn, Name="canary", RoutingConfig={"AdditionalVersionWeights": {"2": 1.0}})
    assert {invoke(lambda_client, fn, {}, Qualifier="canary")[0]["ExecutedVersion"] for _ in range(10)} == {"2"}
    updated = lambda_client.update_alias(FunctionName=fn, Name="canary", RoutingConfig={"AdditionalVersionWeights": {}})
    assert "RoutingConfig" not in updated
    assert {invoke(lambda_client, fn, {}, Qualifier="canary")[0]["ExecutedVersion"] for _ in range(10)} == {"1"}


def test_delete_version(lambda_client, fn):
    _two_versions(lambda_client, fn)
    lambda_client.create_alias(FunctionName=fn, Name="live", FunctionVersion="1")
    lambda_client.create_alias(FunctionName=fn, Name="canary", FunctionVersion="1",
                               RoutingConfig={"AdditionalVersionWeights": {"2": 0.1}})
    status, err, message = failure(lambda_client.delete_function, FunctionName=fn, Qualifier="1")
    assert (status, err, message) == (409, "ResourceConflictException", "Unable to delete version because the "
                                      "following aliases reference it: [canary, live]")
    status, err, message = failure(lambda_client.delete_function, FunctionName=fn, Qualifier="2")
    assert (status, err) == (409, "ResourceConflictException") and message.endswith("[canary]")
    status, err, message = failure(lambda_client.delete_function, FunctionName=fn, Qualifier="live")
    assert (status, err) == (400, "InvalidParameterValueException")

    lambda_client.delete_alias(FunctionName=fn, Name="canary")
    invoke(lambda_client, fn, {}, Qualifier="2")  # warm, then deleted: its environment goes
    resp = lambda_client.delete_function(FunctionName=fn, Qualifier="2")
    assert resp["ResponseMetadata"]["HTTPStatusCode"] in (200, 204)
    assert [v["Version"] for v in lambda_client.list_versions_by_function(FunctionName=fn)["Versions"]] == \
        ["$LATEST", "1"]
    status, err, _ = failure(lambda_client.invoke, FunctionName=fn, Qualifier="2")
    assert (status, err) == (404, "ResourceNotFoundException")
    lambda_client.delete_function(FunctionName=fn, Qualifier="2")  # already gone: still a success
    # Numbers are never reused; the function and the other version still run.
    lambda_client.update_function_configuration(FunctionName=fn, Timeout=7)
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=fn, WaiterConfig=WAIT)
    assert lambda_client.publish_version(FunctionName=fn)["Version"] == "3"
    assert invoke(lambda_client, fn, {}, Qualifier="live")[1]["code"] == "v1"
    assert invoke(lambda_client, fn, {})[0]["ExecutedVersion"] == "$LATEST"


def test_publish_on_create_and_update(lambda_client):
    name = unique_name("pub")
    try:
        resp = lambda_client.create_function(FunctionName=name, Runtime=RUNTIME, Role=ROLE, Handler="app.handler",
                                             Code={"ZipFile": make_zip(code("v1"))}, Publish=True)
        assert resp["Version"] == "1" and resp["FunctionArn"] == fn_arn(name), resp
        lambda_client.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAIT)
        lambda_client.get_waiter("function_active_v2").wait(FunctionName=name, Qualifier="1", WaiterConfig=WAIT)
        conf = lambda_client.get_function_configuration(FunctionName=name, Qualifier="1")
        assert (conf["State"], conf["LastUpdateStatus"]) == ("Active", "Successful"), conf

        new_code = make_zip(code("v2"))
        resp = lambda_client.update_function_code(FunctionName=name, ZipFile=new_code, Publish=True)
        assert resp["Version"] == "2" and resp["FunctionArn"] == fn_arn(name) + ":2", resp
        assert resp["CodeSha256"] == sha256_b64(new_code)
        lambda_client.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAIT)
        lambda_client.get_waiter("function_active_v2").wait(FunctionName=name, Qualifier="2", WaiterConfig=WAIT)
        resp, body = invoke(lambda_client, name, {}, Qualifier="2")
        assert resp["ExecutedVersion"] == "2" and body["code"] == "v2"
        assert invoke(lambda_client, name, {}, Qualifier="1")[1]["code"] == "v1"
    finally:
        lambda_client.delete_function(FunctionName=name)


def test_delete_function_takes_versions_and_aliases(lambda_client):
    name = unique_name("gone")
    create_function(lambda_client, name, code("v1"))
    lambda_client.publish_version(FunctionName=name)
    lambda_client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    lambda_client.delete_function(FunctionName=name)
    status, err, _ = failure(lambda_client.get_function, FunctionName=name, Qualifier="1")
    assert (status, err) == (404, "ResourceNotFoundException")
    create_function(lambda_client, name, code("again"))
    try:
        assert [v["Version"] for v in lambda_client.list_versions_by_function(FunctionName=name)["Versions"]] == \
            ["$LATEST"]
        assert lambda_client.list_aliases(FunctionName=name)["Aliases"] == []
        assert lambda_client.publish_version(FunctionName=name)["Version"] == "1"
    finally:
        lambda_client.delete_function(FunctionName=name)


def test_versions_and_aliases_survive_restart(lamina_factory):
    first = lamina_factory()
    client = first.client()
    name = unique_name("persist")
    create_function(client, name, code("v1"), Environment={"Variables": {"COLOR": "red"}})
    _two_versions(client, name)
    client.create_alias(FunctionName=name, Name="live", FunctionVersion="1", Description="kept",
                        RoutingConfig={"AdditionalVersionWeights": {"2": 0.25}})
    before = client.list_versions_by_function(FunctionName=name)["Versions"]
    alias_before = client.get_alias(FunctionName=name, Name="live")
    assert first.stop() == 0

    second = lamina_factory(first.data_dir)
    client = second.client()
    client.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    after = client.list_versions_by_function(FunctionName=name)["Versions"]
    assert [(v["Version"], v["RevisionId"], v["CodeSha256"]) for v in after] == \
        [(v["Version"], v["RevisionId"], v["CodeSha256"]) for v in before]
    alias = client.get_alias(FunctionName=name, Name="live")
    for key in ("AliasArn", "FunctionVersion", "Description", "RoutingConfig", "RevisionId"):
        assert alias[key] == alias_before[key], key
    resp, body = invoke(client, name, {}, Qualifier="1")
    assert resp["ExecutedVersion"] == "1" and (body["code"], body["color"]) == ("v1", "red"), body
    seen = {invoke(client, name, {}, Qualifier="live")[0]["ExecutedVersion"] for _ in range(40)}
    assert seen == {"1", "2"}, seen
    client.update_function_configuration(FunctionName=name, Timeout=8)
    client.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAIT)
    assert client.publish_version(FunctionName=name)["Version"] == "3"

    # Deleting a version stops its (warm) environment; the others keep theirs.
    running = environments(second.endpoint)
    client.delete_alias(FunctionName=name, Name="live")
    client.delete_function(FunctionName=name, Qualifier="1")
    wait_environments(second.endpoint, running - 1)
    assert invoke(client, name, {}, Qualifier="2")[1]["code"] == "v2"
    assert second.stop() == 0
    third = lamina_factory(first.data_dir)
    client = third.client()
    assert [v["Version"] for v in client.list_versions_by_function(FunctionName=name)["Versions"]] == \
        ["$LATEST", "2", "3"]
    assert client.list_aliases(FunctionName=name)["Aliases"] == []


def test_function_url_on_alias(lambda_client, endpoint, fn):
    _two_versions(lambda_client, fn)
    lambda_client.create_alias(FunctionName=fn, Name="live", FunctionVersion="1")
    url = lambda_client.create_function_url_config(FunctionName=fn, Qualifier="live", AuthType="NONE")
    assert url["FunctionArn"] == fn_arn(fn) + ":live"
    web = FunctionUrl(endpoint, url["FunctionUrl"])  # also checks the URL's form
    assert lambda_client.get_function_url_config(FunctionName=fn, Qualifier="live")["FunctionUrl"] == \
        url["FunctionUrl"]

    status, _, body = web.get("/", form="path")
    assert status == 200, body
    out = json.loads(body)
    assert (out["code"], out["fn_version"], out["arn"]) == ("v1", "1", fn_arn(fn) + ":live"), out

    lambda_client.update_alias(FunctionName=fn, Name="live", FunctionVersion="2")
    status, _, body = web.get("/", form="path")
    assert status == 200 and json.loads(body)["code"] == "v2", body

    lambda_client.add_permission(FunctionName=fn, Qualifier="live", StatementId="public", Principal="*",
                                 Action="lambda:InvokeFunctionUrl", FunctionUrlAuthType="NONE")
    policy = json.loads(lambda_client.get_policy(FunctionName=fn, Qualifier="live")["Policy"])
    assert policy["Statement"][0]["Resource"] == fn_arn(fn) + ":live"

    # The alias's URL and policy go with it: a new alias of the same name starts without them.
    lambda_client.delete_alias(FunctionName=fn, Name="live")
    status, _, _ = web.get("/", form="path")
    assert status == 404
    got = failure(lambda_client.get_function_url_config, FunctionName=fn, Qualifier="live")
    assert got[:2] == (404, "ResourceNotFoundException")
    lambda_client.create_alias(FunctionName=fn, Name="live", FunctionVersion="1")
    got = failure(lambda_client.get_function_url_config, FunctionName=fn, Qualifier="live")
    assert got[:2] == (404, "ResourceNotFoundException")
    got = failure(lambda_client.get_policy, FunctionName=fn, Qualifier="live")
    assert got[:2] == (404, "ResourceNotFoundException")

