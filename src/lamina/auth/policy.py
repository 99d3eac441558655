"""What a verified caller may do: resource-based policies (AddPermission's statements, PutResourcePolicy documents)
evaluated for a caller from another account, identity policies (IAM's JSON documents) configured for access keys
and execution roles, and the fixed policy of functions' own credentials whose role has none.

The model is deliberately small (documented in the README's "Security model"):
- a caller acts in its own account: without an identity policy it may do anything there;
- a caller from another account may only invoke a function (Invoke, or its AWS_IAM function URL) whose resource
  policy has an Allow statement for the action and the caller (Principal "*", the account, its root ARN or the
  caller's own ARN) whose conditions hold; a matching Deny wins;
- a key or role with an identity policy may do what that policy allows (auth/actions.py names each request's
  action and resource), and no more;
- a function's credentials whose role has no policy configured may invoke functions, use queues (SQS), read logs,
  put events, create, update and delete schedules (EventBridge Scheduler: a function scheduling its own follow-up
  work is a common pattern), and read (GET) anything of the account, but not change functions, MicroVMs or
  networks.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:   # keys.py checks configured policies with this module
    from lamina.auth.keys import Caller

# Condition operators Lamina evaluates; a statement with any other one never matches (fail closed).
_STRING_OPS = ("StringEquals", "StringLike", "ArnLike", "ArnEquals", "Bool")


def allows(statements: Iterable[Mapping], caller: Caller, action: str, context: Mapping[str, str]) -> bool:
    """Whether the statements allow `action` for `caller`, given the request's condition keys (lower-case names:
    aws:sourceaccount, lambda:functionurlauthtype, ...)."""
    allowed = False
    for statement in statements:
        if not (_action_matches(statement.get("Action"), action) and _principal_matches(statement, caller)
                and _conditions_hold(statement.get("Condition"), context)):
            continue
        if statement.get("Effect") == "Deny":
            return False
        if statement.get("Effect") == "Allow":
            allowed = True
    return allowed


def _action_matches(actions: object, action: str) -> bool:
    names = [actions] if isinstance(actions, str) else actions if isinstance(actions, list) else []
    return any(isinstance(a, str) and fnmatch.fnmatchcase(action.lower(), a.lower()) for a in names)


def _principal_matches(statement: Mapping, caller: Caller) -> bool:
    principal = statement.get("Principal")
    if principal == "*":
        return True
    if not isinstance(principal, Mapping):
        return False
    aws = principal.get("AWS")
    names = [aws] if isinstance(aws, str) else aws if isinstance(aws, list) else []
    mine = {"*", caller.account, f"arn:aws:iam::{caller.account}:root", caller.principal}
    return any(name in mine for name in names)


def _conditions_hold(condition: object, context: Mapping[str, str]) -> bool:
    if condition is None:
        return True
    if not isinstance(condition, Mapping):
        return False
    for op, tests in condition.items():
        if op not in _STRING_OPS or not isinstance(tests, Mapping):
            return False
        for key, wanted in tests.items():
            have = context.get(str(key).lower())
            values = wanted if isinstance(wanted, list) else [wanted]
            if have is None:
                return False
            if op in ("StringLike", "ArnLike"):
                ok = any(fnmatch.fnmatchcase(have, str(w)) for w in values)
            elif op == "Bool":
                ok = any(have.lower() == str(w).lower() for w in values)
            else:
                ok = any(have == str(w) for w in values)
            if not ok:
                return False
    return True


def identity_allows(document: Mapping, action: str, resource: str) -> bool:
    """Whether an identity policy (IAM's JSON: Statement with Effect, Action or NotAction, Resource or NotResource)
    allows `action` on `resource`: an explicit Deny wins, else an Allow is needed. Conditions are not evaluated: an
    Allow with a Condition never matches and a Deny with one always does (fail closed)."""
    statements = document.get("Statement", [])
    allowed = False
    for statement in [statements] if isinstance(statements, Mapping) else statements:
        if not isinstance(statement, Mapping):
            continue
        effect = statement.get("Effect")
        if "NotAction" in statement:
            acts = not _action_matches(statement["NotAction"], action)
        else:
            acts = _action_matches(statement.get("Action"), action)
        if "NotResource" in statement:
            on = not _resource_matches(statement["NotResource"], resource)
        else:
            on = _resource_matches(statement.get("Resource"), resource)
        if not (acts and on):
            continue
        if effect == "Deny":
            return False
        if effect == "Allow" and "Condition" not in statement:
            allowed = True
    return allowed


def check_identity_policy(document: object) -> str | None:
    """What is wrong with an identity policy document as configured (None: usable)."""
    if not isinstance(document, Mapping):
        return "a policy must be a JSON object"
    statements = document.get("Statement")
    if isinstance(statements, Mapping):
        statements = [statements]
    if not isinstance(statements, list) or not statements:
        return "a policy needs a Statement (an object or a list of them)"
    for statement in statements:
        if not isinstance(statement, Mapping) or statement.get("Effect") not in ("Allow", "Deny"):
            return "each statement needs Effect Allow or Deny"
        if ("Action" in statement) == ("NotAction" in statement):
            return "each statement needs one of Action or NotAction"
        if ("Resource" in statement) == ("NotResource" in statement):
            return "each statement needs one of Resource or NotResource"
    return None


def _resource_matches(resources: object, resource: str) -> bool:
    names = [resources] if isinstance(resources, str) else resources if isinstance(resources, list) else []
    return any(isinstance(r, str) and fnmatch.fnmatchcase(resource, r) for r in names)


def function_credentials_allow(method: str, path: str, headers: Iterable[tuple[bytes, bytes]], service: str) -> bool:
    """The fixed policy of a function's own credentials (see the module docstring); `service`: the signed one."""
    if service == "ec2":
        return False   # EC2's query API changes and reads networks through POSTs alike
    if method in ("GET", "HEAD"):
        return True
    if path.startswith("/2015-03-31/functions/") and path.endswith(("/invocations", "/response-streaming-invocations")):
        return True
    if path.startswith("/2014-11-13/functions/") and path.endswith("/invoke-async/"):
        return True
    if service == "scheduler" and path.startswith("/schedules/"):
        return True   # schedules only: not schedule groups
    for name, value in headers:
        if name == b"x-amz-target":
            # SQS, CloudWatch Logs reads and EventBridge PutEvents; nothing that deletes a log group
            return value.startswith((b"AmazonSQS.", b"Logs_20140328.Get", b"Logs_20140328.Describe",
                                     b"Logs_20140328.Filter", b"AWSEvents.PutEvents"))
        if name == b"content-type" and value.startswith(b"application/x-www-form-urlencoded"):
            return service == "sqs"   # SQS's query protocol
    return False
