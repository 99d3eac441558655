"""A UDP listener's configuration: parsed and checked from the API's JSON, and back.

The document follows Proxylity UDP Gateway's listener and destination objects where they fit
(spec/udp-gateway.md §2.1-2.2), in Lamina's terms:

    {"Name": "dns",                              optional; [A-Za-z0-9-], unique; default: the id
     "Host": "127.0.0.1",                        optional; default: the address `lamina serve` listens on
     "Port": 5353,                               optional; 0 or absent: the kernel picks one (reported back)
     "ClientRestrictions": {"Networks": ["10.0.0.0/8", "::1/128"]},   optional; default: everyone
     "Destinations": [{
         "Type": "function",                     function | function-async | log | microvm
         "Function": "name, name:qualifier or an ARN",
         "Name": "optional, [A-Za-z0-9-]",
         "Batching": {"Count": 100, "TimeoutInSeconds": 0.05, "SizeInMb": 1},
         "Formatter": "base64",                  base64 | hex | ascii | utf8
         "MaxInFlightBatches": 32,
         "Arguments": {"TenantId": "...", "TenantIdExpression": "[0:4]", "TenantIdFormatter": "hex",
                       "MaxLinesPerSecond": 100}}]}

A `microvm` destination names an Image instead of a Function (microvm_destination.py):

    {"Type": "microvm", "Image": "name or ARN", "Batching": {...}, "Formatter": "base64",   (the last two: http)
     "Arguments": {"TenantIdExpression": "[0:4]", "TenantIdFormatter": "hex",   or "TenantId": "..."
                   "Port": 8080,                 the instance's port its app takes packets on
                   "MaxDuration": 28800,         -> maximumDurationInSeconds
                   "MaxIdle": 300,               -> idlePolicy.maxIdleDurationSeconds (absent: no idle policy)
                   "MaxSuspended": 28800,        -> idlePolicy.suspendedDurationSeconds (default: MaxDuration)
                   "AutoResume": true,           -> idlePolicy.autoResumeEnabled
                   "Delivery": "udp"}}           udp: datagrams to Port; http: POSTs of {"Messages": [...]}

A listener binds by default to the same address as the server's HTTP API (127.0.0.1 unless
`lamina serve --host` says otherwise): whoever may reach the API may reach its listeners, and
nothing is exposed to the network that the operator did not expose already.

Every problem is a ConfigError naming the field (`Destinations[0].Batching.Count`), so the API can
answer 400 with a message saying what to change.
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass, field
from typing import Any

from lamina.functions import validation
from lamina.functions.errors import AwsError
from lamina.gateway.udp import brex
from lamina.gateway.udp.formatters import FORMATTERS

DESTINATION_TYPES = ("function", "function-async", "log", "microvm")
# One batch is one invocation: Lambda's payload limits (6 MB sync, 1 MB Event) bound it in bytes,
# this bounds it in messages.
MAX_BATCH_COUNT = 10_000
MAX_BATCH_TIMEOUT_S = 300.0
MAX_IN_FLIGHT = 1000
DEFAULT_IN_FLIGHT = 32
DEFAULT_LOG_LINES_PER_S = 100
# MicroVM destinations (gateway/udp/microvm_destination.py): the instance's policy, AWS's ranges.
MICROVM_MAX_DURATION = 28_800
MICROVM_DEFAULT_PORT = 8080
MICROVM_DELIVERIES = ("udp", "http")
MICROVM_ARGUMENTS = {"TenantId", "TenantIdExpression", "TenantIdFormatter", "Port", "MaxDuration", "MaxIdle",
                     "MaxSuspended", "AutoResume", "Delivery"}
MAX_DESTINATIONS = 10
MAX_NETWORKS = 1000
_NAME = re.compile(r"[A-Za-z0-9-]{1,64}")
TENANT_ID_PATTERN = validation.TENANT_ID.pattern


class ConfigError(ValueError):
    """A bad field in a listener document: `field` is its path, e.g. Destinations[0].Batching.Count."""

    def __init__(self, field_path: str, message: str) -> None:
        super().__init__(f"{field_path}: {message}")
        self.field = field_path
        self.message = message


@dataclass(frozen=True)
class Batching:
    count: int | None = None          # flush at this many packets
    timeout_s: float = 0.0            # flush this long after the batch's first packet; 0: at the end of the loop tick
    size_mb: float | None = None      # flush at this many payload bytes (MiB)

    def doc(self) -> dict:
        out: dict[str, Any] = {}
        if self.count is not None:
            out["Count"] = self.count
        if self.timeout_s:
            out["TimeoutInSeconds"] = self.timeout_s
        if self.size_mb is not None:
            out["SizeInMb"] = self.size_mb
        return out


@dataclass(frozen=True)
class DestinationConfig:
    name: str
    type: str
    function: str | None = None
    batching: Batching = field(default_factory=Batching)
    formatter: str = "base64"
    max_in_flight: int = DEFAULT_IN_FLIGHT
    tenant_id: str | None = None
    tenant_expression: str | None = None
    tenant_formatter: str = "utf8"
    max_lines_per_s: int = DEFAULT_LOG_LINES_PER_S
    # type "microvm": the image, the instance's UDP (or HTTP) port and its lifecycle policy
    image: str | None = None
    port: int = MICROVM_DEFAULT_PORT
    max_duration: int = MICROVM_MAX_DURATION
    max_idle: int | None = None          # None: no idle policy (never suspended for idleness)
    max_suspended: int | None = None     # None with max_idle: MaxDuration
    auto_resume: bool = True
    delivery: str = "udp"

    def doc(self) -> dict:
        out: dict[str, Any] = {"Name": self.name, "Type": self.type}
        if self.type == "microvm":
            return self._microvm_doc(out)
        if self.type == "log":
            out["Formatter"] = self.formatter
            out["Arguments"] = {"MaxLinesPerSecond": self.max_lines_per_s}
            return out
        out["Function"] = self.function
        out["Batching"] = self.batching.doc()
        out["Formatter"] = self.formatter
        out["MaxInFlightBatches"] = self.max_in_flight
        out["Arguments"] = self._tenant_args()
        return out

    def _tenant_args(self) -> dict[str, Any]:
        """The Arguments that say how a packet's tenant is found (none: no tenants)."""
        args: dict[str, Any] = {}
        if self.tenant_id is not None:
            args["TenantId"] = self.tenant_id
        if self.tenant_expression is not None:
            args["TenantIdExpression"] = self.tenant_expression
            args["TenantIdFormatter"] = self.tenant_formatter
        return args

    def _microvm_doc(self, out: dict[str, Any]) -> dict:
        out["Image"] = self.image
        if self.delivery == "http":
            out["Batching"] = self.batching.doc()
            out["Formatter"] = self.formatter
        args: dict[str, Any] = {"Port": self.port, "MaxDuration": self.max_duration, "AutoResume": self.auto_resume,
                                "Delivery": self.delivery}
        if self.max_idle is not None:
            args["MaxIdle"] = self.max_idle
            args["MaxSuspended"] = self.max_suspended
        args.update(self._tenant_args())
        out["Arguments"] = args
        return out


