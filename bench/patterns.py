"""Event patterns: how fast a compiled EventBridge pattern matches, and PutEvents -> rule -> function throughput.

- **Matching, evaluations/s**: a 10-field pattern against a ~1 KB event (EventBridge's envelope with an order in
  `detail`), compiled once with eventpattern.compile_pattern, beside a hand-written Python function that compares
  the same fields of the same event (dict lookups and ==, or the operator's equivalent) in the same run. Two
  patterns: exact values only, and a mix of operators (prefix, numeric range, anything-but, exists,
  equals-ignore-case, cidr). Both matching and non-matching events. Target: >= 0.5x the hand-written baseline.
- **PutEvents -> matched rule -> function start, events/s** (`--putevents`): its own `lamina serve`, a custom bus
  with `--rules` rules (one matches each event; the others test other sources), the matching rule targeting a
  trivial function; `--clients` processes (processes, not threads: boto3 is CPU-bound under one GIL) each with a
  boto3 events client (unsigned: SigV4 off, as the other benches' hot loops) send PutEvents batches of 10 for
  `--duration` s. Every client has imported boto3 and made its first call (its event matches no rule) before the
  clock starts, and all start together. events/s = handler runs that succeeded (health's async `succeeded`) over
  the time from that start until they are all done. PutEvents answers once the matched function's events are
  committed to its async queue. Also printed, per event: the server process's CPU (all its threads, PutEvents to
  the run recorded), its event loop thread's alone, the server with its environments (the handlers' processes),
  and the client processes' (their send loops); and how many cores the whole machine was busy: on two cores the
  clients' and the server tree's sum bound the rate, and a busy machine inflates them less than the rate.
  `--no-validation` makes the clients' boto3 skip its parameter validation (~10% of their CPU). Target: >= 5,000
  events/s.

    .venv/bin/python bench/patterns.py [--seconds 1.0] [--putevents] [--clients 8] [--duration 8] [--rules 100]
        [--no-validation] [--json]
"""

from __future__ import annotations

import argparse
import io
import ipaddress
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
import urllib.request
import uuid
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from _common import cpu_seconds, run_and_report, start_lamina, stop_process, tree_cpu_seconds  # noqa: E402
from lamina.eventpattern import compile_pattern  # noqa: E402

ROLE = "arn:aws:iam::000000000000:role/lamina"


class BenchError(Exception):
    pass


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def make_event(total: float = 250.5, tier: str = "gold") -> dict:
    event = {"version": "0", "id": str(uuid.uuid4()), "detail-type": "OrderPlaced", "source": "shop.orders",
             "account": "123456789012", "time": "2026-12-07T03:00:00Z", "region": "eu-central-1",
             "resources": ["arn:aws:shop:eu-central-1:123456789012:order/1"],
             "detail": {"orderId": "o-12345", "status": "PLACED", "channel": "web-desktop", "currency": "EUR",
                        "total": total, "ip": "10.0.0.7", "customer": {"id": "c-9", "tier": tier, "country": "DE"},
                        "items": [{"sku": f"sku-{i}", "qty": i, "price": 9.99} for i in range(6)],
                        "note": "x" * 200}}
    return event


EXACT = {"source": ["shop.orders"], "detail-type": ["OrderPlaced"], "account": ["123456789012"],
         "region": ["eu-central-1"],
         "detail": {"status": ["PLACED"], "channel": ["web-desktop"], "currency": ["EUR"], "orderId": ["o-12345"],
                    "customer": {"tier": ["gold"], "country": ["DE"]}}}


def exact_by_hand(e: dict) -> bool:
    d = e.get("detail")
    if not isinstance(d, dict):
        return False
    c = d.get("customer")
    return (e.get("source") == "shop.orders" and e.get("detail-type") == "OrderPlaced"
            and e.get("account") == "123456789012" and e.get("region") == "eu-central-1"
            and d.get("status") == "PLACED" and d.get("channel") == "web-desktop" and d.get("currency") == "EUR"
            and d.get("orderId") == "o-12345" and isinstance(c, dict) and c.get("tier") == "gold"
            and c.get("country") == "DE")


MIXED = {"source": [{"prefix": "shop."}], "detail-type": ["OrderPlaced", "OrderUpdated"],
         "region": [{"anything-but": ["us-east-1", "us-west-2"]}], "account": [{"exists": True}],
         "detail": {"status": [{"equals-ignore-case": "placed"}], "channel": [{"prefix": "web"}],
                    "total": [{"numeric": [">", 100, "<=", 1000]}], "ip": [{"cidr": "10.0.0.0/24"}],
                    "customer": {"tier": ["gold", "platinum"], "country": [{"anything-but": "US"}]}}}
