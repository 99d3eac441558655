"""`lamina url ...` against a real `lamina serve`: the URL it prints answers (by its *.localhost name, as curl
reaches it), and the configuration it sets is what the API holds."""

from __future__ import annotations

import json

import pytest

from helpers import FunctionUrl, probe_code

pytestmark = pytest.mark.timeout(120)


def test_url_create_get_update_ls_rm(cli, functions, lambda_client, endpoint: str) -> None:
    name = functions(probe_code("web"))
    url = cli("url", "create", name, "--cors-origin", "https://example.test").stdout.strip()
    assert url.startswith("http://") and url.endswith(f".localhost:{endpoint.rsplit(':', 1)[1]}/"), url
    assert cli("url", "get", name).stdout.strip() == url

    status, _headers, body = FunctionUrl(endpoint, url).get("/hello?x=1")
    assert status == 200, body
    event = json.loads(body)["echo"]
    assert event["rawPath"] == "/hello" and event["rawQueryString"] == "x=1", event

    config = lambda_client.get_function_url_config(FunctionName=name)
    assert config["AuthType"] == "NONE" and config["InvokeMode"] == "BUFFERED"
    assert config["Cors"]["AllowOrigins"] == ["https://example.test"]

    updated = json.loads(cli("url", "update", name, "--stream", "--no-cors", "--json").stdout)
    assert updated["InvokeMode"] == "RESPONSE_STREAM" and updated["FunctionUrl"] == url
    assert not lambda_client.get_function_url_config(FunctionName=name).get("Cors", {}).get("AllowOrigins")

    lambda_client.publish_version(FunctionName=name)
    lambda_client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    alias_url = cli("url", "create", name, "--qualifier", "live").stdout.strip()
    assert alias_url != url
    table = cli("url", "ls", name).stdout
    assert url in table and alias_url in table and f"{name}:live" in table, table

    assert "Deleted" in cli("url", "rm", name, "-q", "live").stdout
    cli("url", "rm", name)
    assert lambda_client.list_function_url_configs(FunctionName=name)["FunctionUrlConfigs"] == []
    proc = cli("url", "get", name, ok=False)
    assert proc.returncode == 1 and "ResourceNotFoundException" in proc.stderr, proc.stderr


def test_url_create_twice_is_a_conflict(cli, functions) -> None:
    name = functions(probe_code("web"))
    cli("url", "create", name)
    proc = cli("url", "create", name, ok=False)
    assert proc.returncode == 1 and "ResourceConflictException" in proc.stderr, proc.stderr