@dataclass(frozen=True)
class ListenerConfig:
    id: str
    name: str
    host: str
    port: int
    networks: tuple[str, ...]        # empty: every client is allowed
    destinations: tuple[DestinationConfig, ...]
    created_at: str = ""

    def doc(self) -> dict:
        return {"Id": self.id, "Name": self.name, "Host": self.host, "Port": self.port,
                "ClientRestrictions": {"Networks": list(self.networks)},
                "Destinations": [d.doc() for d in self.destinations], "CreatedAt": self.created_at}

    def with_port(self, port: int) -> ListenerConfig:
        return ListenerConfig(self.id, self.name, self.host, port, self.networks, self.destinations, self.created_at)


# ------------------------------------------------------------------------------------------ parsing


def parse_listener(body: object, *, listener_id: str, default_host: str, created_at: str = "") -> ListenerConfig:
    """A ListenerConfig from the API's (or the store's) JSON document; raises ConfigError."""
    if not isinstance(body, dict):
        raise ConfigError("(body)", "must be a JSON object")
    _no_unknown(body, "", {"Id", "Name", "Host", "Port", "ClientRestrictions", "Destinations", "CreatedAt",
                           "State", "StateReason", "Metrics", "Domain"})
    name = body.get("Name")
    if name is None:
        name = listener_id
    elif not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError("Name", f"must be 1-64 letters, digits or '-' (got {name!r})")
    host = body.get("Host", default_host)
    if not isinstance(host, str) or not host:
        raise ConfigError("Host", f"must be an IP address to bind, e.g. 127.0.0.1, 0.0.0.0 or :: (got {host!r})")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError("Host", f"must be an IP address to bind, e.g. 127.0.0.1, 0.0.0.0 or :: (got {host!r})"
                          ) from None
    port = body.get("Port", 0)
    if not _is_int(port) or not 0 <= port <= 65535:
        raise ConfigError("Port", f"must be an integer from 0 (pick a free port) to 65535 (got {port!r})")
    networks = _networks(body.get("ClientRestrictions"))
    raw_dests = body.get("Destinations")
    if not isinstance(raw_dests, list) or not raw_dests:
        raise ConfigError("Destinations", "must be a non-empty list, e.g. [{\"Type\": \"function\", "
                          "\"Function\": \"my-function\"}]")
    if len(raw_dests) > MAX_DESTINATIONS:
        raise ConfigError("Destinations", f"at most {MAX_DESTINATIONS} destinations per listener")
    dests = tuple(_destination(d, f"Destinations[{i}]", f"{name}-{i + 1}") for i, d in enumerate(raw_dests))
    seen: set[str] = set()
    for i, d in enumerate(dests):
        if d.name in seen:
            raise ConfigError(f"Destinations[{i}].Name", f"{d.name!r} is used twice in this listener")
        seen.add(d.name)
    return ListenerConfig(listener_id, name, host, int(port), networks, dests, created_at)


