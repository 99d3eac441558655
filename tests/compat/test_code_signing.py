"""Code signing configurations with boto3 against a real `lamina serve`: Create/Get/Update/Delete/List, a function's
binding (Put/Get/DeleteFunctionCodeSigningConfig, CreateFunction's CodeSigningConfigArn),
ListFunctionsByCodeSigningConfig, tags on a configuration, AWS's errors, and persistence across a restart."""

from __future__ import annotations

import json

import pytest

from helpers import (
    ACCOUNT,
    REGION,
    ROLE,
    RUNTIME,
    assert_aws_error,
    create_function,
    failure,
    make_zip,
    raw_request,
    unique_name,
)

pytestmark = pytest.mark.timeout(120)

PROFILE = f"arn:aws:signer:{REGION}:{ACCOUNT}:/signing-profiles/test"
HANDLER = {"app.py": "def handler(e, c):\n    return 1\n"}


@pytest.fixture
def configs(lambda_client):
    made: list[str] = []

    def create(**kwargs) -> dict:
        kwargs.setdefault("AllowedPublishers", {"SigningProfileVersionArns": [PROFILE]})
        csc = lambda_client.create_code_signing_config(**kwargs)["CodeSigningConfig"]
        made.append(csc["CodeSigningConfigArn"])
        return csc

    yield create
    for arn in made:
        try:
            for fn in lambda_client.list_functions_by_code_signing_config(CodeSigningConfigArn=arn)["FunctionArns"]:
                lambda_client.delete_function_code_signing_config(FunctionName=fn)
            lambda_client.delete_code_signing_config(CodeSigningConfigArn=arn)
        except lambda_client.exceptions.ResourceNotFoundException:
            pass


