"""`lamina publish`, `lamina versions` and `lamina alias ...` against a real `lamina serve`: what they print, and
that the server holds what they said (read back with boto3)."""

from __future__ import annotations

import json

import pytest

from helpers import WAIT, invoke_ok, make_zip, probe_code

pytestmark = pytest.mark.timeout(120)


def _update_code(lambda_client, name: str, version_tag: str) -> None:
    lambda_client.update_function_code(FunctionName=name, ZipFile=make_zip(probe_code(version_tag)))
    lambda_client.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=WAIT)


def test_publish_lists_and_invokes_versions(cli, functions, lambda_client) -> None:
    name = functions(probe_code("one"))
    assert cli("publish", name, "--description", "first").stdout.strip() == "1"
    _update_code(lambda_client, name, "two")
    assert cli("publish", name).stdout.strip() == "2"

    listed = json.loads(cli("versions", name, "--json").stdout)
    assert [v["Version"] for v in listed] == ["$LATEST", "1", "2"]
    assert listed[1]["Description"] == "first"
    table = cli("versions", name).stdout
    assert "VERSION" in table and "first" in table
    # each published version keeps its own code
    piped = cli("invoke", name, "--qualifier", "1").stdout
    assert json.loads(piped)["version"] == "one"
    assert piped.endswith("}\n"), piped  # piped output ends its line too
    assert json.loads(cli("invoke", name, "--qualifier", "2").stdout)["version"] == "two"


def test_alias_create_shift_and_remove(cli, functions, lambda_client) -> None:
    name = functions(probe_code("one"))
    cli("publish", name)
    _update_code(lambda_client, name, "two")
    cli("publish", name)

    created = cli("alias", "create", name, "live", "--version", "1", "--description", "prod").stdout
    assert created.startswith("live -> 1\n") and f"function:{name}:live" in created, created
    assert invoke_ok(lambda_client, name, {}, Qualifier="live")["version"] == "one"

    shifted = cli("alias", "update", name, "live", "--weight", "2=0.25").stdout
    assert shifted.startswith("live -> 1 (75%), 2 (25%)"), shifted
    alias = lambda_client.get_alias(FunctionName=name, Name="live")
    assert alias["RoutingConfig"]["AdditionalVersionWeights"] == {"2": 0.25}

    done = cli("alias", "update", name, "live", "--version", "2", "--no-weights").stdout
    assert done.startswith("live -> 2\n"), done
    alias = lambda_client.get_alias(FunctionName=name, Name="live")
    assert alias["FunctionVersion"] == "2" and not alias.get("RoutingConfig", {}).get("AdditionalVersionWeights")
    assert invoke_ok(lambda_client, name, {}, Qualifier="live")["version"] == "two"

    assert json.loads(cli("alias", "get", name, "live", "--json").stdout)["Description"] == "prod"
    cli("alias", "create", name, "beta", "-v", "2")
    table = cli("alias", "ls", name).stdout
    assert "live" in table and "beta" in table and "prod" in table, table

    assert "Deleted alias" in cli("alias", "rm", name, "beta").stdout
    assert [a["Name"] for a in lambda_client.list_aliases(FunctionName=name)["Aliases"]] == ["live"]


def test_alias_errors_are_aws_errors_and_usage_errors(cli, functions) -> None:
    name = functions(probe_code("one"))
    proc = cli("alias", "create", name, "live", "--version", "7", ok=False)
    assert proc.returncode == 1 and "ResourceNotFoundException" in proc.stderr, proc.stderr
    proc = cli("alias", "create", name, "live", "--version", "1", "--weight", "2=half", ok=False)
    assert proc.returncode == 2 and "VERSION=FRACTION" in proc.stderr, proc.stderr
    proc = cli("alias", "update", name, "live", ok=False)
    assert proc.returncode == 2 and "nothing to change" in proc.stderr, proc.stderr
