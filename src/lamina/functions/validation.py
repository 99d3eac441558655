"""Request validation for the function APIs, with AWS's error types and wording."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from lamina.functions.errors import AwsError, validation, validation_errors
from lamina.functions.runtime_sets import FUNCTION_RUNTIMES_MESSAGE
from lamina.sandbox.interpreters import LANGUAGE_RUNTIMES

MIN_MEMORY, MAX_MEMORY = 128, 10240
MAX_TIMEOUT = 900
MAX_ENV_BYTES = 4096

# python3.9+ and nodejs18.x+ (each on an interpreter of its version found on the host: sandbox/interpreters.py).
RUNNABLE_RUNTIMES = set(LANGUAGE_RUNTIMES) | {"provided", "provided.al2", "provided.al2023"}
DEPRECATED_RUNTIMES = {"python2.7", "python3.6", "python3.7", "python3.8", "nodejs", "nodejs4.3", "nodejs6.10",
                       "nodejs8.10", "nodejs10.x", "nodejs12.x", "nodejs14.x", "nodejs16.x", "dotnetcore1.0",
                       "dotnetcore2.0", "dotnetcore2.1", "go1.x", "ruby2.5", "java8", "nodejs4.3-edge"}
# The rest of botocore's Runtime enum: valid on AWS, but not something Lamina can run (yet).
KNOWN_RUNTIMES = {
    "java8.al2", "java11", "java17", "java21", "java25", "java8.al2023", "java11.al2023", "java17.al2023",
    "dotnetcore3.1", "dotnet6", "dotnet8", "dotnet10", "ruby2.7", "ruby3.2", "ruby3.3", "ruby3.4", "ruby4.0",
    "custom",
} | RUNNABLE_RUNTIMES | DEPRECATED_RUNTIMES

RESERVED_ENV = {
    "_HANDLER", "_X_AMZN_TRACE_ID", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR",
}
_ENV_KEY = re.compile(r"[a-zA-Z]([a-zA-Z0-9_])*")
_HANDLER = re.compile(r"[^\s]+")


def require_object(body: object) -> dict:
    if not isinstance(body, dict):
        raise AwsError("SerializationException", "The request body must be a JSON object.")
    return body


def integer(body: dict, key: str, member: str, low: int, high: int) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise validation(value, member, "Member must be an integer")
    if value < low:
        raise validation(value, member, f"Member must have value greater than or equal to {low}")
    if value > high:
        raise validation(value, member, f"Member must have value less than or equal to {high}")
    return value


def required_integer(body: dict, key: str, member: str, low: int, high: int) -> int:
    """A member that must be present: `integer`'s checks after `required`'s."""
    required(body, key, member)
    value = integer(body, key, member, low, high)
    assert value is not None  # required() refused a missing or null member
    return value


def string(body: dict, key: str, member: str, max_len: int, pattern: re.Pattern | None = None) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise validation(value, member, "Member must be a string")
    if len(value) > max_len:
        raise validation(value, member, f"Member must have length less than or equal to {max_len}")
    if pattern is not None and not pattern.fullmatch(value):
        raise validation(value, member, f"Member must satisfy regular expression pattern: {pattern.pattern}")
    return value


def boolean(body: dict, key: str, member: str) -> bool | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise validation(value, member, "Member must be a boolean")
    return value


def required(body: dict, key: str, member: str) -> object:
    if body.get(key) is None:
        raise validation("null", member, "Member must not be null")
    return body[key]


def runtime(body: dict) -> str | None:
    value = body.get("Runtime")
    if value is None:
        return None
    if not isinstance(value, str) or value not in KNOWN_RUNTIMES:
        # AWS's wording for this member (InvalidParameterValueException, not a ValidationException), its list in
        # AWS's order.
        raise AwsError("InvalidParameterValueException", f"Value {value} at 'runtime' failed to satisfy constraint: "
                       f"Member must satisfy enum value set: {FUNCTION_RUNTIMES_MESSAGE} or be a valid ARN")
    if value in DEPRECATED_RUNTIMES:
        raise AwsError("InvalidParameterValueException",
                       f"The runtime parameter of {value} is no longer supported for creating or updating AWS "
                       "Lambda functions. We recommend you use a supported runtime while creating or updating "
                       "functions.")
    if value not in RUNNABLE_RUNTIMES:
        raise AwsError("InvalidParameterValueException",
                       f"The runtime {value} is not supported by Lamina. Use python3.9 to python3.15, nodejs18.x "
                       "to nodejs26.x, or provided.al2023 with a bootstrap executable in the package.")
    return value


ROLE = re.compile(r"arn:(aws[a-zA-Z-]*)?:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+")


def role(body: dict) -> str | None:
    return string(body, "Role", "role", 2048, ROLE)


def architectures(body: dict) -> list[str] | None:
    """Architectures as the model constrains it (one of x86_64, arm64), before Lamina's own check of the host."""
    value = body.get("Architectures")
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        raise validation(value, "architectures", "Member must be a list of strings")
    if len(value) > 1:
        raise validation_errors([(value, "architectures", "Member must have length less than or equal to 1")])
    if len(value) < 1 or value[0] not in ("x86_64", "arm64"):
        raise validation_errors([(value, "architectures", "Member must satisfy constraint: [Member must satisfy enum "
                                  "value set: [x86_64, arm64], Member must not be null]")])
    return list(value)


