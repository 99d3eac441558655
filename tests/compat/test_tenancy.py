"""Tenant isolation: TenancyConfig.TenantIsolationMode PER_TENANT through a real `lamina serve` and boto3.

A PER_TENANT function is invoked with X-Amz-Tenant-Id (boto3's TenantId); each of its execution
environments only ever serves one tenant, and the handler sees the tenant as context.tenant_id.
"""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError, ParamValidationError

from helpers import (
    ROLE,
    RUNTIME,
    FunctionUrl,
    assert_aws_error,
    create_function,
    invoke,
    make_zip,
    raw_request,
    unique_name,
    wait_environments,
)

APP = '''
import os
SEEN = []          # the tenant ids this environment has served, in order

def handler(event, context):
    SEEN.append(context.tenant_id)
    return {"tenant": context.tenant_id, "seen": SEEN, "stream": context.log_stream_name,
            "env_stream": os.environ["AWS_LAMBDA_LOG_STREAM_NAME"], "event": event}
'''

BOOTSTRAP = '''#!/usr/bin/python3
import http.client, json, os
host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
conn = http.client.HTTPConnection(host, int(port))
seen = []
while True:
    conn.request("GET", "/2018-06-01/runtime/invocation/next")
    resp = conn.getresponse()
    resp.read()
    rid = resp.getheader("Lambda-Runtime-Aws-Request-Id")
    seen.append(resp.getheader("Lambda-Runtime-Aws-Tenant-Id"))
    conn.request("POST", f"/2018-06-01/runtime/invocation/{rid}/response", json.dumps({"seen": seen}))
    conn.getresponse().read()
'''

PER_TENANT = {"TenantIsolationMode": "PER_TENANT"}


@pytest.fixture
def tenant_fn(lambda_client):
    name = unique_name("tenancy")
    created = create_function(lambda_client, name, {"app.py": APP}, TenancyConfig=PER_TENANT)
    assert created["TenancyConfig"] == PER_TENANT
    yield name
    lambda_client.delete_function(FunctionName=name)


def test_tenants_get_their_own_environments(lambda_client, tenant_fn):
    results: dict[str, list[dict]] = {"blue": [], "green": []}
    for tenant in ("blue", "green", "blue", "green", "blue", "green"):
        resp, body = invoke(lambda_client, tenant_fn, {"t": tenant}, TenantId=tenant)
        assert resp["StatusCode"] == 200 and "FunctionError" not in resp, body
        assert body["tenant"] == tenant and body["event"] == {"t": tenant}
        # Whatever environment served this, it has only ever served this tenant.
        assert set(body["seen"]) == {tenant}, body
        results[tenant].append(body)
    blue_streams = {b["stream"] for b in results["blue"]}
    green_streams = {b["stream"] for b in results["green"]}
    assert not blue_streams & green_streams
    # Sequential invocations of one tenant reuse its warm environment.
    assert len(blue_streams) == 1 and len(results["blue"][-1]["seen"]) == 3
    assert results["blue"][0]["stream"] == results["blue"][0]["env_stream"]


def test_tenant_id_is_required_and_validated(lambda_client, endpoint, tenant_fn):
    with pytest.raises(ClientError) as err:
        lambda_client.invoke(FunctionName=tenant_fn, Payload=b"{}")
    assert err.value.response["Error"]["Code"] == "InvalidParameterValueException"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "tenant" in err.value.response["Error"]["Message"].lower()
    path = f"/2015-03-31/functions/{tenant_fn}/invocations"
    # Not the model's TenantId pattern, or longer than 256 characters.
    for bad in ("no#hash", "x" * 257):
        resp = raw_request(endpoint, "POST", path, b"{}", {"X-Amz-Tenant-Id": bad})
        assert_aws_error(resp, 400, "ValidationException", "tenantId")
    resp = raw_request(endpoint, "POST", path, b"{}", {"X-Amz-Tenant-Id": "a.b_c:d/e=f+g-h@i j"})
    assert resp.status == 200, resp.describe()
    assert json.loads(resp.body)["tenant"] == "a.b_c:d/e=f+g-h@i j"
    # Asynchronous invocations carry the tenant too, and DryRun checks it.
    resp = raw_request(endpoint, "POST", path, b"{}", {"X-Amz-Invocation-Type": "Event"})
    assert_aws_error(resp, 400, "InvalidParameterValueException")
    resp = raw_request(endpoint, "POST", path, b"{}", {"X-Amz-Invocation-Type": "Event", "X-Amz-Tenant-Id": "t1"})
    assert resp.status == 202, resp.describe()
    resp = raw_request(endpoint, "POST", path, b"{}", {"X-Amz-Invocation-Type": "DryRun"})
    assert_aws_error(resp, 400, "InvalidParameterValueException")


def test_streaming_invoke_carries_the_tenant(lambda_client, tenant_fn):
    with pytest.raises(ClientError) as err:
        lambda_client.invoke_with_response_stream(FunctionName=tenant_fn, Payload=b"{}")
    assert err.value.response["Error"]["Code"] == "InvalidParameterValueException"
    resp = lambda_client.invoke_with_response_stream(FunctionName=tenant_fn, Payload=b"{}", TenantId="streamer")
    chunks = b"".join(e["PayloadChunk"]["Payload"] for e in resp["EventStream"] if "PayloadChunk" in e)
    assert json.loads(chunks)["seen"] == ["streamer"]


