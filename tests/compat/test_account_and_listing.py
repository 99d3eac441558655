"""GetAccountSettings, ListFunctions with FunctionVersion=ALL and GetFunction's Concurrency and qualified shapes,
with boto3 against a real `lamina serve`, as AWS answers them."""

from __future__ import annotations

import time

import pytest
from botocore.exceptions import ClientError

from helpers import assert_aws_error, fn_arn, probe_code, raw_request, unique_name, wait_provisioned


def _settings(client) -> tuple[int, int, int, int]:
    s = client.get_account_settings()
    return (s["AccountLimit"]["ConcurrentExecutions"], s["AccountLimit"]["UnreservedConcurrentExecutions"],
            s["AccountUsage"]["FunctionCount"], s["AccountUsage"]["TotalCodeSize"])


def test_account_settings_account_for_reserved_and_provisioned_concurrency(lambda_client, functions):
    limit, unreserved, count, code = _settings(lambda_client)
    assert limit == 1000 and unreserved <= limit
    reserved_fn = functions(probe_code())
    free_fn = functions(probe_code())
    size = lambda_client.get_function_configuration(FunctionName=free_fn)["CodeSize"]
    _, unreserved0, count0, code0 = _settings(lambda_client)
    assert (unreserved0, count0, code0) == (unreserved, count + 2, code + 2 * size)

    # Published versions keep their own package: they count towards code storage, not towards FunctionCount.
    for name in (reserved_fn, free_fn):
        lambda_client.publish_version(FunctionName=name)
    assert _settings(lambda_client)[1:] == (unreserved0, count0, code0 + 2 * size)

    # A reservation comes out of the unreserved pool ...
    lambda_client.put_function_concurrency(FunctionName=reserved_fn, ReservedConcurrentExecutions=10)
    assert _settings(lambda_client)[1] == unreserved0 - 10
    # ... so does provisioned concurrency of a function without one (AWS: 1,000 - 100 provisioned = 900) ...
    lambda_client.put_provisioned_concurrency_config(FunctionName=free_fn, Qualifier="1",
                                                     ProvisionedConcurrentExecutions=2)
    assert _settings(lambda_client)[1] == unreserved0 - 12
    # ... but provisioned concurrency inside a reservation takes nothing more.
    lambda_client.put_provisioned_concurrency_config(FunctionName=reserved_fn, Qualifier="1",
                                                     ProvisionedConcurrentExecutions=3)
    assert _settings(lambda_client)[1] == unreserved0 - 12
    wait_provisioned(lambda_client, free_fn, "1")
    wait_provisioned(lambda_client, reserved_fn, "1")
    # Reserving for the provisioned function moves its provisioned concurrency inside the reservation.
    lambda_client.put_function_concurrency(FunctionName=free_fn, ReservedConcurrentExecutions=4)
    assert _settings(lambda_client)[1] == unreserved0 - 14
    lambda_client.delete_function_concurrency(FunctionName=free_fn)
    assert _settings(lambda_client)[1] == unreserved0 - 12

    lambda_client.delete_provisioned_concurrency_config(FunctionName=free_fn, Qualifier="1")
    assert _settings(lambda_client)[1] == unreserved0 - 10
    lambda_client.delete_function(FunctionName=reserved_fn)  # its reservation and configuration go with it
    assert _settings(lambda_client)[1:3] == (unreserved0, count0 - 1)


