"""The HTTP front door: one ASGI app for everything `lamina serve` answers on its port.

MicroVM endpoints and function URLs are this part's own (the proxy and the URL gateway); the invoke paths
(Invoke, InvokeWithResponseStream) and the REST APIs belong to other front ends and are handed in by
server.py, so this module imports none of them. Under `lamina serve`, Invoke and handler-function URL
requests are answered before they get here (fast_http.py); what reaches __call__ is what the hot path hands on.

Each account the server holds has its own routes behind the door (an AccountDoor): a signed request goes to its
caller's account, an Invoke of another account's function ARN to that account (if its resource policy allows the
caller), a function URL or MicroVM endpoint to the account that has it, and anything unsigned (health, metrics, the
dashboard) to the server's own account.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import unquote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lamina.auth.sigv4 import Pending
from lamina.functions.errors import AwsError
from lamina.functions.invoke import InvokeHandler
from lamina.functions.names import acting_account
from lamina.functions.registry import FunctionService
from lamina.functions.urls import FunctionUrlService
from lamina.gateway.http import function_urls as url_gateway
from lamina.gateway.http import microvm_proxy
from lamina.gateway.http.function_urls import FunctionUrlGateway
from lamina.gateway.http.request_auth import RequestAuth
from lamina.microvm.manager import MicrovmManager

log = logging.getLogger("lamina.gateway")

# ASGI callables are typed as Starlette types them (starlette.types: scope and messages are MutableMappings), so
# that the REST APIs' Starlette app and Lamina's own endpoints fit the same signatures.
# An invoke path's matcher (the raw, still percent-encoded function name, or None) and its ASGI handler, which
# also takes that name.
NamedEndpoint = Callable[[Scope, Receive, Send, str], Awaitable[None]]
InvokeRoute = tuple[Callable[[str], str | None], NamedEndpoint]


class AccountDoor:
    """One account's routes: its REST APIs (`control`), its invoke paths, function URLs and MicroVM endpoints."""

    def __init__(self, account: str, control: ASGIApp, functions: FunctionService, invoke: InvokeHandler,
                 invoke_routes: Sequence[InvokeRoute], urls: FunctionUrlService | None = None,
                 microvms: MicrovmManager | None = None, targets: Sequence[tuple[bytes, ASGIApp]] = ()) -> None:
        self.account = account
        # JSON 1.1 APIs answered ahead of the REST app (X-Amz-Target prefix -> the API's own ASGI app, which sets its
        # own x-amzn-RequestId): PutEvents under load, without Starlette's routing and middleware per request.
        self.targets = tuple(targets)
        self.control = control
        self.invoke = invoke                    # the hot path's Invoke steps (fast_http.py)
        self.invoke_routes = tuple(invoke_routes)
        self.gateway = FunctionUrlGateway(urls, functions) if urls is not None else None
        self.microvm_proxy = microvm_proxy.MicrovmProxy(microvms) if microvms is not None else None