def _networks(raw: object) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise ConfigError("ClientRestrictions", "must be an object like {\"Networks\": [\"10.0.0.0/8\"]}")
    _no_unknown(raw, "ClientRestrictions.", {"Networks"})
    nets = raw.get("Networks", [])
    if not isinstance(nets, list):
        raise ConfigError("ClientRestrictions.Networks", "must be a list of CIDR blocks, e.g. [\"10.0.0.0/8\"]")
    if len(nets) > MAX_NETWORKS:
        raise ConfigError("ClientRestrictions.Networks", f"at most {MAX_NETWORKS} entries")
    out = []
    for i, net in enumerate(nets):
        try:
            if not isinstance(net, str):
                raise ValueError
            out.append(str(ipaddress.ip_network(net, strict=False)))
        except ValueError:
            raise ConfigError(f"ClientRestrictions.Networks[{i}]",
                              f"{net!r} is not an IPv4 or IPv6 CIDR block (e.g. 192.0.2.0/24, 2001:db8::/32, "
                              "10.1.2.3)") from None
    return tuple(out)


def _destination(raw: object, where: str, default_name: str) -> DestinationConfig:
    if not isinstance(raw, dict):
        raise ConfigError(where, "must be an object like {\"Type\": \"function\", \"Function\": \"my-function\"}")
    _no_unknown(raw, where + ".", {"Name", "Type", "Function", "Batching", "Formatter", "MaxInFlightBatches",
                                   "Arguments", "Metrics", "Image"})
    kind = raw.get("Type", "function")
    if kind not in DESTINATION_TYPES:
        raise ConfigError(f"{where}.Type", f"must be one of {', '.join(DESTINATION_TYPES)} (got {kind!r})")
    name = raw.get("Name", default_name)
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(f"{where}.Name", f"must be 1-64 letters, digits or '-' (got {name!r})")
    formatter = raw.get("Formatter", "base64")
    if formatter not in FORMATTERS:
        raise ConfigError(f"{where}.Formatter", f"must be one of {', '.join(FORMATTERS)} (got {formatter!r})")
    args = raw.get("Arguments") or {}
    if not isinstance(args, dict):
        raise ConfigError(f"{where}.Arguments", "must be an object")
    if kind == "log":
        _no_unknown(args, f"{where}.Arguments.", {"MaxLinesPerSecond"})
        rate = args.get("MaxLinesPerSecond", DEFAULT_LOG_LINES_PER_S)
        if not _is_int(rate) or not 1 <= rate <= 100_000:
            raise ConfigError(f"{where}.Arguments.MaxLinesPerSecond", f"must be an integer from 1 to 100000 "
                              f"(got {rate!r})")
        return DestinationConfig(name, kind, formatter=formatter, max_lines_per_s=int(rate))
    if kind == "microvm":
        return _microvm_destination(raw, args, where, name, formatter)

    function = raw.get("Function")
    if not isinstance(function, str) or not function.strip():
        raise ConfigError(f"{where}.Function", "names the function to invoke (a name, name:qualifier or ARN)")
    batching = _batching(raw.get("Batching"), f"{where}.Batching", kind)
    in_flight = raw.get("MaxInFlightBatches", DEFAULT_IN_FLIGHT)
    if not _is_int(in_flight) or not 1 <= in_flight <= MAX_IN_FLIGHT:
        raise ConfigError(f"{where}.MaxInFlightBatches", f"must be an integer from 1 to {MAX_IN_FLIGHT} "
                          f"(got {in_flight!r})")
    _no_unknown(args, f"{where}.Arguments.", {"TenantId", "TenantIdExpression", "TenantIdFormatter"})
    tenant_id, expression, tenant_formatter = _tenancy(args, where)
    return DestinationConfig(name, kind, function.strip(), batching, formatter, int(in_flight), tenant_id,
                             expression, tenant_formatter)