_NET = ipaddress.ip_network("10.0.0.0/24")


def mixed_by_hand(e: dict) -> bool:
    d = e.get("detail")
    if not isinstance(d, dict):
        return False
    c = d.get("customer")
    s, total, ip = e.get("source"), d.get("total"), d.get("ip")
    region, status, channel = e.get("region"), d.get("status"), d.get("channel")
    country = c.get("country") if isinstance(c, dict) else None
    return (isinstance(s, str) and s.startswith("shop.") and e.get("detail-type") in ("OrderPlaced", "OrderUpdated")
            and isinstance(region, str) and region not in ("us-east-1", "us-west-2") and "account" in e
            and isinstance(status, str) and status.casefold() == "placed"
            and isinstance(channel, str) and channel.startswith("web")
            and isinstance(total, int | float) and 100 < total <= 1000
            and isinstance(ip, str) and ipaddress.ip_address(ip) in _NET
            and isinstance(c, dict) and c.get("tier") in ("gold", "platinum")
            and isinstance(country, str) and country != "US")


def rate(fn, events: list[dict], seconds: float) -> float:
    n = 0
    start = time.perf_counter()
    end = start + seconds
    while time.perf_counter() < end:
        for e in events:
            fn(e)
        n += len(events)
    return n / (time.perf_counter() - start)


def matching(seconds: float) -> dict:
    hit, miss = make_event(), make_event(total=5.0, tier="bronze")
    assert len(json.dumps(hit)) >= 900
    out = {}
    for label, pattern, by_hand in (("exact", EXACT, exact_by_hand), ("mixed", MIXED, mixed_by_hand)):
        compiled = compile_pattern(pattern)
        for events in ([hit], [miss]):
            assert compiled.matches(events[0]) == by_hand(events[0])
        events = [hit, miss]
        rates = {"baseline": [], "compiled": []}
        for _ in range(3):   # alternate, best of three each
            rates["baseline"].append(rate(by_hand, events, seconds))
            rates["compiled"].append(rate(compiled.matches, events, seconds))
        base, comp = max(rates["baseline"]), max(rates["compiled"])
        out[label] = {"compiled_per_s": round(comp), "hand_written_per_s": round(base), "ratio": round(comp / base, 2)}
    return out


# ------------------------------------------------------------------ PutEvents -> function


def client(endpoint: str, service: str, signed: bool = True, validate: bool = True):
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config
    extra = {} if signed else {"signature_version": UNSIGNED}   # SigV4 off, as in the other benches' hot loops
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bench",
                        aws_secret_access_key="bench",
                        config=Config(retries={"total_max_attempts": 1}, read_timeout=65, max_pool_connections=4,
                                      parameter_validation=validate, **extra))


def main_thread_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process's main thread (the server's event loop), from /proc/<pid>/task/<pid>/stat."""
    fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu_seconds() -> float:
    """CPU seconds every core of the machine spent busy (not idle or waiting on I/O), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def sender(endpoint: str, bus: str, seconds: float, validate: bool, ready, go, result) -> None:
    """One client process: boto3 imported, its client made and its first call done (botocore's models loaded; the
    event matches no rule) before `ready`; then PutEvents batches of 10 from `go` for `seconds`."""
    events = client(endpoint, "events", signed=False, validate=validate)
    entries = [{"EventBusName": bus, "Source": "bench.hit", "DetailType": "t", "Detail": json.dumps({"n": i})}
               for i in range(10)]
    events.put_events(Entries=[{**entries[0], "Source": "bench.warmup"}])
    ready.put(os.getpid())
    go.wait()
    sent = 0
    cpu = time.process_time()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        r = events.put_events(Entries=entries)
        sent += 10 - r["FailedEntryCount"]
    result.put((sent, time.process_time() - cpu))


def health(endpoint: str) -> dict:
    with urllib.request.urlopen(f"{endpoint}/lamina/v1/health", timeout=30) as resp:
        return json.loads(resp.read())


