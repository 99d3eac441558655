"""Resource-based policies (PolicyService): AddPermission, RemovePermission, GetPolicy, and the whole-document
Put/Get/DeleteResourcePolicy over the same policy — validation, the statements and their revision ids, stored.
Their HTTP routes are api/permissions.py.

Statements are stored and returned in AWS's policy-document shape so tools that add, for example,
`lambda:InvokeFunctionUrl` for `Principal: *` (boto3 scripts, Terraform, CDK) work unchanged. Lamina
does not evaluate them: there is no IAM here, and every caller is allowed.
"""

from __future__ import annotations

import json
import re
import uuid

from lamina.functions import validation as v
from lamina.functions.errors import AwsError, not_found, validation
from lamina.functions.names import NAMESPACED, parse_function_name, resolve_qualifier
from lamina.functions.registry import LATEST, Function, FunctionService
from lamina.functions.urls import AUTH_TYPES, NOT_FOUND
from lamina.store.db import Database
from lamina.store.function_urls import PermissionRepo, StatementRow

_STATEMENT_ID = re.compile(r"([a-zA-Z0-9-_]+)")
_ACTION = re.compile(r"lambda:[*]|lambda:[a-zA-Z]+|[*]")
_PRINCIPAL = re.compile(r"[^\s]+")
_ACCOUNT = re.compile(r"\d{12}")
POLICY_RESOURCE_ARN = re.compile(
    r"arn:(aws[a-zA-Z-]*)?:lambda:(eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:\d{12}:"
    r"(function:[a-zA-Z0-9-_]+(:(\$LATEST(\.PUBLISHED)?|[a-zA-Z0-9-_])+)?|runtime/[a-zA-Z0-9-_./]+)")
MAX_POLICY = 20480


