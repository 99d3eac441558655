"""Identifiers, ARNs, endpoints, timestamps and list pagination of the MicroVMs API."""

from __future__ import annotations

import base64
import re
import time
import uuid

from lamina.microvm.errors import constraint, invalid, not_found

IMAGE_ARN = re.compile(r"arn:[a-z0-9-]+:lambda:([a-z0-9-]*):([a-z0-9]*):microvm-image:([a-zA-Z0-9_-]+)")
ENDPOINT_MARK = "lambda-microvm"


def new_microvm_id() -> str:
    # AWS's documented example form: mvm-01234567-abcd-ef01-2345-6789abcdef01.
    return f"mvm-{uuid.uuid4()}"


def new_build_id() -> str:
    return uuid.uuid4().hex


def image_arn(region: str, account: str, name: str) -> str:
    return f"arn:aws:lambda:{region}:{account}:microvm-image:{name}"


def image_name(identifier: str, region: str, account: str) -> str:
    """The image name from an image identifier: a name, or this server's image ARN."""
    if identifier.startswith("arn:"):
        m = IMAGE_ARN.fullmatch(identifier)
        if m is None:
            raise invalid(f"'{identifier}' is not a MicroVM image ARN "
                          "(arn:aws:lambda:<region>:<account>:microvm-image:<name>).")
        if m.group(1) not in ("", region) or m.group(2) not in ("", account):
            raise not_found("MicrovmImage", identifier)
        return m.group(3)
    return identifier


def endpoint(microvm_id: str, region: str, port: int) -> str:
    """The instance's endpoint without a scheme, as AWS returns it. `*.localhost` resolves to loopback in
    curl and browsers (RFC 6761); the proxy recognises `<id>.lambda-microvm.` whatever follows."""
    return f"{microvm_id}.{ENDPOINT_MARK}.{region}.localhost:{port}"


def now() -> float:
    """API timestamps: epoch seconds (rest-json's default timestamp format)."""
    return round(time.time(), 3)


def page(items: list, max_results: int | None, next_token: str | None, default: int = 50) -> tuple[list, str | None]:
    """One page of `items` and the token for the next one (an opaque offset)."""
    start = 0
    if next_token:
        try:
            start = int(base64.urlsafe_b64decode(next_token.encode()).decode().removeprefix("o:"))
        except (ValueError, UnicodeDecodeError):
            raise invalid("The nextToken is not valid: pass the value a previous response returned.") from None
    size = max_results or default
    chunk = items[start:start + size]
    more = start + size < len(items)
    token = base64.urlsafe_b64encode(f"o:{start + size}".encode()).decode() if more else None
    return chunk, token


def max_results(raw: str | None, high: int = 50) -> int | None:
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise constraint(raw, "maxResults", "Member must be an integer") from None
    if not 1 <= value <= high:
        raise constraint(value, "maxResults", f"Member must have value between 1 and {high}")
    return value
