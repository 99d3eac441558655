"""Request validation for the MicroVMs API: the ranges, enums and shapes of botocore's model.

Each function takes the parsed JSON body and returns the normalized values or raises ApiError
(ValidationException) naming the member at fault.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lamina.microvm.engine import HOOK_NAMES, Hooks
from lamina.microvm.errors import constraint, invalid

IMAGE_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
ROLE_ARN = re.compile(r"arn:aws[a-z\-]*:iam::[0-9]{12}:role/?[a-zA-Z_0-9+=,.@\-/]+")
NON_BLANK = re.compile(r"[^\s]+")
TAG = re.compile(r"[\w\s_.:/=+\-@]*")
# AWS documents 16 KB for runHookPayload (the model says 4096; botocore does not enforce max lengths).
MAX_RUN_HOOK_PAYLOAD = 16 * 1024
MAX_DURATION = 28_800
DEFAULT_MEMORY_MIB = 2048
RUNTIME_HOOKS = ("run", "resume", "suspend", "terminate")
BUILD_HOOKS = ("ready", "validate")
HOOK_STATES = ("ENABLED", "DISABLED")


@dataclass
class RunRequest:
    image: str
    version: str | None
    client_token: str | None
    idle_policy: dict | None
    max_duration: int
    payload: str | None
    execution_role: str | None
    ingress: list[str]
    egress: list[str]
    logging: dict | None


def _int(body: dict, key: str, member: str, low: int | None = None, high: int | None = None) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise constraint(value, member, "Member must be an integer")
    if low is not None and value < low:
        raise constraint(value, member, f"Member must have value greater than or equal to {low}")
    if high is not None and value > high:
        raise constraint(value, member, f"Member must have value less than or equal to {high}")
    return value


def _str(body: dict, key: str, member: str, low: int = 0, high: int = 2048, pattern: re.Pattern | None = None,
         required: bool = False) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            raise constraint("null", member, "Member must not be null")
        return None
    if not isinstance(value, str):
        raise constraint(value, member, "Member must be a string")
    if len(value) < low:
        raise constraint(value, member, f"Member must have length greater than or equal to {low}")
    if len(value) > high:
        raise constraint(value[:64] + "...", member, f"Member must have length less than or equal to {high}")
    if pattern is not None and not pattern.fullmatch(value):
        raise constraint(value, member, f"Member must satisfy regular expression pattern: {pattern.pattern}")
    return value


def _str_list(body: dict, key: str, member: str, high: int) -> list[str]:
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and 1 <= len(v) <= 2048 for v in value):
        raise constraint(value, member, "Member must be a list of non-empty strings")
    if len(value) > high:
        raise constraint(value, member, f"Member must have length less than or equal to {high}")
    return value


def idle_policy(body: dict, min_idle: int) -> dict | None:
    """All three fields or no policy at all (no policy: never suspended for idleness)."""
    policy = body.get("idlePolicy")
    if policy is None:
        return None
    if not isinstance(policy, dict):
        raise constraint(policy, "idlePolicy", "Member must be a structure")
    missing = [k for k in ("maxIdleDurationSeconds", "suspendedDurationSeconds", "autoResumeEnabled")
               if policy.get(k) is None]
    if missing:
        raise invalid(f"idlePolicy needs all of maxIdleDurationSeconds, suspendedDurationSeconds and "
                      f"autoResumeEnabled (missing: {', '.join(missing)}); omit idlePolicy to disable idle suspend.")
    max_idle = _int(policy, "maxIdleDurationSeconds", "idlePolicy.maxIdleDurationSeconds", min_idle, MAX_DURATION)
    suspended = _int(policy, "suspendedDurationSeconds", "idlePolicy.suspendedDurationSeconds", 0, MAX_DURATION)
    auto = policy["autoResumeEnabled"]
    if not isinstance(auto, bool):
        raise constraint(auto, "idlePolicy.autoResumeEnabled", "Member must be a boolean")
    return {"maxIdleDurationSeconds": max_idle, "suspendedDurationSeconds": suspended, "autoResumeEnabled": auto}


def logging_config(body: dict) -> dict | None:
    value = body.get("logging")
    if value is None:
        return None
    if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in ("disabled", "cloudWatch"):
        raise constraint(value, "logging", "Member must have exactly one of: disabled, cloudWatch")
    return value


def run_request(body: dict, min_idle: int) -> RunRequest:
    image = _str(body, "imageIdentifier", "imageIdentifier", 1, 256, required=True)
    version = _str(body, "imageVersion", "imageVersion", 1, 2048, NON_BLANK)
    token = _str(body, "clientToken", "clientToken", 1, 128)
    payload = _str(body, "runHookPayload", "runHookPayload", 0, 1 << 30)
    if payload is not None and len(payload.encode()) > MAX_RUN_HOOK_PAYLOAD:
        raise invalid(f"runHookPayload is {len(payload.encode())} bytes; the limit is {MAX_RUN_HOOK_PAYLOAD} bytes "
                      "(16 KB). Pass a reference (a key or URL) to larger data instead.")
    duration = _int(body, "maximumDurationInSeconds", "maximumDurationInSeconds", 1, MAX_DURATION)
    role = _str(body, "executionRoleArn", "executionRoleArn", 20, 2048, ROLE_ARN)
    return RunRequest(image=image or "", version=version, client_token=token, idle_policy=idle_policy(body, min_idle),
                      max_duration=duration if duration is not None else MAX_DURATION, payload=payload,
                      execution_role=role,
                      ingress=_str_list(body, "ingressNetworkConnectors", "ingressNetworkConnectors", 10),
                      egress=_str_list(body, "egressNetworkConnectors", "egressNetworkConnectors", 10),
                      logging=logging_config(body))


def auth_token_request(body: dict) -> tuple[list[dict], int]:
    """(allowedPorts, expirationInMinutes) of CreateMicrovmAuthToken."""
    minutes = _int(body, "expirationInMinutes", "expirationInMinutes", 1, 60)
    if minutes is None:
        raise constraint("null", "expirationInMinutes", "Member must not be null")
    ports = body.get("allowedPorts")
    if not isinstance(ports, list) or not ports:
        raise constraint(ports, "allowedPorts", "Member must have length greater than or equal to 1")
    for i, spec in enumerate(ports):
        member = f"allowedPorts.{i + 1}"
        if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in ("port", "range", "allPorts"):
            raise constraint(spec, member, "Member must have exactly one of: port, range, allPorts")
        if "port" in spec:
            _int(spec, "port", member + ".port", 1, 65535)
        elif "range" in spec:
            rng = spec["range"]
            if not isinstance(rng, dict) or rng.get("startPort") is None or rng.get("endPort") is None:
                raise constraint(rng, member + ".range", "Member must have startPort and endPort")
            start = _int(rng, "startPort", member + ".range.startPort", 1, 65535)
            end = _int(rng, "endPort", member + ".range.endPort", 1, 65535)
            if start is not None and end is not None and start > end:
                raise invalid(f"{member}.range: startPort {start} is greater than endPort {end}.")
        elif spec["allPorts"] != {}:
            raise constraint(spec["allPorts"], member + ".allPorts", "Member must be an empty structure")
    return ports, minutes


def hooks(body: dict) -> Hooks:
    """The API's hooks structure as the engine's Hooks."""
    value = body.get("hooks")
    result = Hooks()
    if value is None:
        return result
    if not isinstance(value, dict):
        raise constraint(value, "hooks", "Member must be a structure")
    port = _int(value, "port", "hooks.port", 1, 65535)
    if port is not None:
        result.port = port
    for group, names, high in (("microvmHooks", RUNTIME_HOOKS, 60), ("microvmImageHooks", BUILD_HOOKS, 3600)):
        section = value.get(group) or {}
        if not isinstance(section, dict):
            raise constraint(section, f"hooks.{group}", "Member must be a structure")
        for name in names:
            state = section.get(name)
            if state is not None and state not in HOOK_STATES:
                raise constraint(state, f"hooks.{group}.{name}", "Member must satisfy enum value set: "
                                 "[DISABLED, ENABLED]")
            if state == "ENABLED":
                result.enabled.add(name)
            timeout = _int(section, f"{name}TimeoutInSeconds", f"hooks.{group}.{name}TimeoutInSeconds", 1, high)
            if timeout is not None:
                result.timeouts[name] = float(timeout)
    assert result.enabled <= set(HOOK_NAMES)
    return result


def image_request(body: dict, update: bool) -> dict:
    """The configuration of Create/UpdateMicrovmImage (a new version), validated; name only on create."""
    out: dict = {}
    if not update:
        out["name"] = _str(body, "name", "name", 1, 64, IMAGE_NAME, required=True)
    out["baseImageArn"] = _str(body, "baseImageArn", "baseImageArn", 1, 2048, NON_BLANK, required=True)
    out["buildRoleArn"] = _str(body, "buildRoleArn", "buildRoleArn", 20, 2048, ROLE_ARN, required=True)
    for key in ("baseImageVersion",):
        if (value := _str(body, key, key, 1, 2048, NON_BLANK)) is not None:
            out[key] = value
    if (desc := _str(body, "description", "description", 0, 256)) is not None:
        out["description"] = desc
    artifact = body.get("codeArtifact")
    if not isinstance(artifact, dict) or not isinstance(artifact.get("uri"), str) or not artifact["uri"].strip():
        raise constraint(artifact, "codeArtifact", "Member must have a non-blank uri")
    out["codeArtifact"] = {"uri": artifact["uri"]}
    if (logging := logging_config(body)) is not None:
        out["logging"] = logging
    if body.get("egressNetworkConnectors") is not None:
        out["egressNetworkConnectors"] = _str_list(body, "egressNetworkConnectors", "egressNetworkConnectors", 1)
    cpus = body.get("cpuConfigurations")
    if cpus is not None:
        if not isinstance(cpus, list) or not all(isinstance(c, dict) and c.get("architecture") in ("ARM_64", "X86_64")
                                                 for c in cpus):
            raise constraint(cpus, "cpuConfigurations", "Each member must have architecture ARM_64 or X86_64")
        out["cpuConfigurations"] = cpus
    resources = body.get("resources")
    if resources is not None:
        if not isinstance(resources, list) or len(resources) > 1:
            raise constraint(resources, "resources", "Member must have length less than or equal to 1")
        for res in resources:
            if not isinstance(res, dict):
                raise constraint(res, "resources.1", "Member must be a structure")
            _int(res, "minimumMemoryInMiB", "resources.1.minimumMemoryInMiB", 128, 32768)
            if res.get("minimumMemoryInMiB") is None:
                raise constraint("null", "resources.1.minimumMemoryInMiB", "Member must not be null")
        out["resources"] = resources
    caps = body.get("additionalOsCapabilities")
    if caps is not None:
        if not isinstance(caps, list) or any(c != "ALL" for c in caps):
            raise constraint(caps, "additionalOsCapabilities", "Member must satisfy enum value set: [ALL]")
        out["additionalOsCapabilities"] = caps
    if body.get("hooks") is not None:
        hooks(body)  # validates
        out["hooks"] = body["hooks"]
    env = body.get("environmentVariables")
    if env is not None:
        if not isinstance(env, dict) or len(env) > 100:
            raise constraint("...", "environmentVariables", "Member must be a map of at most 100 entries")
        for key, val in env.items():
            if not NON_BLANK.fullmatch(key) or len(key) > 256 or not isinstance(val, str) or len(val) > 4096:
                raise constraint(key, "environmentVariables", "Keys must be 1-256 non-blank characters, values "
                                 "strings of at most 4096")
        out["environmentVariables"] = env
    return out


def memory_mib(config: dict) -> int:
    resources = config.get("resources") or []
    return int(resources[0]["minimumMemoryInMiB"]) if resources else DEFAULT_MEMORY_MIB


def tags(value: object, member: str = "Tags") -> dict[str, str]:
    if not isinstance(value, dict):
        raise constraint(value, member, "Member must be a map")
    for key, val in value.items():
        if not isinstance(key, str) or not 1 <= len(key) <= 128 or not TAG.fullmatch(key):
            raise constraint(key, member, "Tag keys must be 1-128 letters, digits, spaces or _.:/=+-@")
        if not isinstance(val, str) or len(val) > 256 or not TAG.fullmatch(val):
            raise constraint(val, member, "Tag values must be at most 256 letters, digits, spaces or _.:/=+-@")
    return dict(value)
