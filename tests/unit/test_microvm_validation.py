"""MicroVMs API request validation: ranges, the idle policy's all-or-none rule, payload size, tokens' ports."""

from __future__ import annotations

import pytest

from lamina.microvm import ids
from lamina.microvm import validation as v
from lamina.microvm.errors import ApiError

IMAGE = "arn:aws:lambda:us-east-1:000000000000:microvm-image:demo"


def run(**body):
    return v.run_request({"imageIdentifier": IMAGE, **body}, min_idle=60)


def test_run_minimal_defaults() -> None:
    req = run()
    assert req.image == IMAGE and req.version is None and req.idle_policy is None
    assert req.max_duration == 28_800 and req.payload is None and req.client_token is None


@pytest.mark.parametrize("value", [0, 28_801, -5, "10", True])
def test_max_duration_out_of_range(value: object) -> None:
    with pytest.raises(ApiError) as err:
        run(maximumDurationInSeconds=value)
    assert err.value.code == "ValidationException" and "maximumDurationInSeconds" in err.value.message


@pytest.mark.parametrize("value", [1, 28_800])
def test_max_duration_bounds_accepted(value: int) -> None:
    assert run(maximumDurationInSeconds=value).max_duration == value


def test_idle_policy_all_three_or_none() -> None:
    full = {"maxIdleDurationSeconds": 60, "suspendedDurationSeconds": 0, "autoResumeEnabled": True}
    assert run(idlePolicy=full).idle_policy == full
    for missing in full:
        partial = {k: val for k, val in full.items() if k != missing}
        with pytest.raises(ApiError) as err:
            run(idlePolicy=partial)
        assert err.value.status == 400 and missing in err.value.message


def test_idle_minimum_is_the_server_setting() -> None:
    policy = {"maxIdleDurationSeconds": 59, "suspendedDurationSeconds": 0, "autoResumeEnabled": False}
    with pytest.raises(ApiError) as err:
        run(idlePolicy=policy)
    assert "greater than or equal to 60" in err.value.message
    lowered = v.run_request({"imageIdentifier": IMAGE, "idlePolicy": {**policy, "maxIdleDurationSeconds": 2}},
                            min_idle=1)
    assert lowered.idle_policy["maxIdleDurationSeconds"] == 2


def test_idle_policy_types() -> None:
    with pytest.raises(ApiError):
        run(idlePolicy={"maxIdleDurationSeconds": 60, "suspendedDurationSeconds": -1, "autoResumeEnabled": True})
    with pytest.raises(ApiError):
        run(idlePolicy={"maxIdleDurationSeconds": 60, "suspendedDurationSeconds": 1, "autoResumeEnabled": "yes"})


def test_run_hook_payload_limit_is_16_kib() -> None:
    assert run(runHookPayload="x" * 16384).payload == "x" * 16384
    with pytest.raises(ApiError) as err:
        run(runHookPayload="x" * 16385)
    assert "16384" in err.value.message
    with pytest.raises(ApiError):  # bytes count, not characters
        run(runHookPayload="é" * 8193)


def test_client_token_length_and_required_image() -> None:
    with pytest.raises(ApiError):
        run(clientToken="")
    with pytest.raises(ApiError):
        run(clientToken="x" * 129)
    with pytest.raises(ApiError) as err:
        v.run_request({}, 60)
    assert "imageIdentifier" in err.value.message


def test_connectors_at_most_ten() -> None:
    assert len(run(ingressNetworkConnectors=["a"] * 10).ingress) == 10
    with pytest.raises(ApiError):
        run(ingressNetworkConnectors=["a"] * 11)


def test_auth_token_request() -> None:
    ports, minutes = v.auth_token_request({"allowedPorts": [{"port": 8080}, {"range": {"startPort": 1, "endPort": 9}},
                                                            {"allPorts": {}}], "expirationInMinutes": 60})
    assert minutes == 60 and len(ports) == 3
    bad = [
        {"allowedPorts": [{"port": 8080}], "expirationInMinutes": 61},
        {"allowedPorts": [{"port": 8080}], "expirationInMinutes": 0},
        {"allowedPorts": [{"port": 8080}]},
        {"allowedPorts": [], "expirationInMinutes": 5},
        {"allowedPorts": [{"port": 0}], "expirationInMinutes": 5},
        {"allowedPorts": [{"port": 1, "allPorts": {}}], "expirationInMinutes": 5},
        {"allowedPorts": [{"range": {"startPort": 9, "endPort": 1}}], "expirationInMinutes": 5},
        {"allowedPorts": [{"range": {"startPort": 9}}], "expirationInMinutes": 5},
    ]
    for body in bad:
        with pytest.raises(ApiError) as err:
            v.auth_token_request(body)
        assert err.value.code == "ValidationException", body


def test_hooks_to_engine_hooks() -> None:
    hooks = v.hooks({"hooks": {"port": 9001, "microvmHooks": {"run": "ENABLED", "runTimeoutInSeconds": 5,
                                                              "suspend": "DISABLED"},
                               "microvmImageHooks": {"ready": "ENABLED", "readyTimeoutInSeconds": 120}}})
    assert hooks.port == 9001 and hooks.enabled == {"run", "ready"}
    assert hooks.timeout("run") == 5 and hooks.timeout("ready") == 120 and hooks.timeout("resume") == 1.0
    with pytest.raises(ApiError):
        v.hooks({"hooks": {"microvmHooks": {"runTimeoutInSeconds": 61}}})
    with pytest.raises(ApiError):
        v.hooks({"hooks": {"microvmHooks": {"run": "ON"}}})


def test_image_request() -> None:
    body = {"name": "demo", "baseImageArn": "arn:aws:lambda:us-east-1:aws:microvm-image:al2023-1",
            "buildRoleArn": "arn:aws:iam::000000000000:role/build", "codeArtifact": {"uri": "file:///tmp/x"},
            "resources": [{"minimumMemoryInMiB": 512}]}
    config = v.image_request(body, update=False)
    assert config["name"] == "demo" and v.memory_mib(config) == 512
    assert v.memory_mib({}) == 2048
    for key, value in (("name", "bad name!"), ("buildRoleArn", "role"), ("codeArtifact", {}),
                       ("resources", [{"minimumMemoryInMiB": 1}])):
        with pytest.raises(ApiError):
            v.image_request({**body, key: value}, update=False)


def test_image_identifiers_and_pages() -> None:
    assert ids.image_name("demo", "us-east-1", "000000000000") == "demo"
    assert ids.image_name(IMAGE, "us-east-1", "000000000000") == "demo"
    with pytest.raises(ApiError) as err:
        ids.image_name("arn:aws:lambda:eu-west-1:000000000000:microvm-image:demo", "us-east-1", "000000000000")
    assert err.value.status == 404
    with pytest.raises(ApiError):
        ids.image_name("arn:aws:lambda:us-east-1:0:function:demo", "us-east-1", "000000000000")
    items = list(range(7))
    first, token = ids.page(items, 3, None)
    second, token2 = ids.page(items, 3, token)
    third, token3 = ids.page(items, 3, token2)
    assert first + second + third == items and token3 is None
    with pytest.raises(ApiError):
        ids.page(items, 3, "garbage!")
    with pytest.raises(ApiError):
        ids.max_results("51")
    assert ids.endpoint("mvm-1", "us-east-1", 8800) == "mvm-1.lambda-microvm.us-east-1.localhost:8800"