def test_tenant_id_on_a_function_without_tenancy_is_refused(lambda_client, functions):
    name = functions({"app.py": APP})
    cfg = lambda_client.get_function_configuration(FunctionName=name)
    assert "TenancyConfig" not in cfg
    with pytest.raises(ClientError) as err:
        lambda_client.invoke(FunctionName=name, Payload=b"{}", TenantId="blue")
    assert err.value.response["Error"]["Code"] == "InvalidParameterValueException"
    resp, body = invoke(lambda_client, name, {})
    assert body["tenant"] is None


def test_tenancy_config_is_validated_shown_and_immutable(lambda_client, endpoint, tenant_fn):
    name = unique_name("tenancy-bad")
    with pytest.raises(ClientError) as err:
        lambda_client.create_function(FunctionName=name, Runtime=RUNTIME, Role=ROLE, Handler="app.handler",
                                      Code={"ZipFile": make_zip({"app.py": APP})},
                                      TenancyConfig={"TenantIsolationMode": "SHARED"})
    assert err.value.response["Error"]["Code"] == "ValidationException"
    assert "PER_TENANT" in err.value.response["Error"]["Message"]

    assert lambda_client.get_function(FunctionName=tenant_fn)["Configuration"]["TenancyConfig"] == PER_TENANT
    listed = [f for f in lambda_client.list_functions()["Functions"] if f["FunctionName"] == tenant_fn]
    assert listed and listed[0]["TenancyConfig"] == PER_TENANT

    # boto3's model has no TenancyConfig on UpdateFunctionConfiguration; a raw request cannot change it.
    with pytest.raises(ParamValidationError):
        lambda_client.update_function_configuration(FunctionName=tenant_fn, TenancyConfig=PER_TENANT)
    path = f"/2015-03-31/functions/{tenant_fn}/configuration"
    body = json.dumps({"TenancyConfig": {"TenantIsolationMode": "NONE"}}).encode()
    resp = raw_request(endpoint, "PUT", path, body, {"Content-Type": "application/json"})
    assert resp.status == 400, resp.describe()
    lambda_client.update_function_configuration(FunctionName=tenant_fn, Timeout=5)
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=tenant_fn,
                                                         WaiterConfig={"Delay": 0.2, "MaxAttempts": 150})
    cfg = lambda_client.get_function_configuration(FunctionName=tenant_fn)
    assert cfg["TenancyConfig"] == PER_TENANT and cfg["Timeout"] == 5
    # A published version keeps it.
    version = lambda_client.publish_version(FunctionName=tenant_fn)["Version"]
    cfg = lambda_client.get_function_configuration(FunctionName=tenant_fn, Qualifier=version)
    assert cfg["TenancyConfig"] == PER_TENANT
    resp, out = invoke(lambda_client, tenant_fn, {}, Qualifier=version, TenantId="v-tenant")
    assert out["tenant"] == "v-tenant" and out["seen"] == ["v-tenant"]


def test_custom_runtime_gets_the_tenant_header(lambda_client):
    name = unique_name("tenancy-rt")
    create_function(lambda_client, name, {"bootstrap": BOOTSTRAP}, handler="unused", Runtime="provided.al2023",
                    TenancyConfig=PER_TENANT)
    try:
        for tenant in ("red", "amber", "red"):
            resp, body = invoke(lambda_client, name, {}, TenantId=tenant)
            assert resp["StatusCode"] == 200 and "FunctionError" not in resp, body
            assert set(body["seen"]) == {tenant}, body
        assert body["seen"] == ["red", "red"]
    finally:
        lambda_client.delete_function(FunctionName=name)


def test_tenancy_survives_a_restart(lamina_factory, tmp_path):
    data = tmp_path / "tenancy-data"
    server = lamina_factory(data_dir=data)
    client = server.client()
    name = unique_name("tenancy-restart")
    create_function(client, name, {"app.py": APP}, TenancyConfig=PER_TENANT)
    resp, body = invoke(client, name, {}, TenantId="before")
    assert body["tenant"] == "before"
    server.stop()

    server = lamina_factory(data_dir=data)
    client = server.client()
    assert client.get_function_configuration(FunctionName=name)["TenancyConfig"] == PER_TENANT
    with pytest.raises(ClientError) as err:
        client.invoke(FunctionName=name, Payload=b"{}")
    assert err.value.response["Error"]["Code"] == "InvalidParameterValueException"
    resp, body = invoke(client, name, {}, TenantId="after")
    assert body["tenant"] == "after" and body["seen"] == ["after"]


def test_function_url_takes_the_tenant_header(lambda_client, endpoint, tenant_fn):
    url = lambda_client.create_function_url_config(FunctionName=tenant_fn, AuthType="NONE")["FunctionUrl"]
    web = FunctionUrl(endpoint, url)
    status, _, body = web.get("/x", form="path")
    assert status == 400, body
    status, _, body = web.get("/x", headers=[("X-Amz-Tenant-Id", "url-tenant")], form="path")
    assert status == 200, body
    out = json.loads(body)
    assert out["tenant"] == "url-tenant" and out["seen"] == ["url-tenant"]


def test_idle_tenant_environments_are_reaped(lamina_factory):
    server = lamina_factory(env={"LAMINA_KEEP_WARM_SECONDS": "1"})
    client = server.client()
    name = unique_name("tenancy-reap")
    create_function(client, name, {"app.py": APP}, TenancyConfig=PER_TENANT)
    _, first = invoke(client, name, {}, TenantId="sleepy")
    _, again = invoke(client, name, {}, TenantId="sleepy")
    assert again["stream"] == first["stream"] and again["seen"] == ["sleepy", "sleepy"]
    wait_environments(server.endpoint, 0)  # the tenant's idle environment is stopped after keep-warm
    _, later = invoke(client, name, {}, TenantId="sleepy")
    assert later["stream"] != first["stream"] and later["seen"] == ["sleepy"]