def putevents(args: argparse.Namespace) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="lamina-bench-patterns-"))
    proc, endpoint, _ = start_lamina(tmp, BenchError)
    try:
        lam, events = client(endpoint, "lambda"), client(endpoint, "events")
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("app.py", "def handler(event, context):\n    return None\n")
        fn = lam.create_function(FunctionName="bench-target", Runtime=f"python{sys.version_info[0]}."
                                 f"{sys.version_info[1]}", Handler="app.handler", Role=ROLE,
                                 Code={"ZipFile": buf.getvalue()})["FunctionArn"]
        lam.get_waiter("function_active_v2").wait(FunctionName="bench-target",
                                                  WaiterConfig={"Delay": 0.2, "MaxAttempts": 300})
        bus = "bench"
        events.create_event_bus(Name=bus)
        for i in range(args.rules):
            source = "bench.hit" if i == args.rules - 1 else f"bench.other{i}"
            events.put_rule(Name=f"r{i}", EventBusName=bus,
                            EventPattern=json.dumps({"source": [source], "detail": {"n": [{"numeric": [">=", 0]}]}}))
            if i == args.rules - 1:
                events.put_targets(Rule=f"r{i}", EventBusName=bus, Targets=[{"Id": "fn", "Arn": fn}])
        ctx = multiprocessing.get_context("spawn")
        ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
        procs = [ctx.Process(target=sender, args=(endpoint, bus, args.duration, not args.no_validation, ready, go,
                                                  results)) for _ in range(args.clients)]
        for p in procs:
            p.start()
        for _ in procs:   # every client warmed up (boto3 imported, its first call made) before the clock starts
            ready.get(timeout=120)
        before = health(endpoint)["async"]["succeeded"]
        cpu_before, tree_before = cpu_seconds(proc.pid), tree_cpu_seconds(proc.pid)
        loop_before = main_thread_cpu_seconds(proc.pid)
        machine_before = machine_cpu_seconds()
        start = time.monotonic()
        go.set()
        outcomes = [results.get(timeout=args.duration + 60) for _ in procs]
        put_seconds = time.monotonic() - start
        sent = sum(n for n, _ in outcomes)
        client_cpu = sum(cpu for _, cpu in outcomes)   # the client processes' CPU (boto3 included)
        for p in procs:
            p.join()
        deadline = time.monotonic() + 300
        done = 0
        while time.monotonic() < deadline:
            done = health(endpoint)["async"]["succeeded"] - before
            if done >= sent:
                break
            time.sleep(0.05)
        total_seconds = time.monotonic() - start
        server_cpu = cpu_seconds(proc.pid) - cpu_before
        loop_cpu = main_thread_cpu_seconds(proc.pid) - loop_before
        # the server and its environments (the handlers' processes; those reaped during the run are not counted)
        tree_cpu = tree_cpu_seconds(proc.pid) - tree_before
        machine_cpu = machine_cpu_seconds() - machine_before
        return {"rules": args.rules, "clients": args.clients, "events_sent": sent, "functions_run": done,
                "put_events_per_s": round(sent / put_seconds), "end_to_end_events_per_s": round(done / total_seconds),
                # the server process's CPU per event, PutEvents to the handler's run recorded (load-independent)
                "server_cpu_us_per_event": round(server_cpu / max(done, 1) * 1e6),
                "server_loop_cpu_us_per_event": round(loop_cpu / max(done, 1) * 1e6),
                "server_tree_cpu_us_per_event": round(tree_cpu / max(done, 1) * 1e6),
                "client_cpu_us_per_event": round(client_cpu / max(sent, 1) * 1e6),
                "machine_busy_cores": round(machine_cpu / total_seconds, 2),
                "validation": not args.no_validation, "load_average": os.getloadavg()[0]}
    finally:
        stop_process(proc)
        shutil.rmtree(tmp, ignore_errors=True)


def measure(args: argparse.Namespace) -> dict:
    out: dict = {"matching": matching(args.seconds)}
    if args.putevents:
        out["putevents"] = putevents(args)
    return out


def report(s: dict) -> None:
    print("Pattern matching, a 10-field pattern against a ~1 KB event (target >= 0.5x hand-written):")
    for label, r in s["matching"].items():
        print(f"  {label:6} compiled {r['compiled_per_s']:>10,}/s   hand-written {r['hand_written_per_s']:>10,}/s   "
              f"ratio {r['ratio']}")
    if "putevents" in s:
        p = s["putevents"]
        print(f"PutEvents -> rule -> function ({p['rules']} rules, {p['clients']} clients; target >= 5,000/s): "
              f"{p['events_sent']} events put at {p['put_events_per_s']}/s; {p['functions_run']} function runs, "
              f"{p['end_to_end_events_per_s']} events/s end to end; CPU per event: server "
              f"{p['server_cpu_us_per_event']} us (its event loop {p['server_loop_cpu_us_per_event']} us; with its "
              f"environments {p['server_tree_cpu_us_per_event']} us), "
              f"boto3 clients {p['client_cpu_us_per_event']} us; the machine busy "
              f"{p['machine_busy_cores']} cores; load average {p['load_average']:.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--putevents", action="store_true")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--rules", type=int, default=100)
    parser.add_argument("--no-validation", action="store_true",
                        help="the clients' boto3 without parameter validation (Config(parameter_validation=False))")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    return run_and_report(lambda: measure(args), lambda s: s, report, args.json, log, BenchError)


if __name__ == "__main__":
    sys.exit(main())