def handler(body: dict) -> str | None:
    return string(body, "Handler", "handler", 128, _HANDLER)


def environment(body: dict) -> dict[str, str] | None:
    value = body.get("Environment")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise validation(value, "environment", "Member must be an object with a Variables map")
    variables = value.get("Variables") or {}
    if not isinstance(variables, dict) or not all(isinstance(v, str) for v in variables.values()):
        raise validation(variables, "environment.variables", "Member must be a map of strings to strings")
    reserved = sorted(set(variables) & RESERVED_ENV)
    if reserved:
        raise AwsError("InvalidParameterValueException",
                       "Lambda was unable to configure your environment variables because the environment "
                       "variables you have provided contains reserved keys that are currently not supported for "
                       f"modification. Reserved keys used in this request: {', '.join(reserved)}")
    for key in variables:
        if not _ENV_KEY.fullmatch(key):
            raise validation(key, "environment.variables", f"Map keys must satisfy constraint: [Member must "
                             f"satisfy regular expression pattern: {_ENV_KEY.pattern}]")
    # AWS measures the variables as compact JSON, and shows what it measured.
    measured = json.dumps(variables, separators=(",", ":"), ensure_ascii=False)
    if len(measured.encode()) > MAX_ENV_BYTES:
        raise AwsError("InvalidParameterValueException",
                       "Lambda was unable to configure your environment variables because the environment "
                       f"variables you have provided exceeded the 4KB limit. String measured: {measured}")
    return dict(variables)


def ephemeral_storage(body: dict) -> int | None:
    value = body.get("EphemeralStorage")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise validation(value, "ephemeralStorage", "Member must be an object with Size")
    return integer(value, "Size", "ephemeralStorage.size", 512, 10240)


MAX_TAGS = 50
_TAG_KEY_CONSTRAINT = ("Map keys must satisfy constraint: [Member must have length less than or equal to 128, Member "
                       "must have length greater than or equal to 1]")
_TAG_VALUE_CONSTRAINT = ("Map value must satisfy constraint: [Member must have length less than or equal to 256, "
                         "Member must have length greater than or equal to 0]")


def tags(body: dict) -> dict[str, str]:
    return check_tags(body.get("Tags") or {})


def check_tags(value: object, member: str = "tags") -> dict[str, str]:
    """A Tags map (CreateFunction, CreateCodeSigningConfig, TagResource): at most 50, keys 1-128 characters not
    starting with aws:, values up to 256, as AWS limits them."""
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise validation(value, member, "Member must be a map of strings to strings")
    if len(value) > MAX_TAGS:
        raise AwsError("InvalidParameterValueException", "Number of tags exceeds resource tag limit.")
    for key, tag in value.items():
        if not 1 <= len(key) <= 128:
            raise validation(value, member, _TAG_KEY_CONSTRAINT)
        if len(tag) > 256:
            raise validation(value, member, _TAG_VALUE_CONSTRAINT)
        if key.lower().startswith("aws:"):
            raise AwsError("InvalidParameterValueException", f"Tag keys starting with 'aws:' are reserved: {key}")
    return dict(value)


