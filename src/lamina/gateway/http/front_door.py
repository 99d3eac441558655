"""The HTTP front door: one ASGI app for everything `lamina serve` answers on its port.

MicroVM endpoints and function URLs are this part's own (the proxy and the URL gateway); the invoke paths
(Invoke, InvokeWithResponseStream) and the REST APIs belong to other front ends and are handed in by
server.py, so this module imports none of them. Under `lamina serve`, Invoke and handler-function URL
requests are answered before they get here (fast_http.py); what reaches __call__ is what the hot path hands on.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Awaitable, Callable, Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

from lamina.functions.errors import AwsError
from lamina.functions.invoke import InvokeHandler
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


class FrontDoor:
    """Routes a request by host and path: a MicroVM endpoint, a function URL, an invoke path, else the REST APIs."""

    def __init__(self, control: ASGIApp, functions: FunctionService, invoke: InvokeHandler,
                 invoke_routes: Sequence[InvokeRoute], urls: FunctionUrlService | None = None,
                 microvms: MicrovmManager | None = None, auth: RequestAuth | None = None) -> None:
        self.control = control
        # Who is calling (SigV4, policies); None or open (no keys configured): every request is taken.
        self.auth = auth if auth is not None and not auth.open else None
        self.invoke = invoke                    # the hot path's Invoke steps (fast_http.py)
        self.invoke_routes = tuple(invoke_routes)
        self.gateway = FunctionUrlGateway(urls, functions) if urls is not None else None
        self.microvm_proxy = microvm_proxy.MicrovmProxy(microvms) if microvms is not None else None
        if self.gateway is not None:
            self.gateway.auth = auth

    def behind(self, auth: RequestAuth) -> FrontDoor:
        """This front door with another check of who is calling (the listener functions' networks reach, where
        every request is signed: server.py); the same routes and gateways."""
        door = copy.copy(self)
        door.auth = auth if not auth.open else None
        return door

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A route that must take precedence over the hot path's belongs in fast_http's _routed_first too.
        if (self.microvm_proxy is not None and scope["type"] in ("http", "websocket")
                and (target := microvm_proxy.match(scope)) is not None):
            await self.microvm_proxy(scope, receive, send, *target)
            return
        if scope["type"] == "http":
            if self.gateway is not None and (url := url_gateway.match(scope)) is not None:
                await self.gateway(scope, receive, send, *url)
                return
            path = scope.get("raw_path", b"").decode("latin-1").split("?", 1)[0]
            route: tuple[NamedEndpoint, str] | None = None
            for match, endpoint in self.invoke_routes:
                name = match(path)
                if name is not None:
                    route = (endpoint, name)
                    break
            if self.auth is not None:
                checked = await self.auth.asgi(scope, receive, route[1] if route is not None else None)
                if isinstance(checked[0], int):
                    status, headers, body = checked
                    await send({"type": "http.response.start", "status": status, "headers": headers})
                    await send({"type": "http.response.body", "body": body})
                    return
                receive, scope["lamina.caller"] = checked
            if route is not None:
                try:
                    await route[0](scope, receive, send, route[1])
                except Exception as exc:  # never drop a connection without an answer
                    log.exception("invoke failed")
                    status, headers, body = AwsError("ServiceException", f"Internal error: {exc}").render()
                    await send({"type": "http.response.start", "status": status, "headers": headers})
                    await send({"type": "http.response.body", "body": body})
                return
        await self.control(scope, receive, send)
