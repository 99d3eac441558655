"""Lambda features Lamina does not offer, answered as AWS answers an account that has none of them: capacity
providers (Lambda Managed Instances: CreateCapacityProvider and the rest, ListFunctionVersionsByCapacityProvider,
Get/PutFunctionScalingConfig) and durable executions (Get/List/Stop/..., the callbacks).

Reads tell the truth — there are none: lists are empty, a named one is AWS's 404. Requests to make or change one
are refused with InvalidParameterValueException saying Lamina does not offer the feature, rather than a 404 for an
unknown path that would look like a broken server. The routes are api/not_offered.py.
"""

from __future__ import annotations

import re

from lamina.functions.errors import AwsError, validation
from lamina.functions.registry import FunctionService

CAPACITY_PROVIDERS = ("capacity providers (Lambda Managed Instances): functions run in Lamina's own sandboxes on this "
                      "host")
DURABLE = "durable executions: a function runs to completion within its timeout"
_PROVIDER_NAME = re.compile(r"(arn:aws[a-zA-Z-]*:lambda:(eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:\d{12}:"
                            r"capacity-provider:[a-zA-Z0-9-_]+)|[a-zA-Z0-9-_]+")
_EXECUTION_ARN = re.compile(r"arn:([a-zA-Z0-9-]+):lambda:([a-zA-Z0-9-]+):(\d{12}):function:([a-zA-Z0-9_-]+):"
                            r"(\$LATEST(?:\.PUBLISHED)?|[0-9]+)/durable-execution/([a-zA-Z0-9_-]+)/([a-zA-Z0-9_-]+)")
_CALLBACK_ID = re.compile(r"[A-Za-z0-9+/]+={0,2}")


def refused(feature: str, operation: str) -> AwsError:
    return AwsError("InvalidParameterValueException", f"{operation} is not available: Lamina does not offer {feature}.")


class NotOffered:
    def __init__(self, functions: FunctionService) -> None:
        self.functions = functions

    # ------------------------------------------------------------------ capacity providers

    def provider_arn(self, raw: str) -> str:
        if not raw or len(raw) > 140 or not _PROVIDER_NAME.fullmatch(raw):
            raise validation(raw, "capacityProviderName", "Member must satisfy regular expression pattern: "
                             f"{_PROVIDER_NAME.pattern}")
        if raw.startswith("arn:"):
            return raw
        return f"arn:aws:lambda:{self.functions.settings.region}:{self.functions.settings.account_id}:" \
               f"capacity-provider:{raw}"

    def provider_not_found(self, raw: str) -> AwsError:
        return AwsError("ResourceNotFoundException", f"Capacity provider not found: {self.provider_arn(raw)}")

    @staticmethod
    def list_providers(state: str | None) -> dict:
        if state is not None and state not in ("Pending", "Active", "Failed", "Deleting"):
            raise validation(state, "state", "Member must satisfy enum value set: [Pending, Active, Failed, Deleting]")
        return {"CapacityProviders": []}

    # ------------------------------------------------------------------ scaling configuration

    def scaling_config(self, raw_name: str, qualifier: str | None, operation: str) -> AwsError:
        """Get/PutFunctionScalingConfig: for functions on a capacity provider; Lamina's functions never are."""
        if qualifier is None:
            raise validation("null", "qualifier", "Member must not be null")
        self.functions.target(raw_name, qualifier)   # AWS's 404 for a function or version that is not there
        return refused(CAPACITY_PROVIDERS, operation)

    # ------------------------------------------------------------------ durable executions

    @staticmethod
    def execution_not_found(arn: str) -> AwsError:
        if not arn or len(arn) > 1024 or not _EXECUTION_ARN.fullmatch(arn):
            raise validation(arn, "durableExecutionArn", "Member must satisfy regular expression pattern: "
                             f"{_EXECUTION_ARN.pattern}")
        return AwsError("ResourceNotFoundException", f"Durable execution not found: {arn}")

    @staticmethod
    def callback_not_found(callback_id: str) -> AwsError:
        if not callback_id or len(callback_id) > 1024 or not _CALLBACK_ID.fullmatch(callback_id):
            raise validation(callback_id, "callbackId", "Member must satisfy regular expression pattern: "
                             f"{_CALLBACK_ID.pattern}")
        return AwsError("ResourceNotFoundException", f"Callback not found: {callback_id}")

    def list_executions(self, raw_name: str, qualifier: str | None) -> dict:
        self.functions.target(raw_name, qualifier)
        return {"DurableExecutions": []}
