"""Put/Get/Update/Delete/ListFunctionEventInvokeConfig(s) and DeadLetterConfig through boto3, with AWS's shapes
and recorded errors (LocalStack's TestLambdaEventInvokeConfig snapshots, recorded against AWS; spec/events.md §1.3)."""

from __future__ import annotations

import json

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from helpers import ACCESS_KEY, REGION, SECRET_KEY, assert_aws_error, fn_arn, raw_request

ECHO = "def handler(event, context):\n    return event\n"
CONFIG_PATH = "/2019-09-25/functions/{}/event-invoke-config"


def _error(exc: ClientError) -> tuple[int, str, str]:
    r = exc.response
    return r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Code"], r["Error"]["Message"]


@pytest.fixture(scope="module")
def unvalidated(endpoint):
    """A client that sends what boto3 would refuse, as LocalStack's exceptions test does."""
    import boto3
    return boto3.client("lambda", endpoint_url=endpoint, region_name=REGION, aws_access_key_id=ACCESS_KEY,
                        aws_secret_access_key=SECRET_KEY,
                        config=Config(parameter_validation=False, retries={"total_max_attempts": 1}))


def test_lifecycle_put_overwrites_update_merges(lambda_client, functions):
    name = functions({"app.py": ECHO}, prefix="eic")
    put = lambda_client.put_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=0)
    assert put["FunctionArn"] == fn_arn(name) + ":$LATEST"
    assert put["MaximumRetryAttempts"] == 0 and "MaximumEventAgeInSeconds" not in put
    assert put["DestinationConfig"] == {"OnSuccess": {}, "OnFailure": {}}
    assert put["LastModified"]
    # Put replaces everything: the retry setting given before is gone.
    put = lambda_client.put_function_event_invoke_config(FunctionName=name, MaximumEventAgeInSeconds=60)
    assert put["MaximumEventAgeInSeconds"] == 60 and "MaximumRetryAttempts" not in put
    # Update changes only what it names.
    upd = lambda_client.update_function_event_invoke_config(FunctionName=name, MaximumRetryAttempts=1)
    assert upd["MaximumEventAgeInSeconds"] == 60 and upd["MaximumRetryAttempts"] == 1
    for qualifier in ({}, {"Qualifier": "$LATEST"}):
        got = lambda_client.get_function_event_invoke_config(FunctionName=name, **qualifier)
        assert (got["MaximumEventAgeInSeconds"], got["MaximumRetryAttempts"]) == (60, 1)
    listed = lambda_client.list_function_event_invoke_configs(FunctionName=name)["FunctionEventInvokeConfigs"]
    assert [c["FunctionArn"] for c in listed] == [fn_arn(name) + ":$LATEST"]

    # PublishVersion does not copy the configuration.
    version = lambda_client.publish_version(FunctionName=name)["Version"]
    with pytest.raises(ClientError) as info:
        lambda_client.get_function_event_invoke_config(FunctionName=name, Qualifier=version)
    assert _error(info.value) == (404, "ResourceNotFoundException",
                                  f"The function {fn_arn(name)}:{version} doesn't have an EventInvokeConfig")
    put = lambda_client.put_function_event_invoke_config(FunctionName=name, Qualifier=version,
                                                         MaximumEventAgeInSeconds=120)
    assert put["FunctionArn"] == f"{fn_arn(name)}:{version}"

    one = lambda_client.list_function_event_invoke_configs(FunctionName=name, MaxItems=1)
    assert len(one["FunctionEventInvokeConfigs"]) == 1 and one["NextMarker"]
    rest = lambda_client.list_function_event_invoke_configs(FunctionName=name, Marker=one["NextMarker"], MaxItems=1)
    assert len(rest["FunctionEventInvokeConfigs"]) == 1 and "NextMarker" not in rest
    assert {one["FunctionEventInvokeConfigs"][0]["FunctionArn"], rest["FunctionEventInvokeConfigs"][0]["FunctionArn"]} \
        == {fn_arn(name) + ":$LATEST", f"{fn_arn(name)}:{version}"}

    resp = lambda_client.delete_function_event_invoke_config(FunctionName=name)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 204
    left = lambda_client.list_function_event_invoke_configs(FunctionName=name)["FunctionEventInvokeConfigs"]
    assert [c["FunctionArn"] for c in left] == [f"{fn_arn(name)}:{version}"]
    with pytest.raises(ClientError) as info:
        lambda_client.delete_function_event_invoke_config(FunctionName=name)
    assert _error(info.value) == (404, "ResourceNotFoundException",
                                  f"The function {fn_arn(name)}:$LATEST doesn't have an EventInvokeConfig")


