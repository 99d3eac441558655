"""The front door's check of who is calling, for both of its paths (the ASGI app and the hot path): SigV4
(auth/sigv4.py) on every AWS-API request, then what that caller may do and in which account: a caller acts in its
own account (each account the server holds has its own resources: server.py); another account's function it may
only invoke, where that function's resource policy allows it (auth/policy.py); functions' own credentials have their
fixed policy. Queues belong to accounts too: the SQS API acts in the caller's account and checks a queue's Policy
for another account's queue. EC2 networks are the server's own account's only (its plumbing applies one account's
security groups).

Not signed, by design: MicroVM endpoints (their own tokens), function URLs with AuthType NONE, /metrics,
/lamina/v1/health and the dashboard under /lamina/ui/ (a browser cannot sign: it has its own sign-in with an access
key pair, gateway/http/dashboard/login.py). With no keys configured (loopback only) nothing is checked at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import unquote

from starlette.types import Message, Receive, Scope

from lamina.auth import errors as auth_errors
from lamina.auth import policy
from lamina.auth.actions import request_action
from lamina.auth.keys import Caller
from lamina.auth.sigv4 import Pending, SignatureError, Verifier
from lamina.functions.errors import AwsError
from lamina.functions.names import ANYWHERE, NAMESPACED, acting_account, parse_function_name, resolve_qualifier
from lamina.functions.permissions import PolicyService

_UNSIGNED_PATHS = ("/metrics", "/lamina/v1/health", "/lamina/ui", "/lamina/ui/")   # one ending in / is a prefix
Rendered = tuple[int, list[tuple[bytes, bytes]], bytes]


class RequestAuth:
    def __init__(self, verifier: Verifier, policies: Mapping[str, PolicyService], owner_account: str, region: str,
                 unsigned_paths: tuple[str, ...] = _UNSIGNED_PATHS) -> None:
        self.verifier = verifier
        self.unsigned_paths = unsigned_paths
        self.unsigned_prefixes = tuple(p for p in unsigned_paths if p.endswith("/"))
        self.policies = policies   # each account's resource policies, by account id
        self.owner = owner_account
        self.region = region
        self.open = verifier.open

    # ------------------------------------------------------------------ both paths

    def verify(self, pending: Pending | None, method: str, raw_path: bytes, query: bytes,
               headers: list[tuple[bytes, bytes]], body: bytes) -> Caller:
        return self.verifier.check(pending, method, raw_path, query, headers, body)

    def may_invoke(self, caller: Caller, account: str, function: str, qualifier: str | None,
                   via_url: bool = False) -> AwsError | None:
        """None if the caller may invoke `account`'s function (version/alias), else AWS's AccessDeniedException."""
        action = "lambda:InvokeFunctionUrl" if via_url else "lambda:InvokeFunction"
        if caller.account == account:
            return None
        statements: list[Mapping] = []
        policies = self.policies.get(account)
        if policies is not None:
            statements = list(policies.policies.get((function, qualifier or ""), {}).values())
        context = {"aws:sourceaccount": caller.account, "aws:principalaccount": caller.account,
                   "lambda:functionurlauthtype": "AWS_IAM" if via_url else "NONE",
                   "lambda:invokedviafunctionurl": "true" if via_url else "false"}
        if policy.allows(statements, caller, action, context):
            return None
        arn = f"arn:aws:lambda:{self.region}:{account}:function:{function}" + (f":{qualifier}" if qualifier else "")
        err = AwsError("AccessDeniedException", f"User: {caller.principal} is not authorized to perform: {action} on "
                       f"resource: {arn} because no resource-based policy allows the {action} action", 403)
        return err

    def invoke_account(self, caller: Caller, raw_name: str, query: bytes) -> tuple[str, AwsError | None]:
        """The account whose function an invoke path names (`raw_name`, still percent-encoded) — the ARN's, else the
        caller's own — and why the caller may not invoke it, or None. Decided before the function is looked up, so
        that nothing about another account's functions shows: an ARN of an account this server does not hold names
        no function here; another account's ARN needs a resource policy allowing the caller."""
        try:
            with acting_account(ANYWHERE):
                ref = parse_function_name(unquote(raw_name), shape=NAMESPACED)
            qualifier = resolve_qualifier(ref, _qualifier(query))
        except AwsError as err:
            return caller.account, err
        account = ref.account or caller.account
        if account == caller.account:
            return account, None
        if account not in self.policies:
            return caller.account, AwsError("AccessDeniedException", f"User: {caller.principal} is not authorized to "
                                            f"perform: lambda:InvokeFunction on resource: arn:aws:lambda:{self.region}:"
                                            f"{account}:function:{ref.name} because no resource-based policy allows "
                                            "the lambda:InvokeFunction action", 403)
        return account, self.may_invoke(caller, account, ref.name, qualifier)

    # ------------------------------------------------------------------ the ASGI path

    async def asgi(self, scope: Scope, receive: Receive, invoke_name: str | None
                   ) -> tuple[Receive, Caller, str] | Rendered:
        """Verify an ASGI request (its body read whole, then handed on by the returned receive) and apply the policy;
        (receive, caller, the account whose resources it acts on), or the error response to send."""
        path: str = scope["path"]
        if path in self.unsigned_paths or path.startswith(self.unsigned_prefixes):
            return receive, self.verifier.default, self.owner
        headers = scope["headers"]
        query = scope.get("query_string", b"")
        try:
            pending = self.verifier.head(headers, query)
        except SignatureError as err:
            return auth_errors.render(err, headers)
        body, more = await _read_all(receive)
        try:
            caller = self.verify(pending, scope["method"], scope.get("raw_path") or path.encode(), query, headers,
                                 body)
        except SignatureError as err:
            return auth_errors.render(err, headers)
        service = pending.service if pending is not None else "lambda"
        decided = self._decide(caller, scope["method"], path, headers, query, body, service, invoke_name)
        if not isinstance(decided, str):
            return decided
        return _replay(body, more, receive), caller, decided

    def identity_refusal(self, caller: Caller, method: str, path: str, query: bytes,
                         headers: list[tuple[bytes, bytes]], body: bytes, service: str) -> Rendered | None:
        """AccessDenied if the caller's identity policy (its key's or its role's) does not allow what the request does;
        None if it does or the caller has none."""
        if caller.policy is None:
            return None
        act = request_action(method, path, query, headers, body, service, self.region, caller.account)
        if policy.identity_allows(caller.policy, act.name, act.resource):
            return None
        return auth_errors.render(SignatureError(
            "denied", f"User: {caller.principal} is not authorized to perform: {act.name} on resource: {act.resource} "
            f"because no identity-based policy allows the {act.name} action", service), headers)

    def url_identity_allows(self, caller: Caller, account: str, function: str) -> bool:
        """Whether the caller's identity policy (if any) allows invoking `account`'s function by its URL."""
        return caller.policy is None or policy.identity_allows(
            caller.policy, "lambda:InvokeFunctionUrl", f"arn:aws:lambda:{self.region}:{account}:function:{function}")

    def _decide(self, caller: Caller, method: str, path: str, headers: list[tuple[bytes, bytes]], query: bytes,
                body: bytes, service: str, invoke_name: str | None) -> str | Rendered:
        """The account a verified request acts in, or the refusal to send."""
        if caller.policy is not None:
            not_allowed = self.identity_refusal(caller, method, path, query, headers, body, service)
            if not_allowed is not None:
                return not_allowed
        elif caller.function is not None and not policy.function_credentials_allow(method, path, headers, service):
            return auth_errors.render(SignatureError(
                "denied", f"User: {caller.principal} is not authorized to perform this action: function credentials "
                "may invoke, use queues, read logs and put events only", service), headers)
        if invoke_name is not None:
            account, refused = self.invoke_account(caller, invoke_name, query)
            return refused.render() if refused is not None else account
        if service == "ec2" and caller.account != self.owner:
            return auth_errors.render(SignatureError(
                "denied", f"User: {caller.principal} is not authorized to perform this action: EC2 networks (VPCs, "
                f"subnets, security groups) are account {self.owner}'s only on this server", service), headers)
        return caller.account


def _qualifier(query: bytes) -> str | None:
    for pair in query.decode("latin-1").split("&"):
        name, _, value = pair.partition("=")
        if name == "Qualifier":
            return value
    return None


async def _read_all(receive: Receive) -> tuple[bytes, bool]:
    """The request body, whole; and whether the client went away while sending it."""
    parts: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(parts), True
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(parts), False


def _replay(body: bytes, gone: bool, receive: Receive) -> Receive:
    """A receive that hands the body read already, then waits on the connection as the original would."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            if gone:
                return {"type": "http.disconnect"}
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