def _microvm_destination(raw: dict, args: dict, where: str, name: str, formatter: str) -> DestinationConfig:
    """A MicroVM image destination: one instance per tenant (the image and the instances' policy)."""
    if "Function" in raw:
        raise ConfigError(f"{where}.Function", "a microvm destination names an Image, not a Function")
    image = raw.get("Image")
    if not isinstance(image, str) or not image.strip():
        raise ConfigError(f"{where}.Image", "names the MicroVM image to run for each tenant (its name or ARN)")
    _no_unknown(args, f"{where}.Arguments.", MICROVM_ARGUMENTS)
    tenant_id, expression, tenant_formatter = _tenancy(args, where)
    port = args.get("Port", MICROVM_DEFAULT_PORT)
    if not _is_int(port) or not 1 <= port <= 65535:
        raise ConfigError(f"{where}.Arguments.Port", f"must be the instance's port, 1-65535 (got {port!r})")
    duration = args.get("MaxDuration", MICROVM_MAX_DURATION)
    if not _is_int(duration) or not 1 <= duration <= MICROVM_MAX_DURATION:
        raise ConfigError(f"{where}.Arguments.MaxDuration", f"must be an integer number of seconds from 1 to "
                          f"{MICROVM_MAX_DURATION} (8 hours) (got {duration!r})")
    max_idle = args.get("MaxIdle")
    max_suspended = args.get("MaxSuspended")
    if max_idle is not None and (not _is_int(max_idle) or not 1 <= max_idle <= MICROVM_MAX_DURATION):
        raise ConfigError(f"{where}.Arguments.MaxIdle", f"must be an integer number of seconds from 1 (the server's "
                          f"minimum applies, 60 by default) to {MICROVM_MAX_DURATION} (got {max_idle!r})")
    if max_suspended is not None:
        if max_idle is None:
            raise ConfigError(f"{where}.Arguments.MaxSuspended", "only applies with MaxIdle (an instance is "
                              "suspended after MaxIdle seconds without packets); give MaxIdle too")
        if not _is_int(max_suspended) or not 0 <= max_suspended <= MICROVM_MAX_DURATION:
            raise ConfigError(f"{where}.Arguments.MaxSuspended", f"must be an integer number of seconds from 0 "
                              f"(terminate on suspend) to {MICROVM_MAX_DURATION} (got {max_suspended!r})")
    elif max_idle is not None:
        max_suspended = duration
    auto_resume = args.get("AutoResume", True)
    if not isinstance(auto_resume, bool):
        raise ConfigError(f"{where}.Arguments.AutoResume", f"must be true or false (got {auto_resume!r})")
    delivery = args.get("Delivery", "udp")
    if delivery not in MICROVM_DELIVERIES:
        raise ConfigError(f"{where}.Arguments.Delivery", f"must be udp (datagrams to the instance's Port) or http "
                          f"(POSTs of {{\"Messages\": [...]}} to it) (got {delivery!r})")
    if "MaxInFlightBatches" in raw:
        raise ConfigError(f"{where}.MaxInFlightBatches", "does not apply to a microvm destination (each tenant's "
                          "instance takes one POST at a time); remove it")
    for key in ("Batching", "Formatter"):
        if key in raw and delivery != "http":
            raise ConfigError(f"{where}.{key}", "applies only with Arguments.Delivery \"http\" (with udp, each "
                              "packet is one datagram, as it came); remove it or set Delivery to http")
    batching = _batching(raw.get("Batching"), f"{where}.Batching", "function")
    return DestinationConfig(name, "microvm", None, batching, formatter, 1, tenant_id, expression,
                             tenant_formatter, image=image.strip(), port=int(port), max_duration=int(duration),
                             max_idle=max_idle, max_suspended=max_suspended, auto_resume=auto_resume,
                             delivery=delivery)