# The JSON type of each member of the function operations, from the model: a member of another type is refused
# before anything else is looked at, so nothing is accepted and then ignored.
_STRING, _INTEGER, _BOOLEAN, _STRUCTURE, _LIST, _MAP = "string", "integer", "boolean", "structure", "list", "map"
_COMMON_MEMBERS = {
    "Role": _STRING, "Handler": _STRING, "Description": _STRING, "Timeout": _INTEGER, "MemorySize": _INTEGER,
    "VpcConfig": _STRUCTURE, "Environment": _STRUCTURE, "Runtime": _STRING, "DeadLetterConfig": _STRUCTURE,
    "KMSKeyArn": _STRING, "TracingConfig": _STRUCTURE, "Layers": _LIST, "FileSystemConfigs": _LIST,
    "ImageConfig": _STRUCTURE, "EphemeralStorage": _STRUCTURE, "SnapStart": _STRUCTURE, "LoggingConfig": _STRUCTURE,
    "CapacityProviderConfig": _STRUCTURE, "DurableConfig": _STRUCTURE, "RuntimeConfig": _STRUCTURE,
    "AcceleratorConfig": _STRUCTURE,
}
MEMBER_TYPES = {
    "CreateFunction": {**_COMMON_MEMBERS, "FunctionName": _STRING, "Code": _STRUCTURE, "Publish": _BOOLEAN,
                       "PublishTo": _STRING, "PackageType": _STRING, "Tags": _MAP, "CodeSigningConfigArn": _STRING,
                       "Architectures": _LIST, "TenancyConfig": _STRUCTURE},
    "UpdateFunctionConfiguration": {**_COMMON_MEMBERS, "RevisionId": _STRING},
    "UpdateFunctionCode": {"ZipFile": _STRING, "S3Bucket": _STRING, "S3Key": _STRING, "S3ObjectVersion": _STRING,
                           "S3ObjectStorageMode": _STRING, "ImageUri": _STRING, "Architectures": _LIST,
                           "Publish": _BOOLEAN, "PublishTo": _STRING, "DryRun": _BOOLEAN, "RevisionId": _STRING,
                           "SourceKMSKeyArn": _STRING},
}
_TYPE_CHECKS = {_STRING: lambda x: isinstance(x, str), _INTEGER: lambda x: isinstance(x, int) and not isinstance(
    x, bool), _BOOLEAN: lambda x: isinstance(x, bool), _STRUCTURE: lambda x: isinstance(x, dict),
    _LIST: lambda x: isinstance(x, list), _MAP: lambda x: isinstance(x, dict)}
_TYPE_WORDS = {_STRING: "a string", _INTEGER: "an integer", _BOOLEAN: "a boolean", _STRUCTURE: "a structure",
               _LIST: "a list", _MAP: "a map"}


def member_types(body: dict, operation: str) -> None:
    """Every member of the wrong JSON type, in one ValidationException (members the model does not have are left to
    the operation, as AWS ignores them)."""
    problems: list[tuple[object, str, str]] = []
    for key, kind in MEMBER_TYPES[operation].items():
        value = body.get(key)
        if value is not None and not _TYPE_CHECKS[kind](value):
            problems.append((value, key[0].lower() + key[1:], f"Member must be {_TYPE_WORDS[kind]}"))
    if problems:
        raise validation_errors(problems)


TRACING_MODES = ("Active", "PassThrough")


def tracing_config(body: dict) -> dict | None:
    """TracingConfig.Mode (Active or PassThrough). Stored and returned; the X-Ray trace header reaches the function
    either way (_X_AMZN_TRACE_ID), and Lamina has no X-Ray to send segments to."""
    value = body.get("TracingConfig")
    if value is None:
        return None
    mode = value.get("Mode", "PassThrough")
    if mode not in TRACING_MODES:
        raise validation(mode, "tracingConfig.mode", "Member must satisfy enum value set: [Active, PassThrough]")
    return {"Mode": mode}


def unsupported(body: dict) -> None:
    """Fields Lamina cannot honour get a clear error rather than being ignored."""
    if body.get("PackageType", "Zip") != "Zip":
        raise AwsError("InvalidParameterValueException",
                       "PackageType Image is not supported by Lamina: upload a .zip package as Code.ZipFile.")
    for key, why in (("KMSKeyArn", "Lamina has no KMS to encrypt environment variables with"),
                     ("SourceKMSKeyArn", "Lamina has no KMS to encrypt code with"),
                     ("FileSystemConfigs", "Lamina cannot mount EFS file systems (yet)"),
                     ("ImageConfig", "Lamina runs .zip packages, not container images"),
                     ("DurableConfig", "Lamina does not offer durable executions"),
                     ("CapacityProviderConfig", "Lamina does not offer capacity providers (Lambda Managed Instances)"),
                     ("RuntimeConfig", "Lamina does not offer this runtime configuration"),
                     ("AcceleratorConfig", "Lamina does not offer accelerators")):
        if body.get(key):   # empty means none, as AWS reads it
            raise AwsError("InvalidParameterValueException", f"{key} is not supported: {why}.")
    archs = architectures(body)
    if archs is not None and archs != ["x86_64"]:
        raise AwsError("InvalidParameterValueException",
                       "Lamina runs functions on this host's architecture: Architectures must be ['x86_64'].")


