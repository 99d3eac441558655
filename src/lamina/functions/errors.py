"""AWS-shaped errors: status, x-amzn-ErrorType header and the body botocore parses."""

from __future__ import annotations

import uuid

import orjson

# Shapes whose message member is capitalised in the Lambda model (botocore reads either, but
# real AWS sends exactly one of them per shape).
_CAPITAL_MESSAGE = {
    "ResourceNotFoundException", "ServiceException", "CodeSigningConfigNotFoundException",
    "CodeVerificationFailedException", "InvalidCodeSignatureException", "InvalidRuntimeException",
    "InvalidZipFileException", "NoPublishedVersionException", "PublicPolicyException", "RecursiveInvocationException",
    "ResourceInUseException", "ServiceQuotaExceededException", "SnapStartException", "SnapStartNotReadyException",
    "SnapStartTimeoutException", "SnapStartRegenerationFailureException", "EC2AccessDeniedException",
    "EC2ThrottledException", "EC2UnexpectedException", "EFSIOException", "EFSMountConnectivityException",
    "EFSMountFailureException", "EFSMountTimeoutException", "ENILimitReachedException", "ENINotReadyException",
    "InvalidSecurityGroupIDException", "InvalidSubnetIDException", "SubnetIPAddressLimitReachedException",
    "KMSAccessDeniedException", "KMSDisabledException", "KMSInvalidStateException", "KMSNotFoundException",
    "CallbackTimeoutException", "DurableExecutionAlreadyStartedException", "AccessDeniedException",
}

STATUS = {
    "InvalidParameterValueException": 400,
    "InvalidRequestContentException": 400,
    "ValidationException": 400,
    "SerializationException": 400,
    "ResourceNotFoundException": 404,
    "CodeSigningConfigNotFoundException": 404,
    "ProvisionedConcurrencyConfigNotFoundException": 404,
    "ResourceConflictException": 409,
    "AccessDeniedException": 403,
    "PreconditionFailedException": 412,
    "RequestTooLargeException": 413,
    "UnsupportedMediaTypeException": 415,
    "TooManyRequestsException": 429,
    "ServiceException": 500,
    "ResourceNotReadyException": 502,
    "InvalidZipFileException": 502,
    "InvalidRuntimeException": 502,
    "UnknownOperationException": 404,
    "ServiceUnavailableException": 503,
}


class AwsError(Exception):
    def __init__(self, code: str, message: str, status: int | None = None, **extra: object) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or STATUS.get(code, 400)
        self.extra = extra
        self.headers: dict[str, str] = {}
        # A few of AWS's answers carry no Type member (the code signing configuration operations' 404s), or a null
        # message (AccessDeniedException).
        self.typed = True
        self.null_message = False

    def body(self) -> dict:
        key = "Message" if self.code in _CAPITAL_MESSAGE else "message"
        body: dict = {"Type": "Server" if self.status >= 500 else "User",
                      key: None if self.null_message else self.message}
        if not self.typed:
            del body["Type"]
        body.update(self.extra)
        return body

    def render(self, request_id: str | None = None) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """(status, raw ASGI headers, body) for both the Starlette and the raw invoke path."""
        payload = orjson.dumps(self.body())
        headers = [
            (b"content-type", b"application/json"),
            (b"x-amzn-errortype", self.code.encode()),
            (b"x-amzn-requestid", (request_id or str(uuid.uuid4())).encode()),
            (b"content-length", str(len(payload)).encode()),
        ]
        headers += [(k.lower().encode(), v.encode()) for k, v in self.headers.items()]
        return self.status, headers, payload


def not_found(arn: str) -> AwsError:
    return AwsError("ResourceNotFoundException", f"Function not found: {arn}")


def validation(value: object, member: str, constraint: str) -> AwsError:
    """AWS's request-validation wording: '1 validation error detected: Value ... at ... failed ...'."""
    return AwsError("ValidationException",
                    f"1 validation error detected: Value '{value}' at '{member}' failed to satisfy constraint: "
                    f"{constraint}")


def validation_errors(problems: list[tuple[object, str, str]]) -> AwsError:
    """Several (value, member, constraint) problems in one ValidationException, as AWS reports them: counted, joined
    by '; ', a list value written as Java writes one ('[a, b]')."""
    parts = [f"Value '{java_repr(value)}' at '{member}' failed to satisfy constraint: {constraint}"
             for value, member, constraint in problems]
    count = len(parts)
    return AwsError("ValidationException",
                    f"{count} validation error{'s' if count != 1 else ''} detected: {'; '.join(parts)}")


def java_repr(value: object) -> str:
    """A value as AWS's (Java) messages print it: lists as [a, b], maps as {k=v}."""
    if isinstance(value, list):
        return "[" + ", ".join(java_repr(x) for x in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={java_repr(x)}" for k, x in value.items()) + "}"
    return str(value)