def _tenancy(args: dict, where: str) -> tuple[str | None, str | None, str]:
    """(TenantId, TenantIdExpression, TenantIdFormatter) of a destination's Arguments, checked."""
    tenant_id = args.get("TenantId")
    expression = args.get("TenantIdExpression")
    tenant_formatter = args.get("TenantIdFormatter", "utf8")
    if tenant_id is not None and expression is not None:
        raise ConfigError(f"{where}.Arguments", "give TenantId (one tenant for every packet) or "
                          "TenantIdExpression (a tenant per packet), not both")
    if tenant_id is not None and (not isinstance(tenant_id, str) or not valid_tenant_id(tenant_id)):
        raise ConfigError(f"{where}.Arguments.TenantId", f"must be a tenant id as X-Amz-Tenant-Id takes it: "
                          f"1-256 characters matching {TENANT_ID_PATTERN} (got {tenant_id!r})")
    if expression is not None:
        if not isinstance(expression, str):
            raise ConfigError(f"{where}.Arguments.TenantIdExpression", "must be a BREX string, e.g. \"[0:4]\"")
        try:
            brex.compile(expression)
        except brex.BrexSyntaxError as exc:
            raise ConfigError(f"{where}.Arguments.TenantIdExpression",
                              f"{exc} (in {expression!r})") from None
    if tenant_formatter not in FORMATTERS:
        raise ConfigError(f"{where}.Arguments.TenantIdFormatter",
                          f"must be one of {', '.join(FORMATTERS)} (got {tenant_formatter!r})")
    return tenant_id, expression, tenant_formatter


def _batching(raw: object, where: str, kind: str) -> Batching:
    if raw is None:
        return Batching()
    if not isinstance(raw, dict):
        raise ConfigError(where, "must be an object like {\"Count\": 100, \"TimeoutInSeconds\": 0.05}")
    _no_unknown(raw, where + ".", {"Count", "TimeoutInSeconds", "SizeInMb"})
    count = raw.get("Count")
    if count is not None and (not _is_int(count) or not 1 <= count <= MAX_BATCH_COUNT):
        raise ConfigError(f"{where}.Count", f"must be an integer from 1 to {MAX_BATCH_COUNT} (got {count!r})")
    timeout = raw.get("TimeoutInSeconds", 0)
    if not _is_number(timeout) or not 0 <= timeout <= MAX_BATCH_TIMEOUT_S:
        raise ConfigError(f"{where}.TimeoutInSeconds", f"must be a number of seconds from 0 (no window) to "
                          f"{MAX_BATCH_TIMEOUT_S:g} (got {timeout!r})")
    size = raw.get("SizeInMb")
    limit = 1.0 if kind == "function-async" else 6.0   # Lambda's Event and RequestResponse payload limits
    if size is not None and (not _is_number(size) or not 0 < size <= limit):
        raise ConfigError(f"{where}.SizeInMb", f"must be a number above 0 and at most {limit:g} (the "
                          f"{'Event' if limit == 1.0 else 'RequestResponse'} payload limit) (got {size!r})")
    return Batching(int(count) if count is not None else None, float(timeout),
                    float(size) if size is not None else None)


def valid_tenant_id(value: str) -> bool:
    """The rule X-Amz-Tenant-Id follows (api/validation.py), as a yes/no."""
    try:
        validation.tenant_id(value)
    except AwsError:
        return False
    return True


def _no_unknown(doc: dict, prefix: str, known: set[str]) -> None:
    for key in doc:
        if key not in known:
            raise ConfigError(f"{prefix}{key}", f"unknown field (known: {', '.join(sorted(known))})")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))
