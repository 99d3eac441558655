"""An HTTP-app function's configuration: the Lambda Web Adapter's variables (spec/dispatch.md §2.6)."""

from __future__ import annotations

from dataclasses import dataclass

from lamina.dispatch.spec import FunctionSpec

EXEC_WRAPPER = "/opt/bootstrap"
DEFAULT_PORT = 8080
DEFAULT_MAX_CONCURRENCY = 10


def is_http_app(spec: FunctionSpec) -> bool:
    return any(k == "AWS_LAMBDA_EXEC_WRAPPER" and v == EXEC_WRAPPER or k.startswith("AWS_LWA_")
               for k, v in spec.environment)


def parse_statuses(text: str) -> tuple[tuple[int, int], ...]:
    """LWA's status lists: "200-399,404" -> ((200, 399), (404, 404)); ValueError if malformed."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        low, sep, high = part.partition("-")
        lo = int(low)
        hi = int(high) if sep else lo
        if not (100 <= lo <= hi <= 599):
            raise ValueError(part)
        out.append((lo, hi))
    if not out:
        raise ValueError(text)
    return tuple(out)


def _in(status: int, ranges: tuple[tuple[int, int], ...]) -> bool:
    return any(lo <= status <= hi for lo, hi in ranges)


@dataclass(frozen=True)
class HttpAppConfig:
    command: str                               # relative to the task root
    port: int = DEFAULT_PORT
    readiness_port: int | None = None          # None: the app's port
    readiness_path: str = "/"
    readiness_protocol: str = "http"
    healthy: tuple[tuple[int, int], ...] = ((100, 499),)
    async_init: bool = False
    base_path: str = ""
    invoke_mode: str = "buffered"
    pass_through_path: str = "/events"
    authorization_source: str = ""
    error_statuses: tuple[tuple[int, int], ...] = ()
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    compression: bool = False                  # AWS_LWA_ENABLE_COMPRESSION (gzip; buffered mode only, as LWA)
    error: str | None = None                   # a configuration problem, reported as the init error

    def is_healthy(self, status: int) -> bool:
        return _in(status, self.healthy)

    def is_error(self, status: int) -> bool:
        return _in(status, self.error_statuses)

    @classmethod
    def from_spec(cls, spec: FunctionSpec) -> HttpAppConfig:
        env = dict(spec.environment)
        command = spec.handler if spec.is_python or spec.is_node else "bootstrap"

        def get(name: str) -> str | None:
            # LWA still reads the old unprefixed names (until its 2.0).
            value = env.get(f"AWS_LWA_{name}")
            return value if value is not None else env.get(name)

        try:
            port_text = env.get("AWS_LWA_PORT") or env.get("PORT") or str(DEFAULT_PORT)
            port = _port(port_text, "AWS_LWA_PORT")
            rport_text = get("READINESS_CHECK_PORT")
            rport = _port(rport_text, "AWS_LWA_READINESS_CHECK_PORT") if rport_text else None
            path = get("READINESS_CHECK_PATH") or "/"
            if not path.startswith("/"):
                raise ValueError(f"AWS_LWA_READINESS_CHECK_PATH must start with '/', not {path!r}")
            protocol = (get("READINESS_CHECK_PROTOCOL") or "http").lower()
            if protocol not in ("http", "tcp"):
                raise ValueError(f"AWS_LWA_READINESS_CHECK_PROTOCOL must be http or tcp, not {protocol!r}")
            healthy_text = get("READINESS_CHECK_HEALTHY_STATUS") or "100-499"
            try:
                healthy = parse_statuses(healthy_text)
            except ValueError:
                raise ValueError("AWS_LWA_READINESS_CHECK_HEALTHY_STATUS must be statuses and ranges such as "
                                 f"'200-399,404', not {healthy_text!r}") from None
            errors_text = env.get("AWS_LWA_ERROR_STATUS_CODES") or ""
            try:
                error_statuses = parse_statuses(errors_text) if errors_text.strip() else ()
            except ValueError:
                raise ValueError("AWS_LWA_ERROR_STATUS_CODES must be statuses and ranges such as '500,502-504', "
                                 f"not {errors_text!r}") from None
            mode = (env.get("AWS_LWA_INVOKE_MODE") or "buffered").lower()
            if mode not in ("buffered", "response_stream"):
                raise ValueError(f"AWS_LWA_INVOKE_MODE must be buffered or response_stream, not {mode!r}")
            conc_text = env.get("AWS_LAMBDA_MAX_CONCURRENCY") or str(DEFAULT_MAX_CONCURRENCY)
            if not conc_text.isdigit() or not 1 <= int(conc_text) <= 1000:
                raise ValueError(f"AWS_LAMBDA_MAX_CONCURRENCY must be a whole number from 1 to 1000, not {conc_text!r}")
            base = get("REMOVE_BASE_PATH") or ""
            return cls(command=command, port=port, readiness_port=rport, readiness_path=path,
                       readiness_protocol=protocol, healthy=healthy,
                       async_init=(get("ASYNC_INIT") or "").lower() == "true", base_path=base.rstrip("/"),
                       invoke_mode=mode, pass_through_path=env.get("AWS_LWA_PASS_THROUGH_PATH") or "/events",
                       authorization_source=(env.get("AWS_LWA_AUTHORIZATION_SOURCE") or "").lower(),
                       error_statuses=error_statuses, max_concurrency=int(conc_text),
                       # LWA turns compression off in response_stream mode (with a warning).
                       compression=(get("ENABLE_COMPRESSION") or "").lower() == "true" and mode == "buffered")
        except ValueError as exc:
            return cls(command=command, error=str(exc))


def _port(text: str, name: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"{name} must be a port number, not {text!r}")
    return int(text)