class PolicyService:
    def __init__(self, functions: FunctionService, db: Database) -> None:
        self.functions = functions
        self.repo = PermissionRepo(db)
        # (function, qualifier or '') -> {statement id: statement}, in insertion order
        self.policies: dict[tuple[str, str], dict[str, dict]] = {}
        self.revisions: dict[tuple[str, str], str] = {}
        functions.delete_hooks.append(self._function_deleted)
        functions.qualifier_hooks.append(self._qualifier_deleted)

    def load(self) -> None:
        for row in self.repo.all():
            key = (row.function_name, row.qualifier)
            self.policies.setdefault(key, {})[row.statement_id] = row.statement
            self.revisions.setdefault(key, str(uuid.uuid4()))

    def _function_deleted(self, name: str) -> None:
        for key in [k for k in self.policies if k[0] == name]:
            del self.policies[key]
            self.revisions.pop(key, None)

    def _qualifier_deleted(self, name: str, qualifier: str) -> None:
        # A deleted version's or alias's policy goes with it.
        if self.policies.pop((name, qualifier), None) is not None:
            self.repo.delete_qualifier(name, qualifier)
        self.revisions.pop((name, qualifier), None)

    def _target(self, raw_name: str, query_qualifier: str | None, operation: str = "") -> tuple[Function, str]:
        """The function and qualifier ('' for none), with AWS's words for each operation when either is missing:
        AddPermission 'Function not found' (a version) or 'Cannot find alias arn' (an alias), GetPolicy the generic
        404, RemovePermission 'No policy found for' (the function) or 'Cannot find alias arn'."""
        ref = parse_function_name(raw_name, shape=NAMESPACED, qualifier=query_qualifier)
        qualifier = resolve_qualifier(ref, query_qualifier)
        if qualifier == LATEST and operation == "add":
            raise AwsError("InvalidParameterValueException", "We currently do not support adding policies for "
                           "$LATEST.")
        fn = self.functions.functions.get(ref.name)
        if fn is None:
            if operation == "get":
                raise AwsError("ResourceNotFoundException", NOT_FOUND)
            if operation == "remove":
                raise AwsError("ResourceNotFoundException", f"No policy found for: {self.functions.arn(ref.name)}")
            raise not_found(self.functions.arn(ref.name))
        if qualifier not in (None, LATEST) and qualifier not in fn.versions and qualifier not in fn.aliases:
            arn = self.functions.arn(ref.name, qualifier)
            if operation == "get":
                raise AwsError("ResourceNotFoundException", NOT_FOUND)
            if qualifier.isdigit() or "$" in qualifier:   # a version (aliases have neither form)
                raise not_found(arn)
            raise AwsError("ResourceNotFoundException", f"Cannot find alias arn: {arn}")
        return fn, qualifier or ""

    def _revision(self, fn: Function, qualifier: str) -> str:
        """The policy's revision; before it has one, the revision of what it is for (the function, version or
        alias), as AWS checks a RevisionId given with the first AddPermission."""
        key = (fn.name, qualifier)
        if key in self.revisions:
            return self.revisions[key]
        if (alias := fn.aliases.get(qualifier)) is not None:
            return alias.revision_id
        target = fn.versions.get(qualifier, fn)
        return str(target.config.get("RevisionId", ""))

    def _check_revision(self, fn: Function, qualifier: str, revision: str | None) -> None:
        if revision is not None and revision != self._revision(fn, qualifier):
            raise AwsError("PreconditionFailedException", "The Revision Id provided does not match the latest "
                           "Revision Id. Call the GetPolicy API to retrieve the latest Revision Id")

    def add(self, raw_name: str, query_qualifier: str | None, body: dict) -> dict:
        body = v.require_object(body)
        for field_name, member in (("StatementId", "statementId"), ("Action", "action"), ("Principal", "principal")):
            v.required(body, field_name, member)
        sid = v.string(body, "StatementId", "statementId", 100, _STATEMENT_ID)
        action = v.string(body, "Action", "action", 10000, _ACTION)
        principal = v.string(body, "Principal", "principal", 2048, _PRINCIPAL)
        source_arn = v.string(body, "SourceArn", "sourceArn", 10000)
        source_account = v.string(body, "SourceAccount", "sourceAccount", 12, _ACCOUNT)
        token = v.string(body, "EventSourceToken", "eventSourceToken", 256)
        org = v.string(body, "PrincipalOrgID", "principalOrgID", 34)
        auth_type = body.get("FunctionUrlAuthType")
        if auth_type is not None and auth_type not in AUTH_TYPES:
            raise validation(auth_type, "functionUrlAuthType", "Member must satisfy enum value set: [AWS_IAM, NONE]")
        via_url = v.boolean(body, "InvokedViaFunctionUrl", "invokedViaFunctionUrl")
        fn, qualifier = self._target(raw_name, query_qualifier, "add")
        if not _valid_principal(principal or ""):
            raise AwsError("InvalidParameterValueException", "The provided principal was invalid. Please check the "
                           "principal and try again.")
        key = (fn.name, qualifier)
        self._check_revision(fn, qualifier, body.get("RevisionId"))
        statements = self.policies.get(key, {})
        if sid in statements:
            raise AwsError("ResourceConflictException", f"The statement id ({sid}) provided already exists. Please "
                           "provide a new statement id, or remove the existing statement.")
        statement: dict = {"Sid": sid, "Effect": "Allow", "Principal": _principal(principal or ""),
                           "Action": action, "Resource": self.functions.arn(fn.name, qualifier or None)}
        condition: dict[str, dict[str, str]] = {}
        if source_arn is not None:
            condition.setdefault("ArnLike", {})["AWS:SourceArn"] = source_arn
        if source_account is not None:
            condition.setdefault("StringEquals", {})["AWS:SourceAccount"] = source_account
        if token is not None:
            condition.setdefault("StringEquals", {})["lambda:EventSourceToken"] = token
        if org is not None:
            condition.setdefault("StringEquals", {})["aws:PrincipalOrgID"] = org
        if auth_type is not None:
            condition.setdefault("StringEquals", {})["lambda:FunctionUrlAuthType"] = auth_type
        if via_url:
            condition.setdefault("Bool", {})["lambda:InvokedViaFunctionUrl"] = "true"
        if condition:
            statement["Condition"] = condition
        self.repo.insert(StatementRow(fn.name, qualifier, sid or "", statement))
        self.policies.setdefault(key, {})[sid or ""] = statement
        self.revisions[key] = str(uuid.uuid4())
        return {"Statement": json.dumps(statement, separators=(",", ":"))}

    def remove(self, raw_name: str, query_qualifier: str | None, sid: str, revision: str | None) -> None:
        fn, qualifier = self._target(raw_name, query_qualifier, "remove")
        key = (fn.name, qualifier)
        self._check_revision(fn, qualifier, revision)
        statements = self.policies.get(key, {})
        if not statements:
            raise AwsError("ResourceNotFoundException", "No policy is associated with the given resource.")
        if sid not in statements:
            raise AwsError("ResourceNotFoundException", f"Statement {sid} is not found in resource policy.")
        self.repo.delete(fn.name, qualifier, sid)
        del statements[sid]
        if not statements:
            del self.policies[key]
        self.revisions[key] = str(uuid.uuid4())

    def get(self, raw_name: str, query_qualifier: str | None) -> dict:
        fn, qualifier = self._target(raw_name, query_qualifier, "get")
        return self._policy(fn, qualifier)

    def _policy(self, fn: Function, qualifier: str) -> dict:
        """GetPolicy's and GetResourcePolicy's answer: the statements as one policy document, and its revision."""
        key = (fn.name, qualifier)
        statements = self.policies.get(key)
        if not statements:
            raise AwsError("ResourceNotFoundException", NOT_FOUND)
        policy = {"Version": "2012-10-17", "Id": "default", "Statement": list(statements.values())}
        return {"Policy": json.dumps(policy, separators=(",", ":")), "RevisionId": self.revisions[key]}

    # ------------------------------------------------------------------ Put/Get/DeleteResourcePolicy

    def _resource(self, arn: str) -> tuple[Function, str]:
        if not isinstance(arn, str) or len(arn) > 512 or not POLICY_RESOURCE_ARN.fullmatch(arn):
            raise validation(arn, "resourceArn", "Member must satisfy regular expression pattern: "
                             f"{POLICY_RESOURCE_ARN.pattern}")
        if ":runtime/" in arn:
            raise AwsError("InvalidParameterValueException", "Lamina has no managed runtime resources to attach a "
                           "policy to: give a function, version or alias ARN.")
        return self._target(arn, None)

    def put_document(self, arn: str, body: dict) -> dict:
        """PutResourcePolicy: the document replaces the policy (AddPermission's statements included)."""
        body = v.require_object(body)
        raw = v.required(body, "Policy", "policy")
        if not isinstance(raw, str) or not raw:
            raise validation(raw, "policy", "Member must have length greater than or equal to 1")
        if len(raw) > MAX_POLICY:
            raise AwsError("PolicyLengthExceededException", "The final policy size is bigger than the limit.")
        statements = _statements(raw)
        fn, qualifier = self._resource(arn)
        key = (fn.name, qualifier)
        self._check_revision(fn, qualifier, body.get("RevisionId"))
        self.repo.delete_qualifier(fn.name, qualifier)
        stored: dict[str, dict] = {}
        for i, statement in enumerate(statements):
            given = statement.get("Sid")
            sid = given if isinstance(given, str) and given else f"#{i}"
            stored[sid] = statement
            self.repo.insert(StatementRow(fn.name, qualifier, sid, statement))
        self.policies[key] = stored
        self.revisions[key] = str(uuid.uuid4())
        return self.get_document(arn)

    def get_document(self, arn: str) -> dict:
        fn, qualifier = self._resource(arn)
        return self._policy(fn, qualifier)

    def delete_document(self, arn: str, revision: str | None) -> None:
        fn, qualifier = self._resource(arn)
        key = (fn.name, qualifier)
        if not self.policies.get(key):
            raise AwsError("ResourceNotFoundException", NOT_FOUND)
        self._check_revision(fn, qualifier, revision)
        self.repo.delete_qualifier(fn.name, qualifier)
        del self.policies[key]
        self.revisions[key] = str(uuid.uuid4())


