"""A refused signature in the shape of the API the request was for: REST-JSON (Lambda, MicroVMs, Scheduler) answers
with x-amzn-ErrorType and a JSON message; JSON-protocol APIs (X-Amz-Target: SQS, CloudWatch Logs, EventBridge) with
{"__type", "message"} (SQS adds x-amzn-query-error, which botocore reads for its query-compatible codes); the
query-protocol APIs answer XML: SQS's <ErrorResponse>, EC2's <Response><Errors>."""

from __future__ import annotations

import uuid
from xml.sax.saxutils import escape

import orjson

from lamina.auth.sigv4 import SignatureError

# kind -> (status, JSON/REST code, SQS query code, EC2 code, EC2 status)
_CODES = {
    "missing": (403, "MissingAuthenticationTokenException", "MissingAuthenticationToken",
                "MissingAuthenticationToken", 401),
    "incomplete": (400, "IncompleteSignatureException", "IncompleteSignature", "IncompleteSignature", 400),
    "unknown_key": (403, "UnrecognizedClientException", "InvalidClientTokenId", "AuthFailure", 401),
    "expired_token": (403, "ExpiredTokenException", "ExpiredToken", "RequestExpired", 400),
    "mismatch": (403, "InvalidSignatureException", "SignatureDoesNotMatch", "SignatureDoesNotMatch", 403),
    "expired": (403, "InvalidSignatureException", "SignatureDoesNotMatch", "RequestExpired", 400),
    "scope": (403, "InvalidSignatureException", "SignatureDoesNotMatch", "AuthFailure", 401),
    "denied": (403, "AccessDeniedException", "AccessDenied", "UnauthorizedOperation", 403),
}
_SQS_XMLNS = "http://queue.amazonaws.com/doc/2012-11-05/"


def protocol(headers: list[tuple[bytes, bytes]], service: str | None) -> str:
    """'json', 'sqs-json', 'sqs-query', 'ec2' or 'rest' for a request, by its headers and signed service."""
    form = False
    for name, value in headers:
        if name == b"x-amz-target":
            return "sqs-json" if value.startswith(b"AmazonSQS.") else "json"
        if name == b"content-type" and value.startswith(b"application/x-www-form-urlencoded"):
            form = True
    if service == "ec2":
        return "ec2"
    if service == "sqs" or (form and service is None):
        return "sqs-query"
    return "rest"


def render(err: SignatureError, headers: list[tuple[bytes, bytes]]) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """(status, headers, body) of the error for this request."""
    status, code, query_code, ec2_code, ec2_status = _CODES[err.kind]
    request_id = str(uuid.uuid4())
    kind = protocol(headers, err.service)
    out: list[tuple[bytes, bytes]] = [(b"x-amzn-requestid", request_id.encode())]
    if kind == "ec2":
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{ec2_code}</Code>'
                f"<Message>{escape(err.message)}</Message></Error></Errors><RequestID>{request_id}</RequestID>"
                "</Response>").encode()
        out.append((b"content-type", b"text/xml;charset=UTF-8"))
        status = ec2_status
    elif kind == "sqs-query":
        body = (f'<?xml version="1.0"?><ErrorResponse xmlns="{_SQS_XMLNS}"><Error><Type>Sender</Type>'
                f"<Code>{query_code}</Code><Message>{escape(err.message)}</Message><Detail/></Error>"
                f"<RequestId>{request_id}</RequestId></ErrorResponse>").encode()
        out.append((b"content-type", b"text/xml"))
    elif kind in ("json", "sqs-json"):
        body = orjson.dumps({"__type": code, "message": err.message})
        out.append((b"content-type", b"application/x-amz-json-1.0"))
        if kind == "sqs-json":
            out.append((b"x-amzn-query-error", f"{query_code};Sender".encode()))
    else:
        body = orjson.dumps({"Message" if err.kind == "denied" else "message": err.message})
        out += [(b"content-type", b"application/json"), (b"x-amzn-errortype", code.encode())]
    out.append((b"content-length", str(len(body)).encode()))
    return status, out, body
