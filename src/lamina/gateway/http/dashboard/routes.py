"""The dashboard at /lamina/ui/: server-rendered pages (Jinja2) with htmx for live fragments and actions and uPlot for
the charts, both vendored under static/vendor (no CDN, no build step). Pages: functions (overview and each
function: configuration, versions, aliases, URLs, concurrency, environments, live charts, log tail with a filter
pattern, pending async events), MicroVMs (with suspend / resume / terminate), UDP listeners with packet rates, the
async event queue.

Actions are POSTs that must carry htmx's HX-Request header: a page on another site cannot send that header
without a CORS preflight this server never grants, so it cannot drive the buttons from a visitor's browser.

When the server has access keys, every page, fragment, JSON endpoint and action needs a signed-in session
(login.py): pages redirect to the sign-in page, fragments and actions answer 401 with htmx's HX-Redirect to it.
The vendored static files stay public (the sign-in page uses them)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from lamina.functions.errors import AwsError
from lamina.gateway.http.dashboard.login import COOKIE, DashboardLogin
from lamina.gateway.http.dashboard.views import Dashboard

PREFIX = "/lamina/ui"
HERE = Path(__file__).parent
HTMX = "vendor/htmx-2.0.11.min.js"
UPLOT_JS = "vendor/uPlot-1.6.32.iife.min.js"
UPLOT_CSS = "vendor/uPlot-1.6.32.min.css"


def _timestamp(ms: int) -> str:
    """A record's epoch-ms timestamp as UTC time of day with milliseconds."""
    return time.strftime("%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}"


Endpoint = Callable[[Request], Awaitable[Response]]
_LOGIN_FORM_LIMIT = 8192


def _next_page(value: str | None) -> str:
    """Where to go after signing in: a dashboard page, never another site."""
    if value and value.startswith(PREFIX + "/") and not value.startswith("//") and "\\" not in value:
        return value
    return PREFIX + "/"


def routes(board: Dashboard, login: DashboardLogin | None = None) -> list[BaseRoute]:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals.update(prefix=PREFIX, htmx=HTMX, uplot_js=UPLOT_JS, uplot_css=UPLOT_CSS)
    templates.env.filters["ts"] = _timestamp

    def page(request: Request, name: str, **context: object) -> Response:
        return templates.TemplateResponse(request, name, {"server": board.server(),
                                                          "session": request.scope.get("lamina.dashboard"),
                                                          **context})

    def guarded(endpoint: Endpoint, is_page: bool) -> Endpoint:
        """The endpoint behind the sign-in when the server has keys; as it is when the server is open."""
        if login is None:
            return endpoint

        async def check(request: Request) -> Response:
            if login.required:
                session = login.session(request.cookies.get(COOKIE))
                if session is None:
                    target = f"{PREFIX}/login?next={quote(request.url.path)}"
                    if is_page and request.method == "GET" and request.headers.get("hx-request") != "true":
                        return RedirectResponse(target, 303)
                    return PlainTextResponse("Sign in to the dashboard first.", 401, headers={"HX-Redirect": target})
                request.scope["lamina.dashboard"] = session
            return await endpoint(request)

        return check

    def login_page(request: Request, next_page: str | None, error: str = "", status: int = 200) -> Response:
        return templates.TemplateResponse(request, "login.html", {"error": error, "next": _next_page(next_page)},
                                          status_code=status)

    async def sign_in_form(request: Request) -> Response:
        if login is None or not login.required:
            return RedirectResponse(PREFIX + "/", 303)
        return login_page(request, request.query_params.get("next"))

    async def sign_in(request: Request) -> Response:
        if login is None or not login.required:
            return RedirectResponse(PREFIX + "/", 303)
        origin = request.headers.get("origin")
        if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
            return PlainTextResponse("Sign in from the dashboard's own page.", 403)
        body = await request.body()
        if len(body) > _LOGIN_FORM_LIMIT:
            return PlainTextResponse("Form too large.", 413)
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()}
        token = login.sign_in(form.get("access_key_id", "").strip(), form.get("secret_access_key", ""))
        if token is None:
            return login_page(request, form.get("next"), "The access key ID or secret access key is not valid.", 401)
        response = RedirectResponse(_next_page(form.get("next")), 303)
        response.set_cookie(COOKIE, token, max_age=login.seconds, path=PREFIX, httponly=True, samesite="strict",
                            secure=request.url.scheme == "https")
        return response

    async def sign_out(request: Request) -> Response:
        response = RedirectResponse(PREFIX + "/login" if login is not None and login.required else PREFIX + "/",
                                    303)
        response.delete_cookie(COOKIE, path=PREFIX, httponly=True, samesite="strict")
        return response

    def function_or_404(request: Request):  # noqa: ANN202 - a Function
        name = unquote(request.path_params["name"])
        fn = board.functions.functions.get(name)
        if fn is None:
            raise AwsError("ResourceNotFoundException", f"Function not found: {name}")
        return fn

    async def index(request: Request) -> Response:
        return page(request, "functions.html", rows=board.function_rows(), active="functions")

    async def functions_fragment(request: Request) -> Response:
        return page(request, "_functions_table.html", rows=board.function_rows())

    async def function(request: Request) -> Response:
        fn = function_or_404(request)
        return page(request, "function.html", row=board.function_row(fn), active="functions",
                    pattern=request.query_params.get("filter", ""))

    async def function_fragment(request: Request) -> Response:
        return page(request, "_function_live.html", row=board.function_row(function_or_404(request)))

    async def function_logs(request: Request) -> Response:
        fn = function_or_404(request)
        pattern = request.query_params.get("filter", "")
        try:
            events, error = board.logs(fn.name, pattern), ""
        except AwsError as exc:
            events, error = [], exc.message or ""
        return page(request, "_logs.html", events=events, error=error, pattern=pattern)

    async def function_events(request: Request) -> Response:
        fn = function_or_404(request)
        return page(request, "_pending.html", pending=board.pending_events(fn.name))

    async def stats(request: Request) -> Response:
        return JSONResponse(board.stats())

    async def microvms(request: Request) -> Response:
        return page(request, "microvms.html", rows=board.microvm_rows(), images=board.microvm_images(),
                    active="microvms", enabled=board.microvms is not None)

    async def microvms_fragment(request: Request) -> Response:
        return page(request, "_microvms_table.html", rows=board.microvm_rows(), message="")

    async def microvm_action(request: Request) -> Response:
        if request.headers.get("hx-request") != "true":
            return PlainTextResponse("Dashboard actions are sent by the dashboard (HX-Request header).", 403)
        if board.microvms is None:
            return PlainTextResponse("This server runs no MicroVMs.", 404)
        microvm_id, action = request.path_params["id"], request.path_params["action"]
        message = ""
        try:
            if action == "suspend":
                await board.microvms.suspend(microvm_id, "Suspended from the dashboard.")
            elif action == "resume":
                await board.microvms.resume(microvm_id)
            elif action == "terminate":
                await board.microvms.terminate(microvm_id, "Terminated from the dashboard.")
            else:
                return PlainTextResponse(f"Unknown action {action}.", 404)
        except AwsError as exc:
            message = exc.message or ""
        return page(request, "_microvms_table.html", rows=board.microvm_rows(), message=message)

    async def udp(request: Request) -> Response:
        return page(request, "udp.html", listeners=board.udp_listeners(), active="udp")

    async def udp_fragment(request: Request) -> Response:
        return page(request, "_udp_table.html", listeners=board.udp_listeners())

    async def events(request: Request) -> Response:
        return page(request, "events.html", stats=board.async_stats(), active="events",
                    pending={name: board.pending_events(name) for name in sorted(board.functions.functions)})

    async def events_fragment(request: Request) -> Response:
        return page(request, "_events.html", stats=board.async_stats(),
                    pending={name: board.pending_events(name) for name in sorted(board.functions.functions)})

    async def bare(request: Request) -> Response:
        return RedirectResponse(PREFIX + "/", 308)

    pages: list[tuple[str, Endpoint, list[str]]] = [
        ("/", index, ["GET"]), ("/functions/{name}", function, ["GET"]), ("/microvms", microvms, ["GET"]),
        ("/udp", udp, ["GET"]), ("/events", events, ["GET"]),
    ]
    parts: list[tuple[str, Endpoint, list[str]]] = [
        ("/fragments/functions", functions_fragment, ["GET"]),
        ("/fragments/functions/{name}", function_fragment, ["GET"]),
        ("/fragments/functions/{name}/logs", function_logs, ["GET"]),
        ("/fragments/functions/{name}/events", function_events, ["GET"]),
        ("/api/stats", stats, ["GET"]),
        ("/fragments/microvms", microvms_fragment, ["GET"]),
        ("/microvms/{id}/{action}", microvm_action, ["POST"]),
        ("/fragments/udp", udp_fragment, ["GET"]),
        ("/fragments/events", events_fragment, ["GET"]),
    ]
    return [
        Route(PREFIX, bare, methods=["GET"]),
        Route(PREFIX + "/login", sign_in_form, methods=["GET"]),
        Route(PREFIX + "/login", sign_in, methods=["POST"]),
        Route(PREFIX + "/logout", sign_out, methods=["POST"]),
        *(Route(PREFIX + path, guarded(endpoint, True), methods=methods) for path, endpoint, methods in pages),
        *(Route(PREFIX + path, guarded(endpoint, False), methods=methods) for path, endpoint, methods in parts),
        Mount(PREFIX + "/static", StaticFiles(directory=str(HERE / "static")), name="dashboard-static"),
    ]
