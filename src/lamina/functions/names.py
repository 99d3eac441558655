"""Function names as the API accepts them: name, name:qualifier, partial ARN or full ARN.

Each operation takes its FunctionName as one of the model's shapes (NameShape): CreateFunction, the updates, aliases
and concurrency take `FunctionName` (140 characters, no dots); the reads, DeleteFunction, Invoke and the permission
and event-invoke operations take `NamespacedFunctionName` (256 characters); a few take `UnqualifiedFunctionName`. AWS
reports every problem of a name and its Qualifier in one ValidationException, and refuses an ARN of another region
with a 404 of its own.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

from lamina.functions.errors import AwsError, validation_errors

_PREFIX = (r"(arn:(aws[a-zA-Z-]*)?:lambda:)?((eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:)?(\d{12}:)?"
           r"(function:)?")
NAME_RE = re.compile(r"[a-zA-Z0-9-_]{1,64}")
QUALIFIER_RE = re.compile(r"\$(LATEST(\.PUBLISHED)?)|[a-zA-Z0-9-_$]+")


@dataclass(frozen=True)
class NameShape:
    pattern: re.Pattern
    max_len: int
    name_limit: bool      # the name itself at most 64 characters (InvalidParameterValueException beyond)


FUNCTION_NAME = NameShape(re.compile(_PREFIX + r"([a-zA-Z0-9-_]+)(:(\$LATEST|[a-zA-Z0-9-_]+))?"), 140, True)
NAMESPACED = NameShape(re.compile(_PREFIX + r"([a-zA-Z0-9-_\.]+)(:(\$LATEST(\.PUBLISHED)?|[a-zA-Z0-9-_]+))?"), 256,
                       False)
UNQUALIFIED = NameShape(re.compile(_PREFIX + r"([a-zA-Z0-9-_]+)"), 140, True)

# The region and account this server is (set by the function registry, then by the server for its own account): an
# ARN naming another region is not reachable, one naming another account is not this caller's to use.
_home: dict[str, str] = {}
# The account a request or a background task acts in, where it is not the server's own (server.py's accounts):
# its function names are that account's.
_acting: ContextVar[str | None] = ContextVar("lamina_acting_account", default=None)
ANYWHERE = "*"   # acting_account(ANYWHERE): an ARN of any account parses (the front door's routing by it)


def set_home(region: str | None, account: str | None = None) -> None:
    """Where this server is (None: anywhere, as in unit tests of the parsing alone)."""
    _home.clear()
    if region is not None and account is not None:
        _home.update(region=region, account=account)


@contextlib.contextmanager
def acting_account(account: str) -> Iterator[None]:
    """Within this block (and in the tasks it creates), function ARNs of `account` are the caller's own."""
    token = _acting.set(account)
    try:
        yield
    finally:
        _acting.reset(token)


def home_account() -> str | None:
    """The account the current work acts in (None: anywhere)."""
    acting = _acting.get()
    if acting == ANYWHERE:
        return None
    return acting or _home.get("account")


@dataclass(frozen=True)
class FunctionRef:
    name: str
    qualifier: str | None = None
    account: str | None = None
    region: str | None = None


def parse_function_name(raw: str, member: str = "functionName", max_len: int | None = None,
                        shape: NameShape = FUNCTION_NAME, qualifier: str | None = None) -> FunctionRef:
    """Split any accepted form into name and qualifier. A malformed name (and a malformed `qualifier`, the
    request's Qualifier parameter, when given) is one ValidationException listing every problem."""
    problems: list[tuple[object, str, str]] = []
    if qualifier is not None:
        problems += _qualifier_problems(qualifier)
    limit = max_len or shape.max_len
    if not raw:
        problems.append((raw, member, "Member must have length greater than or equal to 1"))
    elif len(raw) > limit:
        problems.append((raw, member, f"Member must have length less than or equal to {limit}"))
    m = shape.pattern.fullmatch(raw) if raw else None
    if raw and m is None:
        problems.append((raw, member, f"Member must satisfy regular expression pattern: {shape.pattern.pattern}"))
    if problems:
        raise validation_errors(problems)
    assert m is not None
    region = m.group(3)[:-1] if m.group(3) else None
    account = m.group(9)[:-1] if m.group(9) else None
    name = m.group(11)
    if shape.name_limit and len(name) > 64:
        err = validation_errors([(raw, member, "Member must have length less than or equal to 64")])
        raise AwsError("InvalidParameterValueException", err.message)
    home = _home.get("region")
    if region is not None and home is not None and region != home:
        raise AwsError("ResourceNotFoundException", f"Functions from '{region}' are not reachable in this region "
                       f"('{home}')")
    if account is not None and home_account() not in (None, account):
        denied = AwsError("AccessDeniedException", "")   # AWS answers with a null message and no Type
        denied.typed, denied.null_message = False, True
        raise denied
    return FunctionRef(name=name, qualifier=m.group(13) if m.re.groups >= 13 else None, account=account,
                       region=region)


def resolve_qualifier(ref: FunctionRef, query_qualifier: str | None) -> str | None:
    """The qualifier from the name and the one from ?Qualifier= must agree, as on AWS."""
    if ref.qualifier and query_qualifier and ref.qualifier != query_qualifier:
        raise AwsError("InvalidParameterValueException",
                       "The derived qualifier from the function name does not match the specified qualifier.")
    return ref.qualifier or query_qualifier


def _qualifier_problems(qualifier: str) -> list[tuple[object, str, str]]:
    if not qualifier:
        return [(qualifier, "qualifier", "Member must have length greater than or equal to 1")]
    if len(qualifier) > 128:
        return [(qualifier, "qualifier", "Member must have length less than or equal to 128")]
    if not QUALIFIER_RE.fullmatch(qualifier):
        return [(qualifier, "qualifier", f"Member must satisfy regular expression pattern: {QUALIFIER_RE.pattern}")]
    return []


def check_qualifier(qualifier: str) -> None:
    """A Qualifier parameter (a version, an alias or $LATEST) as the API model constrains it."""
    if problems := _qualifier_problems(qualifier):
        raise validation_errors(problems)