def test_list_functions_with_every_version(lambda_client, functions):
    prefix = unique_name("all")
    first = functions(probe_code("a"), prefix=prefix)
    second = functions(probe_code("b"), prefix=prefix)
    for _ in range(2):
        lambda_client.update_function_configuration(FunctionName=first, Description=f"d{time.monotonic()}")
        lambda_client.get_waiter("function_updated_v2").wait(FunctionName=first, WaiterConfig={"Delay": 0.2})
        lambda_client.publish_version(FunctionName=first)

    def mine(pages) -> list[tuple[str, str, str]]:
        return [(f["FunctionName"], f["Version"], f["FunctionArn"]) for p in pages for f in p["Functions"]
                if f["FunctionName"] in (first, second)]

    # One page at a time, following NextMarker: every entry once, in order, each with its own qualified ARN.
    paginator = lambda_client.get_paginator("list_functions")
    entries = mine(paginator.paginate(FunctionVersion="ALL", PaginationConfig={"PageSize": 1}))
    # Functions are listed by name; the two names end in random suffixes, so either may come first.
    by_name = {first: [(first, "$LATEST", fn_arn(first) + ":$LATEST"), (first, "1", fn_arn(first) + ":1"),
                       (first, "2", fn_arn(first) + ":2")],
               second: [(second, "$LATEST", fn_arn(second) + ":$LATEST")]}
    assert entries == [entry for name in sorted(by_name) for entry in by_name[name]]
    assert mine(paginator.paginate(FunctionVersion="ALL", PaginationConfig={"PageSize": 2})) == entries
    every = mine(paginator.paginate(FunctionVersion="ALL", PaginationConfig={"PageSize": 2}))
    assert len(every) == len(set(every))
    versions = lambda_client.list_functions(FunctionVersion="ALL", MaxItems=50)["Functions"]
    one = next(f for f in versions if f["FunctionName"] == first and f["Version"] == "1")
    assert one["Description"] != lambda_client.get_function_configuration(FunctionName=first)["Description"]
    assert not {"State", "LastUpdateStatus"} & {k for f in versions for k in f}  # as AWS lists them

    # Without FunctionVersion: $LATEST only, unqualified ARNs.
    assert mine(paginator.paginate(PaginationConfig={"PageSize": 1})) == [
        (name, "$LATEST", fn_arn(name)) for name in sorted((first, second))]


def test_list_functions_validates_function_version(endpoint):
    resp = raw_request(endpoint, "GET", "/2015-03-31/functions/?FunctionVersion=SOME")
    assert_aws_error(resp, 400, "ValidationException", "functionVersion")


def test_get_function_concurrency_and_qualified_shapes(lambda_client, functions):
    name = functions(probe_code())
    assert "Concurrency" not in lambda_client.get_function(FunctionName=name)
    lambda_client.publish_version(FunctionName=name)
    lambda_client.create_alias(FunctionName=name, Name="live", FunctionVersion="1")

    lambda_client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=7)
    got = lambda_client.get_function(FunctionName=name)
    assert got["Concurrency"] == {"ReservedConcurrentExecutions": 7}
    assert got["Configuration"]["FunctionArn"] == fn_arn(name) and got["Configuration"]["Version"] == "$LATEST"

    for kwargs, arn_suffix in (({"FunctionName": name, "Qualifier": "1"}, ":1"),
                               ({"FunctionName": f"{name}:1"}, ":1"),
                               ({"FunctionName": name, "Qualifier": "live"}, ":live"),
                               ({"FunctionName": fn_arn(name) + ":live"}, ":live"),
                               ({"FunctionName": name, "Qualifier": "$LATEST"}, ":$LATEST")):
        got = lambda_client.get_function(**kwargs)
        config = got["Configuration"]
        assert config["FunctionArn"] == fn_arn(name) + arn_suffix, (kwargs, config["FunctionArn"])
        assert config["Version"] == ("$LATEST" if arn_suffix == ":$LATEST" else "1"), (kwargs, config["Version"])
        assert got["Concurrency"] == {"ReservedConcurrentExecutions": 7}
        assert got["Code"]["RepositoryType"] == "S3" and got["Code"]["Location"]

    lambda_client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    assert lambda_client.get_function(FunctionName=name)["Concurrency"] == {"ReservedConcurrentExecutions": 0}
    lambda_client.delete_function_concurrency(FunctionName=name)
    assert "Concurrency" not in lambda_client.get_function(FunctionName=name)

    with pytest.raises(ClientError) as err:
        lambda_client.get_function(FunctionName=name, Qualifier="9")
    assert err.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert err.value.response["Error"]["Message"] == f"Function not found: {fn_arn(name)}:9"
