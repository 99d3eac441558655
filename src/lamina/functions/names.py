"""Function names as the API accepts them: name, name:qualifier, partial ARN or full ARN."""

from __future__ import annotations

import re
from dataclasses import dataclass

from lamina.functions.errors import AwsError, validation

_PATTERN = re.compile(
    r"(arn:(aws[a-zA-Z-]*)?:lambda:)?((eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:)?(\d{12}:)?"
    r"(function:)?([a-zA-Z0-9-_]+)(:(\$LATEST|[a-zA-Z0-9-_]+))?"
)
NAME_RE = re.compile(r"[a-zA-Z0-9-_]{1,64}")
QUALIFIER_RE = re.compile(r"\$(LATEST(\.PUBLISHED)?)|[a-zA-Z0-9-_$]+")


@dataclass(frozen=True)
class FunctionRef:
    name: str
    qualifier: str | None = None
    account: str | None = None
    region: str | None = None


def parse_function_name(raw: str, member: str = "functionName", max_len: int = 140) -> FunctionRef:
    """Split any accepted form into name and qualifier; a malformed one is a ValidationException."""
    if not raw or len(raw) > max_len:
        raise validation(raw, member, f"Member must have length less than or equal to {max_len}"
                         if raw else "Member must have length greater than or equal to 1")
    m = _PATTERN.fullmatch(raw)
    if m is None:
        raise validation(raw, member, f"Member must satisfy regular expression pattern: {_PATTERN.pattern}")
    region = m.group(3)[:-1] if m.group(3) else None
    account = m.group(9)[:-1] if m.group(9) else None
    name = m.group(11)
    if len(name) > 64:
        raise validation(raw, member, "Member must have length less than or equal to 64")
    return FunctionRef(name=name, qualifier=m.group(13), account=account, region=region)


def resolve_qualifier(ref: FunctionRef, query_qualifier: str | None) -> str | None:
    """The qualifier from the name and the one from ?Qualifier= must agree, as on AWS."""
    if ref.qualifier and query_qualifier and ref.qualifier != query_qualifier:
        raise AwsError("InvalidParameterValueException",
                       "The derived qualifier from the function name does not match the specified qualifier.")
    return ref.qualifier or query_qualifier


def check_qualifier(qualifier: str) -> None:
    """A Qualifier parameter (a version, an alias or $LATEST) as the API model constrains it."""
    if not qualifier:
        raise validation(qualifier, "qualifier", "Member must have length greater than or equal to 1")
    if len(qualifier) > 128:
        raise validation(qualifier, "qualifier", "Member must have length less than or equal to 128")
    if not QUALIFIER_RE.fullmatch(qualifier):
        raise validation(qualifier, "qualifier", f"Member must satisfy regular expression pattern: "
                         f"{QUALIFIER_RE.pattern}")