TENANT_ISOLATION_MODES = ("PER_TENANT",)
# The Lambda model's TenantId pattern (X-Amz-Tenant-Id; the UDP gateway checks its TenantId arguments with it too).
TENANT_ID = re.compile(r"[a-zA-Z0-9\._:\/=+\-@ ]+")


def tenancy_config(body: dict) -> dict | None:
    """CreateFunction's TenancyConfig: {"TenantIsolationMode": "PER_TENANT"} (the model's only mode)."""
    value = body.get("TenancyConfig")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise validation(value, "tenancyConfig", "Member must be an object with TenantIsolationMode")
    mode = value.get("TenantIsolationMode")
    if mode is None:
        raise validation("null", "tenancyConfig.tenantIsolationMode", "Member must not be null")
    if mode not in TENANT_ISOLATION_MODES:
        raise validation(mode, "tenancyConfig.tenantIsolationMode",
                         f"Member must satisfy enum value set: [{', '.join(TENANT_ISOLATION_MODES)}]")
    return {"TenantIsolationMode": mode}


def tenant_id(value: str | None) -> str | None:
    """The X-Amz-Tenant-Id header: 1-256 characters of the model's TenantId pattern."""
    if value is None:
        return None
    if len(value) < 1:
        raise validation(value, "tenantId", "Member must have length greater than or equal to 1")
    if len(value) > 256:
        raise validation(value, "tenantId", "Member must have length less than or equal to 256")
    if not TENANT_ID.fullmatch(value):
        raise validation(value, "tenantId", f"Member must satisfy regular expression pattern: {TENANT_ID.pattern}")
    return value


DEAD_LETTER_ARN = re.compile(r"(arn:(aws[a-zA-Z-]*)?:[a-z0-9-.]+:.*)|()")


def dead_letter_config(body: dict, targets: dict[str, Callable[[str], bool]]) -> str | None:
    """DeadLetterConfig.TargetArn: None when not given, '' to remove it, else an ARN of a queue or topic this
    server has (`targets`: by ARN service, whether one exists). Lamina cannot deliver to any other: refused."""
    value = body.get("DeadLetterConfig")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise validation(value, "deadLetterConfig", "Member must be a structure")
    arn = value.get("TargetArn")
    if arn is None or arn == "":
        return ""
    if not isinstance(arn, str):
        raise validation(arn, "deadLetterConfig.targetArn", "Member must be a string")
    if not DEAD_LETTER_ARN.fullmatch(arn):
        raise validation(arn, "deadLetterConfig.targetArn",
                         f"Member must satisfy regular expression pattern: {DEAD_LETTER_ARN.pattern}")
    service = arn.split(":", 3)[2]
    exists = targets.get(service)
    if exists is None:
        have = " or ".join(sorted(targets)) or "none yet"
        raise AwsError("InvalidParameterValueException",
                       f"The provided target ARN {arn} is invalid: a dead-letter queue must be an SQS queue or SNS "
                       f"topic of this server (kinds Lamina has: {have}).")
    if not exists(arn):
        raise AwsError("InvalidParameterValueException", f"The provided target ARN {arn} does not exist.")
    return arn


SUBNET_ID = re.compile(r"subnet-[0-9a-z]*")
SECURITY_GROUP_ID = re.compile(r"sg-[0-9a-zA-Z]*")