def _statements(raw: str) -> list[dict]:
    """A policy document's statements: a JSON object with Statement, one statement or a list of them."""
    try:
        document = json.loads(raw)
    except ValueError:
        raise AwsError("InvalidParameterValueException", "The policy is not a valid JSON document.") from None
    statement = document.get("Statement") if isinstance(document, dict) else None
    statements = [statement] if isinstance(statement, dict) else statement
    if not isinstance(statements, list) or not statements or not all(isinstance(s, dict) for s in statements):
        raise AwsError("InvalidParameterValueException", "The policy must have a Statement: one statement object or "
                       "a list of them.")
    for s in statements:
        if s.get("Effect") not in ("Allow", "Deny") or "Action" not in s or not ("Principal" in s or
                                                                               "NotPrincipal" in s):
            raise AwsError("InvalidParameterValueException", "Each policy statement needs an Effect (Allow or Deny), "
                           "an Action and a Principal.")
    return statements


def _valid_principal(principal: str) -> bool:
    """What AWS takes as a Principal: anyone, an account, an ARN, or a service's principal (an AWS domain)."""
    return (principal == "*" or bool(_ACCOUNT.fullmatch(principal)) or principal.startswith("arn:")
            or principal.endswith((".amazonaws.com", ".amazonaws.com.cn", ".amazon.com")))


def _principal(principal: str) -> str | dict[str, str]:
    if principal == "*":
        return "*"
    if _ACCOUNT.fullmatch(principal):
        return {"AWS": f"arn:aws:iam::{principal}:root"}
    if principal.startswith("arn:"):
        return {"AWS": principal}
    if "." in principal:
        return {"Service": principal}
    return {"AWS": principal}