def test_qualifier_forms(lambda_client, functions):
    name = functions({"app.py": ECHO}, prefix="eic")
    version = lambda_client.publish_version(FunctionName=name)["Version"]
    alias = lambda_client.create_alias(FunctionName=name, Name="live", FunctionVersion=version)
    cases = [({"FunctionName": name}, "$LATEST"), ({"FunctionName": name, "Qualifier": "$LATEST"}, "$LATEST"),
             ({"FunctionName": name, "Qualifier": version}, version), ({"FunctionName": name, "Qualifier": "live"},
                                                                         "live"),
             ({"FunctionName": alias["AliasArn"]}, "live"), ({"FunctionName": alias["AliasArn"], "Qualifier": "live"},
                                                               "live"),
             ({"FunctionName": f"{name}:live"}, "live"), ({"FunctionName": f"{name}:{version}"}, version),
             ({"FunctionName": f"{name}:$LATEST", "Qualifier": "$LATEST"}, "$LATEST")]
    for kwargs, qualifier in cases:
        resp = lambda_client.put_function_event_invoke_config(MaximumRetryAttempts=1, **kwargs)
        assert resp["FunctionArn"] == f"{fn_arn(name)}:{qualifier}", kwargs
    mismatch = "The derived qualifier from the function name does not match the specified qualifier."
    for kwargs in ({"FunctionName": alias["AliasArn"], "Qualifier": "livedoesnotexist"},
                   {"FunctionName": f"{name}:{version}", "Qualifier": "$LATEST"},
                   {"FunctionName": f"{name}:$LATEST", "Qualifier": version},
                   {"FunctionName": f"{name}:{version}", "Qualifier": "live"}):
        with pytest.raises(ClientError) as info:
            lambda_client.put_function_event_invoke_config(MaximumRetryAttempts=1, **kwargs)
        assert _error(info.value) == (400, "InvalidParameterValueException", mismatch), kwargs
    with pytest.raises(ClientError) as info:
        lambda_client.put_function_event_invoke_config(FunctionName=name, Qualifier="livedoesnotexist",
                                                       MaximumRetryAttempts=1)
    assert _error(info.value) == (404, "ResourceNotFoundException", "The function doesn't exist.")
    listed = lambda_client.list_function_event_invoke_configs(FunctionName=name)["FunctionEventInvokeConfigs"]
    assert [c["FunctionArn"].rsplit(":", 1)[1] for c in listed] == ["$LATEST", version, "live"]
    # Deleting the alias takes its configuration with it.
    lambda_client.delete_alias(FunctionName=name, Name="live")
    listed = lambda_client.list_function_event_invoke_configs(FunctionName=name)["FunctionEventInvokeConfigs"]
    assert [c["FunctionArn"].rsplit(":", 1)[1] for c in listed] == ["$LATEST", version]


