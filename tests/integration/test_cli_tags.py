"""`lamina tag ...` against a real `lamina serve`: tags set and removed as ListTags reports them."""

from __future__ import annotations

import json

import pytest

from helpers import fn_arn, probe_code

pytestmark = pytest.mark.timeout(120)


def test_tag_add_ls_rm(cli, functions, lambda_client) -> None:
    name = functions(probe_code("t"))
    cli("tag", "add", name, "team=web", "stage=dev")
    assert lambda_client.list_tags(Resource=fn_arn(name))["Tags"] == {"team": "web", "stage": "dev"}
    cli("tag", "add", name, "stage=prod")  # an existing key gets the new value
    assert json.loads(cli("tag", "ls", name, "--json").stdout) == {"team": "web", "stage": "prod"}
    table = cli("tag", "ls", name).stdout
    assert "team" in table and "prod" in table, table

    cli("tag", "rm", name, "stage", "absent")
    assert lambda_client.list_tags(Resource=fn_arn(name))["Tags"] == {"team": "web"}
    cli("tag", "rm", fn_arn(name), "team")  # an ARN names the function too
    assert lambda_client.list_tags(Resource=fn_arn(name))["Tags"] == {}


def test_tag_errors(cli, functions) -> None:
    name = functions(probe_code("t"))
    proc = cli("tag", "add", name, "novalue", ok=False)
    assert proc.returncode == 2 and "KEY=VALUE" in proc.stderr, proc.stderr
    proc = cli("tag", "ls", name + "-missing", ok=False)
    assert proc.returncode == 1 and "ResourceNotFoundException" in proc.stderr, proc.stderr
