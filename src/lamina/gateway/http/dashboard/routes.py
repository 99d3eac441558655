"""The dashboard at /lamina/ui/: server-rendered pages (Jinja2) with htmx for live fragments and actions and uPlot for
the charts, both vendored under static/vendor (no CDN, no build step). Pages: functions (overview and each
function: configuration, versions, aliases, URLs, concurrency, environments, live charts, log tail with a filter
pattern, pending async events), MicroVMs (with suspend / resume / terminate), UDP listeners with packet rates, the
async event queue.

Actions are POSTs that must carry htmx's HX-Request header: a page on another site cannot send that header
without a CORS preflight this server never grants, so it cannot drive the buttons from a visitor's browser."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from lamina.functions.errors import AwsError
from lamina.gateway.http.dashboard.views import Dashboard

PREFIX = "/lamina/ui"
HERE = Path(__file__).parent
HTMX = "vendor/htmx-2.0.11.min.js"
UPLOT_JS = "vendor/uPlot-1.6.32.iife.min.js"
UPLOT_CSS = "vendor/uPlot-1.6.32.min.css"


def _timestamp(ms: int) -> str:
    """A record's epoch-ms timestamp as UTC time of day with milliseconds."""
    return time.strftime("%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}"


def routes(board: Dashboard) -> list[BaseRoute]:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals.update(prefix=PREFIX, htmx=HTMX, uplot_js=UPLOT_JS, uplot_css=UPLOT_CSS)
    templates.env.filters["ts"] = _timestamp

    def page(request: Request, name: str, **context: object) -> Response:
        return templates.TemplateResponse(request, name, {"server": board.server(), **context})

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

    return [
        Route(PREFIX, bare, methods=["GET"]),
        Route(PREFIX + "/", index, methods=["GET"]),
        Route(PREFIX + "/fragments/functions", functions_fragment, methods=["GET"]),
        Route(PREFIX + "/functions/{name}", function, methods=["GET"]),
        Route(PREFIX + "/fragments/functions/{name}", function_fragment, methods=["GET"]),
        Route(PREFIX + "/fragments/functions/{name}/logs", function_logs, methods=["GET"]),
        Route(PREFIX + "/fragments/functions/{name}/events", function_events, methods=["GET"]),
        Route(PREFIX + "/api/stats", stats, methods=["GET"]),
        Route(PREFIX + "/microvms", microvms, methods=["GET"]),
        Route(PREFIX + "/fragments/microvms", microvms_fragment, methods=["GET"]),
        Route(PREFIX + "/microvms/{id}/{action}", microvm_action, methods=["POST"]),
        Route(PREFIX + "/udp", udp, methods=["GET"]),
        Route(PREFIX + "/fragments/udp", udp_fragment, methods=["GET"]),
        Route(PREFIX + "/events", events, methods=["GET"]),
        Route(PREFIX + "/fragments/events", events_fragment, methods=["GET"]),
        Mount(PREFIX + "/static", StaticFiles(directory=str(HERE / "static")), name="dashboard-static"),
    ]
