"""Tenant isolation errors, word for word as AWS sends them (InvalidParameterValueException for a missing tenant
id or one sent to a function without tenant isolation — the messages AWS returns, also used by the SAM CLI's
emulation — and the model's validation for the header and TenancyConfig), through boto3 and raw requests."""

from __future__ import annotations

import base64
import json

from helpers import ROLE, RUNTIME, assert_aws_error, failure, make_zip, raw_request, unique_name

APP = '''
def handler(event, context):
    return {"tenant": context.tenant_id}
'''
PER_TENANT = {"TenantIsolationMode": "PER_TENANT"}
MISSING = ("The invoked function is enabled with tenancy configuration. Add a valid tenant ID in your request and "
           "try again.")
UNWANTED = ("The invoked function is not enabled with tenancy configuration. Remove the tenant ID from your request "
            "and try again.")


def test_invoke_tenant_errors_match_aws(lambda_client, endpoint, functions):
    isolated = functions({"app.py": APP}, TenancyConfig=PER_TENANT)
    shared = functions({"app.py": APP})
    assert failure(lambda_client.invoke, FunctionName=isolated, Payload=b"{}") == \
        (400, "InvalidParameterValueException", MISSING)
    assert failure(lambda_client.invoke, FunctionName=shared, Payload=b"{}", TenantId="blue") == \
        (400, "InvalidParameterValueException", UNWANTED)
    for invocation_type in ("Event", "DryRun"):
        assert failure(lambda_client.invoke, FunctionName=isolated, Payload=b"{}", InvocationType=invocation_type) \
            == (400, "InvalidParameterValueException", MISSING)
        assert failure(lambda_client.invoke, FunctionName=shared, Payload=b"{}", TenantId="blue",
                       InvocationType=invocation_type) == (400, "InvalidParameterValueException", UNWANTED)
    assert failure(lambda_client.invoke_with_response_stream, FunctionName=shared, Payload=b"{}",
                   TenantId="blue") == (400, "InvalidParameterValueException", UNWANTED)

    # The header is checked against the model (TenantId: 1-256 characters of [a-zA-Z0-9._:/=+-@ ]) first,
    # whatever the function.
    path = f"/2015-03-31/functions/{shared}/invocations"
    resp = raw_request(endpoint, "POST", path, b"{}", {"X-Amz-Tenant-Id": "a|b"})
    assert_aws_error(resp, 400, "ValidationException",
                     "1 validation error detected: Value 'a|b' at 'tenantId' failed to satisfy constraint: "
                     "Member must satisfy regular expression pattern")
    resp = raw_request(endpoint, "POST", path, b"{}", {"X-Amz-Tenant-Id": "x" * 257})
    assert_aws_error(resp, 400, "ValidationException", "Member must have length less than or equal to 256")
    resp = raw_request(endpoint, "POST", f"/2015-03-31/functions/{isolated}/invocations", b"{}",
                       {"X-Amz-Tenant-Id": "x" * 256})
    assert resp.status == 200 and json.loads(resp.body) == {"tenant": "x" * 256}, resp.describe()


def test_tenancy_config_validation_matches_aws(lambda_client, endpoint, functions):
    def create(config) -> tuple[int, str, str]:
        body = {"FunctionName": unique_name("tenancy-v"), "Runtime": RUNTIME, "Role": ROLE, "Handler": "app.handler",
                "Code": {"ZipFile": base64.b64encode(make_zip({"app.py": APP})).decode()},
                "TenancyConfig": config}
        resp = raw_request(endpoint, "POST", "/2015-03-31/functions", json.dumps(body).encode())
        assert resp.status >= 400, resp.describe()
        data = resp.json()
        return resp.status, resp.error_type, data.get("message") or data.get("Message")

    status, code, message = create({"TenantIsolationMode": "SHARED"})
    assert (status, code) == (400, "ValidationException")
    assert message == ("1 validation error detected: Value 'SHARED' at 'tenancyConfig.tenantIsolationMode' failed "
                       "to satisfy constraint: Member must satisfy enum value set: [PER_TENANT]")
    status, code, message = create({})
    assert (status, code) == (400, "ValidationException") and "Member must not be null" in message

    # Tenancy is fixed at creation: UpdateFunctionConfiguration has no TenancyConfig member, and a raw request
    # that tries to change it is refused rather than silently ignored.
    name = functions({"app.py": APP}, TenancyConfig=PER_TENANT)
    path = f"/2015-03-31/functions/{name}/configuration"
    resp = raw_request(endpoint, "PUT", path, json.dumps({"TenancyConfig": {"TenantIsolationMode": "X"}}).encode())
    assert_aws_error(resp, 400, ("ValidationException", "InvalidParameterValueException"))
    shared = functions({"app.py": APP})
    resp = raw_request(endpoint, "PUT", f"/2015-03-31/functions/{shared}/configuration",
                       json.dumps({"TenancyConfig": PER_TENANT}).encode())
    assert_aws_error(resp, 400, "InvalidParameterValueException", "cannot be modified after function creation")
    assert "TenancyConfig" not in lambda_client.get_function_configuration(FunctionName=shared)
