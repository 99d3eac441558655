"""The front door's check of who is calling, for both of its paths (the ASGI app and the hot path): SigV4
(auth/sigv4.py) on every AWS-API request, then what that caller may do — everything in the server's own account,
only what a resource policy allows from another account (auth/policy.py), the fixed policy of functions'
credentials. Queues belong to accounts: another account's SQS requests reach the SQS API, which acts in the caller's
account and checks a queue's Policy for another account's queue.

Not signed, by design: MicroVM endpoints (their own tokens), function URLs with AuthType NONE, /metrics,
/lamina/v1/health and the dashboard under /lamina/ui/ (a browser cannot sign: it has its own sign-in with an access
key pair, gateway/http/dashboard/login.py). With no keys configured (loopback only) nothing is checked at all.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import unquote

from starlette.types import Message, Receive, Scope

from lamina.auth import errors as auth_errors
from lamina.auth import policy
from lamina.auth.keys import Caller
from lamina.auth.sigv4 import Pending, SignatureError, Verifier
from lamina.functions.errors import AwsError
from lamina.functions.names import NAMESPACED, parse_function_name, resolve_qualifier
from lamina.functions.permissions import PolicyService

_UNSIGNED_PATHS = ("/metrics", "/lamina/v1/health", "/lamina/ui", "/lamina/ui/")   # one ending in / is a prefix
_QUEUE_PATH = re.compile(r"/(\d{12})/([A-Za-z0-9_.-]{1,80})/?")   # a queue URL's path (api/sqs.py's QUEUE_PATH)
Rendered = tuple[int, list[tuple[bytes, bytes]], bytes]


class RequestAuth:
    def __init__(self, verifier: Verifier, policies: PolicyService | None, owner_account: str, region: str,
                 unsigned_paths: tuple[str, ...] = _UNSIGNED_PATHS) -> None:
        self.verifier = verifier
        self.unsigned_paths = unsigned_paths
        self.unsigned_prefixes = tuple(p for p in unsigned_paths if p.endswith("/"))
        self.policies = policies
        self.owner = owner_account
        self.region = region
        self.open = verifier.open

    # ------------------------------------------------------------------ both paths

    def verify(self, pending: Pending | None, method: str, raw_path: bytes, query: bytes,
               headers: list[tuple[bytes, bytes]], body: bytes) -> Caller:
        return self.verifier.check(pending, method, raw_path, query, headers, body)

    def may_invoke(self, caller: Caller, function: str, qualifier: str | None,
                   via_url: bool = False) -> AwsError | None:
        """None if the caller may invoke the function (version/alias), else AWS's AccessDeniedException."""
        action = "lambda:InvokeFunctionUrl" if via_url else "lambda:InvokeFunction"
        if caller.account == self.owner:
            return None
        statements: list[Mapping] = []
        if self.policies is not None:
            statements = list(self.policies.policies.get((function, qualifier or ""), {}).values())
        context = {"aws:sourceaccount": caller.account, "aws:principalaccount": caller.account,
                   "lambda:functionurlauthtype": "AWS_IAM" if via_url else "NONE",
                   "lambda:invokedviafunctionurl": "true" if via_url else "false"}
        if policy.allows(statements, caller, action, context):
            return None
        arn = f"arn:aws:lambda:{self.region}:{self.owner}:function:{function}" + (f":{qualifier}" if qualifier else "")
        err = AwsError("AccessDeniedException", f"User: {caller.principal} is not authorized to perform: {action} on "
                       f"resource: {arn} because no resource-based policy allows the {action} action", 403)
        return err

    def foreign_invoke(self, caller: Caller, raw_name: str, query: bytes) -> AwsError | None:
        """Why a caller of another account may not invoke the function an invoke path names (`raw_name`, still
        percent-encoded), or None. Decided before the function is looked up, so that nothing about this account's
        functions shows: a name without an account is a function of the caller's own account (where AWS resolves
        it), which this server does not hold; this account's ARN needs a resource policy allowing the caller."""
        if caller.account == self.owner:
            return None
        try:
            ref = parse_function_name(unquote(raw_name), shape=NAMESPACED)
            qualifier = resolve_qualifier(ref, _qualifier(query))
        except AwsError as err:
            return err
        if ref.account is None:
            return AwsError("ResourceNotFoundException", f"Function not found: arn:aws:lambda:{self.region}:"
                            f"{caller.account}:function:{ref.name}" + (f":{qualifier}" if qualifier else ""))
        return self.may_invoke(caller, ref.name, qualifier)

    # ------------------------------------------------------------------ the ASGI path

    async def asgi(self, scope: Scope, receive: Receive, invoke_name: str | None
                   ) -> tuple[Receive, Caller] | Rendered:
        """Verify an ASGI request (its body read whole, then handed on by the returned receive) and apply the policy;
        (receive, caller), or the error response to send."""
        path: str = scope["path"]
        if path in self.unsigned_paths or path.startswith(self.unsigned_prefixes):
            return receive, self.verifier.default
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
        denied = self._denied(caller, scope["method"], path, headers, query, service, invoke_name)
        if denied is not None:
            return denied
        return _replay(body, more, receive), caller

    def _denied(self, caller: Caller, method: str, path: str, headers: list[tuple[bytes, bytes]], query: bytes,
                service: str, invoke_name: str | None) -> Rendered | None:
        if caller.function is not None and not policy.function_credentials_allow(method, path, headers, service):
            return auth_errors.render(SignatureError(
                "denied", f"User: {caller.principal} is not authorized to perform this action: function credentials "
                "may invoke, use queues, read logs and put events only", service), headers)
        if caller.account == self.owner:
            return None
        if service == "sqs" and _is_sqs(method, path, headers):
            return None   # queues belong to accounts: the SQS API acts in the caller's and checks queue policies
        if invoke_name is not None:
            refused = self.foreign_invoke(caller, invoke_name, query)
            return refused.render() if refused is not None else None
        return auth_errors.render(SignatureError(
            "denied", f"User: {caller.principal} is not authorized to perform this action on resources of account "
            f"{self.owner}", service), headers)


def _is_sqs(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether the SQS API takes this request (as its route claims them: api/sqs.py)."""
    if method != "POST":
        return False
    form = False
    for name, value in headers:
        if name == b"x-amz-target":
            return value.startswith(b"AmazonSQS.")
        if name == b"content-type":
            form = value.startswith(b"application/x-www-form-urlencoded")
    return form and (path == "/" or _QUEUE_PATH.fullmatch(path) is not None)


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
