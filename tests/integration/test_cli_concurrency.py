"""`lamina concurrency ...` against a real `lamina serve`: reserved and provisioned concurrency as the API
holds them, and what a reservation of 0 does to an invoke."""

from __future__ import annotations

import json

import pytest

from helpers import probe_code

pytestmark = pytest.mark.timeout(120)


def test_reserve_and_unreserve(cli, functions, lambda_client) -> None:
    name = functions(probe_code("c"))
    assert "none" in cli("concurrency", "get", name).stdout
    assert cli("concurrency", "reserve", name, "3").stdout.strip() == f"Reserved 3 for {name}"
    assert lambda_client.get_function_concurrency(FunctionName=name)["ReservedConcurrentExecutions"] == 3
    assert "reserved: 3" in cli("concurrency", "get", name).stdout

    cli("concurrency", "reserve", name, "0")
    proc = cli("invoke", name, ok=False)
    assert proc.returncode == 1 and "TooManyRequestsException" in proc.stderr, proc.stderr

    cli("concurrency", "unreserve", name)
    assert "ReservedConcurrentExecutions" not in lambda_client.get_function_concurrency(FunctionName=name)
    assert json.loads(cli("invoke", name).stdout)["version"] == "c"


def test_provision_waits_until_ready(cli, functions, lambda_client) -> None:
    name = functions(probe_code("p"))
    lambda_client.publish_version(FunctionName=name)
    lambda_client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")

    said = cli("concurrency", "provision", name, "2", "--qualifier", "live").stdout
    assert said.strip() == f"{name}:live: 2 of 2 ready (READY)", said
    config = lambda_client.get_provisioned_concurrency_config(FunctionName=name, Qualifier="live")
    assert (config["Status"], config["AvailableProvisionedConcurrentExecutions"]) == ("READY", 2)

    doc = json.loads(cli("concurrency", "get", name, "--json").stdout)
    assert doc["ReservedConcurrentExecutions"] is None
    [listed] = doc["ProvisionedConcurrencyConfigs"]
    assert listed["FunctionArn"].endswith(f":{name}:live") and listed["Status"] == "READY"
    table = cli("concurrency", "get", name).stdout
    assert "live" in table and "READY" in table, table

    cli("concurrency", "unprovision", name, "-q", "live")
    assert lambda_client.list_provisioned_concurrency_configs(FunctionName=name)["ProvisionedConcurrencyConfigs"] == []


def test_provision_needs_a_qualifier_and_a_published_one(cli, functions) -> None:
    name = functions(probe_code("p"))
    proc = cli("concurrency", "provision", name, "1", ok=False)
    assert proc.returncode == 2 and "--qualifier" in proc.stderr, proc.stderr
    proc = cli("concurrency", "provision", name, "1", "-q", "$LATEST", ok=False)
    assert proc.returncode == 1 and "Exception" in proc.stderr, proc.stderr