class FrontDoor:
    """Routes a request by host and path: a MicroVM endpoint, a function URL, an invoke path, else the REST APIs;
    and by who is calling, to an account's routes (the first door given is the server's own account's)."""

    def __init__(self, doors: Sequence[AccountDoor], auth: RequestAuth | None = None) -> None:
        self.home = doors[0]
        self.doors = {door.account: door for door in doors}
        self.control = self.home.control
        # Who is calling (SigV4, policies); None or open (no keys configured): every request is taken, as the
        # server's own account's.
        self.auth = auth if auth is not None and not auth.open else None
        # The server's own account's, which the hot path uses directly when it is the only one.
        self.invoke = self.home.invoke
        self.invoke_routes = self.home.invoke_routes
        self.gateway = self.home.gateway
        self.microvm_proxy = self.home.microvm_proxy
        self.single = len(self.doors) == 1
        for door in doors:
            if door.gateway is not None:
                door.gateway.auth = auth

    def behind(self, auth: RequestAuth) -> FrontDoor:
        """This front door with another check of who is calling (the listener functions' networks reach, where
        every request is signed: server.py); the same routes and gateways."""
        door = copy.copy(self)
        door.auth = auth if not auth.open else None
        return door

    # ------------------------------------------------------------------ which account's routes

    def invoke_door(self, pending: Pending | None, raw_name: str) -> AccountDoor:
        """The account whose function an invoke path names, for the hot path to read the request's head with before
        its signature is checked (which then confirms it: RequestAuth.invoke_account): the ARN's account, else the
        signing key's; the server's own if it holds no such account."""
        account = pending.caller.account if pending is not None else self.home.account
        name = unquote(raw_name)
        if name.startswith("arn:"):
            parts = name.split(":")
            account = parts[4] if len(parts) > 4 else account
        elif name[:12].isdigit() and name[12:13] == ":":
            account = name[:12]
        return self.doors.get(account, self.home)

    def url_gateway(self, url_id: str) -> FunctionUrlGateway | None:
        """The gateway of the account that has this URL (the server's own when none has: its 404)."""
        if not self.single:
            for door in self.doors.values():
                if door.gateway is not None and url_id in door.gateway.urls.by_id:
                    return door.gateway
        return self.gateway

    def microvm_door(self, microvm_id: str) -> microvm_proxy.MicrovmProxy | None:
        if not self.single:
            for door in self.doors.values():
                if door.microvm_proxy is not None and microvm_id in door.microvm_proxy.mgr.instances:
                    return door.microvm_proxy
        return self.microvm_proxy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A route that must take precedence over the hot path's belongs in fast_http's _routed_first too.
        if (self.microvm_proxy is not None and scope["type"] in ("http", "websocket")
                and (target := microvm_proxy.match(scope)) is not None):
            proxy = self.microvm_door(target[0])
            assert proxy is not None
            with acting_account(proxy.mgr.settings.account_id):
                await proxy(scope, receive, send, *target)
            return
        if scope["type"] != "http":
            await self.control(scope, receive, send)   # lifespan: the server's own app runs it
            return
        if (url := url_gateway.match(scope)) is not None and (gateway := self.url_gateway(url[0])) is not None:
            with acting_account(gateway.settings.account_id):
                await gateway(scope, receive, send, *url)
            return
        path = scope.get("raw_path", b"").decode("latin-1").split("?", 1)[0]
        route: tuple[int, str] | None = None   # (which invoke route, the function name it matched)
        for index, (match, _) in enumerate(self.invoke_routes):
            name = match(path)
            if name is not None:
                route = (index, name)
                break
        door = self.home
        if self.auth is not None:
            checked = await self.auth.asgi(scope, receive, route[1] if route is not None else None)
            if isinstance(checked[0], int):
                await _send_rendered(send, checked)
                return
            receive, caller, account = checked
            scope["lamina.caller"] = caller
            found = self.doors.get(account)
            if found is None:   # keys of an account this server does not hold (cannot be configured: server.py)
                await _send_rendered(send, AwsError("AccessDeniedException", f"Account {account} is not served here",
                                                    403).render())
                return
            door = found
        with acting_account(door.account):
            if route is not None:
                try:   # the same invoke route, of that account's
                    await door.invoke_routes[route[0]][1](scope, receive, send, route[1])
                except Exception as exc:  # never drop a connection without an answer
                    log.exception("invoke failed")
                    await _send_rendered(send, AwsError("ServiceException", f"Internal error: {exc}").render())
                return
            if door.targets and scope["method"] == "POST":
                for name, value in scope["headers"]:
                    if name == b"x-amz-target":
                        for prefix, app in door.targets:
                            if value.startswith(prefix):
                                await _answer(app, scope, receive, send)
                                return
                        break
            await door.control(scope, receive, send)


async def _answer(app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Run an API's own ASGI app; an unexpected failure is a 500 in AWS's shape, as the REST app would answer."""
    started = False

    async def sending(message: Message) -> None:
        nonlocal started
        started = started or message["type"] == "http.response.start"
        await send(message)

    try:
        await app(scope, receive, sending)
    except Exception as exc:
        log.exception("request failed")
        if not started:
            await _send_rendered(send, AwsError("ServiceException", f"Internal error: {exc}").render())


async def _send_rendered(send: Send, rendered: tuple[int, list[tuple[bytes, bytes]], bytes]) -> None:
    status, headers, body = rendered
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