def test_lifecycle(lambda_client, configs, functions):
    csc = configs(Description="d", CodeSigningPolicies={"UntrustedArtifactOnDeployment": "Enforce"})
    arn = csc["CodeSigningConfigArn"]
    assert arn == f"arn:aws:lambda:{REGION}:{ACCOUNT}:code-signing-config:{csc['CodeSigningConfigId']}"
    assert csc["CodeSigningConfigId"].startswith("csc-") and len(csc["CodeSigningConfigId"]) == 21
    assert csc["AllowedPublishers"] == {"SigningProfileVersionArns": [PROFILE]}
    assert csc["CodeSigningPolicies"] == {"UntrustedArtifactOnDeployment": "Enforce"} and csc["Description"] == "d"
    # A configuration made without policies warns, as AWS's default.
    assert configs()["CodeSigningPolicies"] == {"UntrustedArtifactOnDeployment": "Warn"}

    updated = lambda_client.update_code_signing_config(CodeSigningConfigArn=arn, CodeSigningPolicies={
        "UntrustedArtifactOnDeployment": "Warn"})["CodeSigningConfig"]
    assert updated["CodeSigningPolicies"] == {"UntrustedArtifactOnDeployment": "Warn"} and updated["Description"] == "d"
    assert lambda_client.get_code_signing_config(CodeSigningConfigArn=arn)["CodeSigningConfig"] == updated
    assert arn in [c["CodeSigningConfigArn"] for c in lambda_client.list_code_signing_configs()["CodeSigningConfigs"]]

    fn = functions(HANDLER)
    assert lambda_client.get_function_code_signing_config(FunctionName=fn)["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert "CodeSigningConfigArn" not in lambda_client.get_function_code_signing_config(FunctionName=fn)
    put = lambda_client.put_function_code_signing_config(FunctionName=fn, CodeSigningConfigArn=arn)
    assert (put["CodeSigningConfigArn"], put["FunctionName"]) == (arn, fn)
    assert lambda_client.get_function_code_signing_config(FunctionName=fn)["CodeSigningConfigArn"] == arn
    assert lambda_client.list_functions_by_code_signing_config(CodeSigningConfigArn=arn)["FunctionArns"] == [
        f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{fn}"]
    # In use: it cannot be deleted.
    assert failure(lambda_client.delete_code_signing_config, CodeSigningConfigArn=arn)[:2] == (
        409, "ResourceConflictException")
    lambda_client.delete_function_code_signing_config(FunctionName=fn)
    assert lambda_client.list_functions_by_code_signing_config(CodeSigningConfigArn=arn)["FunctionArns"] == []
    lambda_client.delete_code_signing_config(CodeSigningConfigArn=arn)
    assert failure(lambda_client.get_code_signing_config, CodeSigningConfigArn=arn) == (
        404, "ResourceNotFoundException", f"The Lambda code signing configuration {arn} can not be found.")


def test_errors(lambda_client, configs, functions, endpoint):
    arn = configs()["CodeSigningConfigArn"]
    missing = arn[:-1] + ("x" if arn[-1] != "x" else "y")
    fn = functions(HANDLER)
    not_found = f"The Lambda code signing configuration {missing} can not be found."
    for call, kwargs in ((lambda_client.get_code_signing_config, {}),
                         (lambda_client.delete_code_signing_config, {}),
                         (lambda_client.update_code_signing_config, {"Description": "x"}),
                         (lambda_client.list_functions_by_code_signing_config, {})):
        assert failure(call, CodeSigningConfigArn=missing, **kwargs) == (404, "ResourceNotFoundException", not_found)
    # The configuration is checked before the function.
    for name in (fn, "no-such-function"):
        assert failure(lambda_client.put_function_code_signing_config, FunctionName=name,
                       CodeSigningConfigArn=missing) == (
            404, "CodeSigningConfigNotFoundException", "The code signing configuration cannot be found. Check that "
            f"the provided configuration is not deleted: {missing}.")
    fn_missing = f"Function not found: arn:aws:lambda:{REGION}:{ACCOUNT}:function:no-such-function"
    assert failure(lambda_client.put_function_code_signing_config, FunctionName="no-such-function",
                   CodeSigningConfigArn=arn) == (404, "ResourceNotFoundException", fn_missing)
    assert failure(lambda_client.get_function_code_signing_config, FunctionName="no-such-function") == (
        404, "ResourceNotFoundException", fn_missing)
    # Nothing bound: deleting the binding is a no-op.
    lambda_client.delete_function_code_signing_config(FunctionName=fn)
    assert failure(lambda_client.get_code_signing_config, CodeSigningConfigArn="csc-nope")[:2] == (
        400, "ValidationException")
    assert failure(lambda_client.update_code_signing_config, CodeSigningConfigArn=arn, CodeSigningPolicies={
        "UntrustedArtifactOnDeployment": "Maybe"})[:2] == (400, "ValidationException")
    # boto3 refuses an empty list itself; the server does too.
    resp = raw_request(endpoint, "POST", "/2020-04-22/code-signing-configs",
                       json.dumps({"AllowedPublishers": {"SigningProfileVersionArns": []}}).encode())
    assert_aws_error(resp, 400, "ValidationException", "signingProfileVersionArns")


def test_create_function_with_config_and_tags(lambda_client, configs, functions):
    arn = configs(Tags={"team": "a"})["CodeSigningConfigArn"]
    assert lambda_client.list_tags(Resource=arn)["Tags"] == {"team": "a"}
    lambda_client.tag_resource(Resource=arn, Tags={"env": "dev"})
    lambda_client.untag_resource(Resource=arn, TagKeys=["team"])
    assert lambda_client.list_tags(Resource=arn)["Tags"] == {"env": "dev"}
    fn = functions(HANDLER, CodeSigningConfigArn=arn)
    assert lambda_client.get_function_code_signing_config(FunctionName=fn)["CodeSigningConfigArn"] == arn
    missing = arn[:-1] + ("x" if arn[-1] != "x" else "y")
    with pytest.raises(lambda_client.exceptions.CodeSigningConfigNotFoundException):
        lambda_client.create_function(FunctionName=unique_name("t"), Runtime=RUNTIME, Role=ROLE, Handler="app.handler",
                                      Code={"ZipFile": make_zip(HANDLER)}, CodeSigningConfigArn=missing)
    # The binding goes with the function.
    lambda_client.delete_function(FunctionName=fn)
    assert lambda_client.list_functions_by_code_signing_config(CodeSigningConfigArn=arn)["FunctionArns"] == []


def test_survives_restart(lamina_factory):
    server = lamina_factory()
    client = server.client()
    csc = client.create_code_signing_config(AllowedPublishers={"SigningProfileVersionArns": [PROFILE]},
                                            Tags={"k": "v"})["CodeSigningConfig"]
    create_function(client, "signed", HANDLER, CodeSigningConfigArn=csc["CodeSigningConfigArn"])
    server.stop()
    client = lamina_factory(data_dir=server.data_dir).client()
    assert client.get_code_signing_config(CodeSigningConfigArn=csc["CodeSigningConfigArn"])["CodeSigningConfig"] == csc
    assert client.get_function_code_signing_config(FunctionName="signed")["CodeSigningConfigArn"] == (
        csc["CodeSigningConfigArn"])
    assert client.list_tags(Resource=csc["CodeSigningConfigArn"])["Tags"] == {"k": "v"}
