"""The `context` argument a handler gets, with the same attributes as AWS's Python runtime."""

from __future__ import annotations

import os
import sys
import time
from typing import Any


class _Obj:
    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.__dict__!r})"


class Client(_Obj):
    def __init__(self, data: dict[str, Any]) -> None:
        self.installation_id = data.get("installation_id")
        self.app_title = data.get("app_title")
        self.app_version_name = data.get("app_version_name")
        self.app_version_code = data.get("app_version_code")
        self.app_package_name = data.get("app_package_name")


class ClientContext(_Obj):
    def __init__(self, data: dict[str, Any]) -> None:
        client = data.get("client")
        self.client = Client(client) if isinstance(client, dict) else None
        self.custom = data.get("custom")
        self.env = data.get("env")


class CognitoIdentity(_Obj):
    def __init__(self, data: dict[str, Any] | None = None) -> None:
        data = data or {}
        self.cognito_identity_id = data.get("cognitoIdentityId")
        self.cognito_identity_pool_id = data.get("cognitoIdentityPoolId")


class LambdaContext(_Obj):
    """The `context` argument, with the same attributes as AWS's Python runtime."""

    # The environment's own values (variables Lamina sets before serving), read from os.environ once per
    # environment (the invocation loop fills this) rather than with five lookups per invocation.
    static: dict[str, Any] | None = None

    def __init__(self, request_id: str, deadline_ms: int, arn: str, client_context: dict[str, Any] | None,
                 tenant_id: str | None = None) -> None:
        static = LambdaContext.static
        if static is None:
            static = context_static()
        self.__dict__.update(static)
        self.aws_request_id = request_id
        self.invoked_function_arn = arn
        self.tenant_id = tenant_id
        self.client_context = ClientContext(client_context) if client_context else None
        self.identity = CognitoIdentity()
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int(self._deadline_ms - time.time() * 1000))

    def log(self, msg: str) -> None:
        sys.stdout.write(str(msg))


def context_static() -> dict[str, Any]:
    """The context's attributes that come from the environment's variables."""
    env = os.environ
    return {"log_group_name": env.get("AWS_LAMBDA_LOG_GROUP_NAME"),
            "log_stream_name": env.get("AWS_LAMBDA_LOG_STREAM_NAME"),
            "function_name": env.get("AWS_LAMBDA_FUNCTION_NAME"),
            "memory_limit_in_mb": env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"),
            "function_version": env.get("AWS_LAMBDA_FUNCTION_VERSION")}
