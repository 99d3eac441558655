"""Runtime identifiers as AWS's Lambda API accepts them and lists them in its validation messages.

AWS's messages list an enum's values in the order of its internal hash set, not sorted; tools that match
on the message (and the recorded AWS responses Lamina is checked against) see exactly these strings.
"""

from __future__ import annotations

import hashlib

# CreateFunction / UpdateFunctionConfiguration `runtime`, and PublishLayerVersion `compatibleRuntimes`:
# the runtimes a function can be created with today, in the order AWS's message lists them.
FUNCTION_RUNTIMES_MESSAGE = (
    "[nodejs20.x, python3.14, provided.al2023, python3.12, python3.13, nodejs24.x, nodejs22.x, java25, python3.10, "
    "python3.11, java21, ruby3.3, ruby3.4, ruby3.2, python3.8, python3.9, java17, nodejs16.x, dotnet10, dotnet8, "
    "java11, dotnet6, nodejs18.x, provided.al2, java8.al2]"
)

# Every identifier a layer may declare compatible (deprecated ones included: a layer outlives its runtime), in the
# order AWS's ListLayers `compatibleRuntime` message lists them.
LAYER_RUNTIMES_MESSAGE = (
    "[ruby3.5, ruby2.6, dotnetcore1.0, python3.7, nodejs8.10, nasa, ruby2.7, python2.7-greengrass, dotnetcore2.0, "
    "python3.8, java21, dotnet6, dotnetcore2.1, python3.9, java11, nodejs6.10, provided, dotnetcore3.1, dotnet8, "
    "java25, java17, nodejs, nodejs4.3, java8.al2, go1.x, dotnet10, nodejs20.x, go1.9, byol, nodejs10.x, "
    "provided.al2023, nodejs22.x, python3.10, java8, nodejs12.x, python3.11, nodejs24.x, nodejs8.x, python3.12, "
    "nodejs14.x, nodejs8.9, nodejs26.x, python3.13, python3.14, nodejs16.x, python3.15, provided.al2, nodejs4.3-edge, "
    "nodejs18.x, ruby3.2, python3.4, ruby3.3, ruby3.4, ruby2.5, python3.6, python2.7]"
)
LAYER_RUNTIMES = frozenset(LAYER_RUNTIMES_MESSAGE[1:-1].split(", "))

ARCHITECTURES = ("x86_64", "arm64")
ARCHITECTURES_MESSAGE = "[x86_64, arm64]"


def runtime_version_arn(region: str, runtime: str, interpreter_version: str) -> str:
    """A function's RuntimeVersionConfig.RuntimeVersionArn: the runtime as this host runs it (AWS's form, a digest
    after `::runtime:`), so it changes when the host's interpreter for that runtime does."""
    digest = hashlib.sha256(f"{runtime}:{interpreter_version}".encode()).hexdigest()
    return f"arn:aws:lambda:{region}::runtime:{digest}"