def vpc_config(body: dict) -> dict | None:
    """VpcConfig's form, as AWS checks it before looking anything up: {SubnetIds, SecurityGroupIds,
    Ipv6AllowedForDualStack}, both lists given or both empty; None when the request has none."""
    value = body.get("VpcConfig")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise validation(value, "vpcConfig", "Member must be a structure")
    problems: list[tuple[object, str, str]] = []
    lists: list[list[str]] = []
    for key, member, pattern, most in (("SubnetIds", "vpcConfig.subnetIds", SUBNET_ID, 16),
                                       ("SecurityGroupIds", "vpcConfig.securityGroupIds", SECURITY_GROUP_ID, 5)):
        ids = value.get(key) or []
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise validation(ids, member, "Member must be a list of strings")
        lists.append(ids)
        if len(ids) > most:
            problems.append((ids, member, f"Member must have length less than or equal to {most}"))
        elif any(len(i) > 1024 or not pattern.fullmatch(i) for i in ids):
            problems.append((ids, member, "Member must satisfy constraint: [Member must have length less than or "
                             "equal to 1024, Member must have length greater than or equal to 0, Member must satisfy "
                             f"regular expression pattern: {pattern.pattern}]"))
    if problems:
        raise validation_errors(problems)
    dual_stack = boolean(value, "Ipv6AllowedForDualStack", "vpcConfig.ipv6AllowedForDualStack") or False
    subnets, groups = lists
    if bool(subnets) != bool(groups):
        raise AwsError("InvalidParameterValueException",
                       "SubnetIds and SecurityIds must coexist or be both empty list.")
    return {"SubnetIds": list(subnets), "SecurityGroupIds": list(groups), "Ipv6AllowedForDualStack": dual_stack}


LOG_FORMATS = ("JSON", "Text")
APPLICATION_LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
SYSTEM_LOG_LEVELS = ("DEBUG", "INFO", "WARN")
LOG_GROUP = re.compile(r"[\.\-_/#A-Za-z0-9]+")


def logging_config(body: dict, current: dict) -> dict | None:
    """LoggingConfig merged into the function's `current` one as AWS merges it: JSON brings ApplicationLogLevel and
    SystemLogLevel INFO unless given, going back to Text drops them, a log level under Text is refused. None when
    the request has none."""
    value = body.get("LoggingConfig")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise validation(value, "loggingConfig", "Member must be a structure")
    problems: list[tuple[object, str, str]] = []
    for key, member, allowed in (("LogFormat", "loggingConfig.logFormat", LOG_FORMATS),
                                 ("ApplicationLogLevel", "loggingConfig.applicationLogLevel", APPLICATION_LOG_LEVELS),
                                 ("SystemLogLevel", "loggingConfig.systemLogLevel", SYSTEM_LOG_LEVELS)):
        if value.get(key) is not None and value[key] not in allowed:
            problems.append((value[key], member, f"Member must satisfy enum value set: [{', '.join(allowed)}]"))
    group = value.get("LogGroup")
    if group is not None and (not isinstance(group, str) or not 1 <= len(group) <= 512
                              or not LOG_GROUP.fullmatch(group)):
        problems.append((group, "loggingConfig.logGroup",
                         f"Member must satisfy regular expression pattern: {LOG_GROUP.pattern}"))
    if problems:
        raise validation_errors(problems)
    given = {k: val for k, val in value.items()
             if k in ("LogFormat", "ApplicationLogLevel", "SystemLogLevel", "LogGroup") and val is not None}
    if given.get("LogFormat") == "JSON":
        given = {"ApplicationLogLevel": "INFO", "SystemLogLevel": "INFO", **given}
    merged = {**current, **given}
    if merged.get("LogFormat") == "Text":
        if "ApplicationLogLevel" in given or "SystemLogLevel" in given:
            raise AwsError("InvalidParameterValueException", 'LogLevel is not supported when LogFormat is set to '
                           '"Text". Remove LogLevel from your request or change the LogFormat to "JSON" and try again.')
        merged.pop("ApplicationLogLevel", None)
        merged.pop("SystemLogLevel", None)
    return merged


SNAP_START_APPLY_ON = ("PublishedVersions", "None")
# The runtimes AWS offers SnapStart for that Lamina runs (AWS's also include Java and .NET).
SNAP_START_RUNTIMES = ("python3.12", "python3.13")


def snap_start(body: dict) -> str | None:
    """SnapStart.ApplyOn (PublishedVersions or None); None when the request has no SnapStart."""
    value = body.get("SnapStart")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise validation(value, "snapStart", "Member must be a structure")
    apply_on = value.get("ApplyOn", "None")
    if apply_on not in SNAP_START_APPLY_ON:
        raise validation(apply_on, "snapStart.applyOn", "Member must satisfy enum value set: [PublishedVersions, None]")
    return str(apply_on)


def check_snap_start(apply_on: str, runtime: str) -> None:
    if apply_on == "PublishedVersions" and runtime not in SNAP_START_RUNTIMES:
        raise AwsError("InvalidParameterValueException", f"{runtime} is not supported for SnapStart enabled functions.")