def test_recorded_errors(lambda_client, unvalidated, functions):
    name = functions({"app.py": ECHO}, prefix="eic")
    other = functions({"app.py": ECHO}, prefix="eic")
    missing_arn = fn_arn("doesnotexist")
    expected = [
        (dict(FunctionName="doesnotexist", MaximumRetryAttempts=1), 404, "ResourceNotFoundException",
         "The function doesn't exist."),
        (dict(FunctionName=missing_arn, MaximumRetryAttempts=1), 404, "ResourceNotFoundException",
         "The function doesn't exist."),
        (dict(FunctionName="doesnotexist"), 400, "InvalidParameterValueException",
         "You must specify at least one of error handling or destination setting."),
        (dict(FunctionName=name, DestinationConfig={"OnSuccess": {"Destination": missing_arn}}), 400,
         "InvalidParameterValueException", f"The destination ARN {missing_arn} is invalid."),
        (dict(FunctionName=name, DestinationConfig={"OnSuccess": {"Destination": fn_arn(name)}}), 400,
         "InvalidParameterValueException", "You can't specify the function as a destination for itself."),
        (dict(FunctionName=name, DestinationConfig={"OnSuccess": {"Destination": fn_arn(name).replace(
            ":lambda:", ":iam:")}}), 400, "InvalidParameterValueException",
         f"The provided destination config DestinationConfig(onSuccess=OnSuccess(destination="
         f"{fn_arn(name).replace(':lambda:', ':iam:')}), onFailure=null) is invalid."),
    ]
    for kwargs, status, code, message in expected:
        with pytest.raises(ClientError) as info:
            unvalidated.put_function_event_invoke_config(**kwargs)
        assert _error(info.value) == (status, code, message), kwargs
    bad = fn_arn(name).replace(":lambda:", ":_-/!lambda:")
    with pytest.raises(ClientError) as info:
        unvalidated.put_function_event_invoke_config(FunctionName=name,
                                                     DestinationConfig={"OnFailure": {"Destination": bad}})
    status, code, message = _error(info.value)
    assert (status, code) == (400, "ValidationException")
    assert message.startswith(f"1 validation error detected: Value '{bad}' at 'destinationConfig.onFailure."
                              "destination' failed to satisfy constraint: Member must satisfy regular expression "
                              "pattern: $|kafka://")
    # Another function is a destination Lamina has; a side without a Destination is {}.
    ok = lambda_client.put_function_event_invoke_config(
        FunctionName=name, DestinationConfig={"OnSuccess": {"Destination": fn_arn(other)}})
    assert ok["DestinationConfig"] == {"OnSuccess": {"Destination": fn_arn(other)}, "OnFailure": {}}
    ok = lambda_client.put_function_event_invoke_config(FunctionName=name, DestinationConfig={"OnFailure": {}})
    assert ok["DestinationConfig"] == {"OnSuccess": {}, "OnFailure": {}}
    # A Lamina queue that does not exist: AWS's error for a missing destination.
    missing_queue = "arn:aws:sqs:us-east-1:000000000000:no-such-queue"
    with pytest.raises(ClientError) as info:
        lambda_client.put_function_event_invoke_config(FunctionName=name,
                                                       DestinationConfig={"OnFailure": {"Destination": missing_queue}})
    assert _error(info.value) == (400, "InvalidParameterValueException",
                                  f"The destination ARN {missing_queue} is invalid.")
    # Kinds Lamina does not have (yet): AWS's error, not silence.
    for arn in ("arn:aws:sns:us-east-1:000000000000:t",
                "arn:aws:events:us-east-1:000000000000:event-bus/default", "arn:aws:s3:::bucket"):
        with pytest.raises(ClientError) as info:
            lambda_client.put_function_event_invoke_config(FunctionName=name,
                                                           DestinationConfig={"OnFailure": {"Destination": arn}})
        assert _error(info.value) == (400, "InvalidParameterValueException",
                                      f"The provided destination config DestinationConfig(onSuccess=null, "
                                      f"onFailure=OnFailure(destination={arn})) is invalid."), arn
    # Get / Delete / List / Update of what is not there.
    for call, kwargs, message in [
        (lambda_client.get_function_event_invoke_config, dict(FunctionName="doesnotexist"),
         f"The function {fn_arn('doesnotexist')}:$LATEST doesn't have an EventInvokeConfig"),
        (lambda_client.delete_function_event_invoke_config, dict(FunctionName="doesnotexist"),
         f"The function {fn_arn('doesnotexist')}:$LATEST doesn't have an EventInvokeConfig"),
        (lambda_client.get_function_event_invoke_config, dict(FunctionName=name, Qualifier="doesnotexist"),
         f"The function {fn_arn(name)}:doesnotexist doesn't have an EventInvokeConfig"),
        (lambda_client.list_function_event_invoke_configs, dict(FunctionName="doesnotexist"),
         "The function doesn't exist."),
        (lambda_client.update_function_event_invoke_config, dict(FunctionName="doesnotexist", MaximumRetryAttempts=0),
         "The function doesn't exist."),
        (lambda_client.update_function_event_invoke_config, dict(FunctionName=other, MaximumRetryAttempts=0),
         f"The function {fn_arn(other)}:$LATEST doesn't have an EventInvokeConfig"),
    ]:
        with pytest.raises(ClientError) as info:
            call(**kwargs)
        assert _error(info.value) == (404, "ResourceNotFoundException", message), kwargs


def test_ranges_checked_by_the_server(endpoint, functions):
    name = functions({"app.py": ECHO}, prefix="eic")
    path = CONFIG_PATH.format(name)
    for body, member, constraint in [
        ({"MaximumRetryAttempts": 3}, "maximumRetryAttempts", "less than or equal to 2"),
        ({"MaximumRetryAttempts": -1}, "maximumRetryAttempts", "greater than or equal to 0"),
        ({"MaximumEventAgeInSeconds": 59}, "maximumEventAgeInSeconds", "greater than or equal to 60"),
        ({"MaximumEventAgeInSeconds": 30000}, "maximumEventAgeInSeconds", "less than or equal to 21600"),
    ]:
        resp = raw_request(endpoint, "PUT", path, json.dumps(body).encode())
        message = assert_aws_error(resp, 400, "ValidationException")
        assert f"at '{member}' failed to satisfy constraint: Member must have value {constraint}" in message


def test_dead_letter_config(lambda_client, functions):
    # A DeadLetterConfig naming a Lamina queue that does not exist is refused; SNS topics Lamina has none of.
    with pytest.raises(ClientError) as info:
        functions({"app.py": ECHO}, prefix="dlq",
                  DeadLetterConfig={"TargetArn": "arn:aws:sqs:us-east-1:000000000000:no-such-dlq"})
    status, code, message = _error(info.value)
    assert (status, code) == (400, "InvalidParameterValueException")
    assert "arn:aws:sqs:us-east-1:000000000000:no-such-dlq" in message and "does not exist" in message
    name = functions({"app.py": ECHO}, prefix="dlq")
    with pytest.raises(ClientError) as info:
        lambda_client.update_function_configuration(
            FunctionName=name, DeadLetterConfig={"TargetArn": "arn:aws:sns:us-east-1:000000000000:topic"})
    assert _error(info.value)[1] == "InvalidParameterValueException"
    # An empty DeadLetterConfig (no target) is accepted: it removes the setting.
    resp = lambda_client.update_function_configuration(FunctionName=name, DeadLetterConfig={})
    assert "DeadLetterConfig" not in resp
