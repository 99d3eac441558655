"""Errors of the MicroVMs API, in the model's shapes (the control plane renders them as AWS does)."""

from __future__ import annotations

# Status per error shape in botocore's lambda-microvms model.
STATUS = {
    "ValidationException": 400,
    "AccessDeniedException": 403,
    "ResourceNotFoundException": 404,
    "ConflictException": 409,
    "ServiceQuotaExceededException": 402,
    "ThrottlingException": 429,
    "InternalServerException": 500,
    "InsufficientCapacityException": 500,
}


class ApiError(Exception):
    def __init__(self, code: str, message: str, **extra: object) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = STATUS.get(code, 400)
        self.extra = {k: v for k, v in extra.items() if v is not None}


def invalid(message: str) -> ApiError:
    return ApiError("ValidationException", message)


def constraint(value: object, member: str, rule: str) -> ApiError:
    """AWS's request-validation wording."""
    return ApiError("ValidationException", f"1 validation error detected: Value '{value}' at '{member}' failed to "
                                           f"satisfy constraint: {rule}")


def not_found(kind: str, ident: str) -> ApiError:
    return ApiError("ResourceNotFoundException", f"{kind} not found: {ident}", resourceType=kind, resourceId=ident)


def conflict(message: str, kind: str, ident: str) -> ApiError:
    return ApiError("ConflictException", message, resourceType=kind, resourceId=ident)
