"""What the dashboard shows, read from the parts' own state (nothing here is stored or counted): functions with their
configuration, versions, URLs, concurrency, counters and environments; MicroVMs; UDP listeners; the async queue.

The UDP gateway is another front end, so it comes in through UdpView (a Protocol the server's UdpGateway satisfies),
not by import."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

from lamina.dispatch.environment import State
from lamina.functions.concurrency import ConcurrencyService
from lamina.functions.log_groups import LogGroupService
from lamina.functions.registry import Function, FunctionService
from lamina.functions.urls import FunctionUrlService
from lamina.microvm.manager import MicrovmManager


class UdpView(Protocol):
    def list(self) -> list[dict]:
        """Each listener's document: Name, Endpoint, State, Metrics, Destinations (each with its Metrics)."""
        ...


@dataclass
class Counters:
    invocations: int = 0
    errors: int = 0
    throttles: int = 0
    duration_ms: float = 0.0
    starts: int = 0

    @property
    def mean_ms(self) -> float | None:
        return self.duration_ms / self.invocations if self.invocations else None


@dataclass
class FunctionRow:
    name: str
    runtime: str
    state: str
    memory: int
    timeout: int
    handler: str
    last_modified: str
    versions: list[str]
    aliases: list[tuple[str, str]]                 # (name, description of where it points)
    urls: list[tuple[str, str, str]]              # (qualifier, url, auth type)
    reserved: int | None
    provisioned: dict[str, int]                   # version -> environments
    inflight: int
    envs: dict[str, int] = field(default_factory=dict)   # state -> count
    counters: Counters = field(default_factory=Counters)
    config: dict = field(default_factory=dict)


@dataclass
class Dashboard:
    functions: FunctionService
    urls: FunctionUrlService
    concurrency: ConcurrencyService
    microvms: MicrovmManager | None
    log_groups: LogGroupService
    udp: UdpView | None = None

    # ------------------------------------------------------------------ functions

    def function_rows(self) -> list[FunctionRow]:
        return [self.function_row(fn) for _, fn in sorted(self.functions.functions.items())]

    def function_row(self, fn: Function) -> FunctionRow:
        d = self.functions.dispatcher
        cfg = fn.config
        aliases = [(a.name, a.function_version + "".join(f" + {v} ({w:.0%})" for v, w in a.weights.items()))
                   for a in sorted(fn.aliases.values(), key=lambda a: a.name)]
        urls = [(u.qualifier or "$LATEST", self.urls.address(u), u.auth_type)
                for u in sorted(self.urls.by_id.values(), key=lambda u: u.qualifier or "")
                if u.function_name == fn.name]
        prefix = fn.name + ":"
        provisioned = {k[len(prefix):]: n for k, n in d.provisioned.items() if k.startswith(prefix)}
        row = FunctionRow(fn.name, cfg.get("Runtime") or cfg.get("PackageType", ""), fn.state,
                          cfg.get("MemorySize", 0), cfg.get("Timeout", 0), cfg.get("Handler", ""),
                          cfg.get("LastModified", ""), ["$LATEST", *sorted(fn.versions, key=int)], aliases, urls,
                          self.concurrency.reserved(fn.name), provisioned, d.inflight.get(fn.name, 0), config=cfg)
        row.envs = self.environments(fn.name)
        row.counters = self.counters(fn.name)
        return row

    def environments(self, name: str) -> dict[str, int]:
        out = {"busy": 0, "warm": 0, "frozen": 0, "starting": 0}
        for pool in list(self.functions.dispatcher.pools.values()):
            if pool.spec.name != name:
                continue
            for env in list(pool.envs):
                if env.state is State.BUSY:
                    out["busy"] += 1
                elif env.state is State.STARTING:
                    out["starting"] += 1
                elif env.state is State.IDLE:
                    out["frozen" if env.frozen else "warm"] += 1
        return out

    def counters(self, name: str) -> Counters:
        c = Counters()
        prefix = name + ":"
        for key, st in list((self.functions.dispatcher.stats or {}).items()):
            if key.startswith(prefix):
                c.invocations += st.invocations
                c.errors += st.errors
                c.throttles += sum(st.throttles.values())
                c.duration_ms += st.durations.sum_ms
                c.starts += st.starts
        return c

    def stats(self) -> dict:
        """Counters for the live charts and rates (the browser turns them into per-second rates)."""
        out: dict = {"time": time.time(), "functions": {}, "udp": {}}
        for name in list(self.functions.functions):
            c = self.counters(name)
            out["functions"][name] = {"invocations": c.invocations, "errors": c.errors, "throttles": c.throttles,
                                      "duration_ms": round(c.duration_ms, 3), "envs": self.environments(name),
                                      "inflight": self.functions.dispatcher.inflight.get(name, 0)}
        for listener in self.udp_listeners():
            m = listener.get("Metrics", {})
            out["udp"][listener.get("Id", "")] = {"packets_in": m.get("PacketsIn", 0),
                                                   "packets_out": m.get("PacketsOut", 0),
                                                   "bytes_in": m.get("BytesIn", 0)}
        return out

    def logs(self, name: str, pattern: str, limit: int = 200) -> list[dict]:
        """The newest `limit` records of a function matching a filter pattern, oldest first."""
        if not self.functions.logs.exists(name):
            return []
        events = self.log_groups.filter_log_events({"logGroupName": f"/aws/lambda/{name}",
                                                    "filterPattern": pattern})["events"]
        return events[-limit:]

    def pending_events(self, name: str) -> list[dict]:
        sink = self.functions.event_sink
        return sink.pending(name, 50) if sink is not None else []

    def async_stats(self) -> dict | None:
        sink = self.functions.event_sink
        return sink.stats() if sink is not None else None

    # ------------------------------------------------------------------ the rest

    def server(self) -> dict:
        d = self.functions.dispatcher
        return {"sandbox": d.backend.name, "isolated": d.backend.isolated, "environments": d.environments,
                "inflight": d.total_inflight, "limit": d.max_environments, "functions": len(self.functions.functions)}

    def microvm_rows(self) -> list[dict]:
        if self.microvms is None:
            return []
        rows = []
        for mvm in sorted(self.microvms.instances.values(), key=lambda m: float(m.doc.get("startedAt") or 0),
                          reverse=True):
            doc = mvm.doc
            rows.append({"id": mvm.microvm_id, "image": mvm.image_name, "version": doc.get("imageVersion", ""),
                         "state": mvm.state, "reason": doc.get("stateReason", ""),
                         "started": _when(doc.get("startedAt")),
                         "memory": mvm.memory_mib, "in_flight": mvm.in_flight})
        return rows

    def microvm_images(self) -> list[dict]:
        if self.microvms is None:
            return []
        return [{"name": img.name, "state": img.config.get("state", ""), "versions": len(img.versions)}
                for img in sorted(self.microvms.images.images.values(), key=lambda i: i.name)]

    def udp_listeners(self) -> list[dict]:
        return self.udp.list() if self.udp is not None else []


def _when(value: object) -> str:
    """A timestamp the APIs give as epoch seconds (or already as text), as UTC date and time."""
    if isinstance(value, (int, float)):
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(value))
    return str(value or "")
