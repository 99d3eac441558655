"""Queues: SQS throughput against moto's SQS server, and queue -> function through an event source mapping.

Starts its own `lamina serve` (free loopback port, temporary data dir, default `async_durability = fsync`: every
send is committed, WAL fsynced, before its 200) and moto's server (`moto[server]`: in memory, no durability) on
another free port, and measures in the same run:

- **SQS round trips, messages/s**: `--clients` processes, each with its own boto3 SQS client (the JSON protocol),
  loop SendMessageBatch (10 messages) -> ReceiveMessage (up to 10) -> DeleteMessageBatch for `--duration` s after
  a warm-up; a message counts once it was sent, received and deleted. Same clients, same machine, both servers.
  Target: Lamina >= 2x moto, while durable.
- **Queue -> function, messages/s**: `--esm-messages` messages are queued while a mapping (BatchSize 10, trivial
  handler) is disabled, then it is enabled; the time until the queue is empty (every batch invoked and deleted).
  Also with the producers running: the same number sent by `--clients` processes while the mapping consumes,
  from the first send until the queue is empty. Target: >= 5,000 messages/s.
- **Send -> handler start, idle**: `--latency-n` single SendMessage calls, one at a time, to a queue with an
  enabled mapping and a warm function; the handler prints `time.time()` when it starts, against the client's
  time just before its SendMessage (same host clock; the send's fsync included), measured first, on an idle
  server. Target: p50 <= 5 ms.

Only prints figures (exit 0 whether or not targets are met; 1 when the benchmark could not run).
The clients share the machine's 2 cores with the server under test, for both servers alike.

    .venv/bin/pip install 'moto[server]'      # once: the comparison server
    .venv/bin/python bench/queues.py [--duration 8] [--clients 4] [--esm-messages 20000] [--latency-n 300] [--json]
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
import zipfile
from pathlib import Path

import boto3
from botocore.config import Config

from _common import free_port, run_and_report, start_lamina, stop_process, wait_http_ok

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
ROLE = "arn:aws:iam::000000000000:role/lamina"
BODY = "x" * 100
TRIVIAL = "def handler(event, context):\n    return None\n"
TIMED = '''
import time
def handler(event, context):
    now = time.time()
    for r in event["Records"]:
        print("T " + r["body"] + " " + repr(now))
'''


class BenchError(Exception):
    pass


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def client(endpoint: str, service: str = "sqs"):
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bench",
                        aws_secret_access_key="bench",
                        config=Config(retries={"total_max_attempts": 1}, read_timeout=65, max_pool_connections=4))


# ------------------------------------------------------------------ client processes


def _round_trips(args: tuple[str, str, float, float]) -> int:
    """Send 10 -> receive -> delete, in a loop, for `duration` s after `warmup` s; messages deleted meanwhile."""
    endpoint, url, warmup, duration = args
    sqs = client(endpoint)
    entries = [{"Id": str(i), "MessageBody": BODY} for i in range(10)]
    start = time.monotonic()
    counting_from, end = start + warmup, start + warmup + duration
    done = 0
    while True:
        now = time.monotonic()
        if now >= end:
            return done
        sqs.send_message_batch(QueueUrl=url, Entries=entries)
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if got:
            sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                                                            for i, m in enumerate(got)])
            if now >= counting_from:
                done += len(got)


def _send(args: tuple[str, str, int]) -> int:
    endpoint, url, batches = args
    sqs = client(endpoint)
    entries = [{"Id": str(i), "MessageBody": BODY} for i in range(10)]
    for _ in range(batches):
        sqs.send_message_batch(QueueUrl=url, Entries=entries)
    return batches * 10


# ------------------------------------------------------------------ servers


def start_moto(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    try:
        import moto.server  # noqa: F401
    except ImportError:
        raise BenchError("moto's server is not installed: .venv/bin/pip install 'moto[server]'") from None
    port = free_port()
    out = tmp / "moto.log"
    with open(out, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)], stdout=fh,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    if not wait_http_ok(proc, HOST, port, "/moto-api/", 30):
        stop_process(proc)
        raise BenchError(f"moto server did not start:\n{out.read_text()[-3000:]}")
    return proc, f"http://{HOST}:{port}"


def round_trips(pool: multiprocessing.pool.Pool, endpoint: str, clients: int, duration: float) -> float:
    url = client(endpoint).create_queue(QueueName=f"rt-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    done = pool.map(_round_trips, [(endpoint, url, 2.0, duration)] * clients)
    return sum(done) / duration


def deploy(endpoint: str, code: str) -> str:
    lam = client(endpoint, "lambda")
    name = f"bench-{uuid.uuid4().hex[:8]}"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", code)
    lam.create_function(FunctionName=name, Runtime=f"python{sys.version_info[0]}.{sys.version_info[1]}",
                        Handler="app.handler", Role=ROLE, Code={"ZipFile": buf.getvalue()}, Timeout=10)
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 300})
    return name


def queue_with_mapping(endpoint: str, function: str, enabled: bool) -> tuple[str, str]:
    sqs = client(endpoint)
    url = sqs.create_queue(QueueName=f"esm-{uuid.uuid4().hex[:8]}", Attributes={"VisibilityTimeout": "60"})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    uuid_ = client(endpoint, "lambda").create_event_source_mapping(EventSourceArn=arn, FunctionName=function,
                                                                   BatchSize=10, Enabled=enabled)["UUID"]
    return url, uuid_


def wait_empty(endpoint: str, url: str, timeout: float = 300) -> float:
    sqs = client(endpoint)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        if a["ApproximateNumberOfMessages"] == a["ApproximateNumberOfMessagesNotVisible"] == "0":
            return time.monotonic()
        time.sleep(0.01)
    raise BenchError(f"the queue did not empty in {timeout} s")


def esm_throughput(pool: multiprocessing.pool.Pool, endpoint: str, clients: int, n: int) -> dict:
    name = deploy(endpoint, TRIVIAL)
    lam = client(endpoint, "lambda")
    batches = max(1, n // 10 // clients)
    url, mapping = queue_with_mapping(endpoint, name, enabled=False)
    pool.map(_send, [(endpoint, url, batches)] * clients)
    total = batches * 10 * clients
    start = time.monotonic()
    lam.update_event_source_mapping(UUID=mapping, Enabled=True)
    drained = total / (wait_empty(endpoint, url) - start)
    url2, _ = queue_with_mapping(endpoint, name, enabled=True)
    start = time.monotonic()
    pool.map(_send, [(endpoint, url2, batches)] * clients)
    live = total / (wait_empty(endpoint, url2) - start)
    return {"messages": total, "drain_per_s": round(drained), "with_producers_per_s": round(live)}


def esm_latency(endpoint: str, n: int) -> dict:
    name = deploy(endpoint, TIMED)
    url, _ = queue_with_mapping(endpoint, name, enabled=True)
    sqs = client(endpoint)
    sent: dict[str, float] = {}
    answered: dict[str, float] = {}
    rtt: list[float] = []
    for i in range(n + 5):
        key = f"m{i}"
        t = time.time()
        sqs.send_message(QueueUrl=url, MessageBody=key)
        if i >= 5:        # the first few warm the environment
            sent[key] = t
            answered[key] = time.time()
            rtt.append((answered[key] - t) * 1000)
        wait_empty(endpoint, url)
        time.sleep(0.005)
    seen: dict[str, float] = {}
    deadline = time.monotonic() + 30
    while len(seen) < len(sent) and time.monotonic() < deadline:
        with urllib.request.urlopen(f"{endpoint}/lamina/v1/functions/{name}/logs", timeout=30) as resp:
            for line in resp.read().splitlines():
                msg = json.loads(line).get("message", "")
                if msg.startswith("T "):
                    _, key, at = msg.split()
                    seen[key] = float(at)
        time.sleep(0.2)
    delays = sorted((seen[k] - t) * 1000 for k, t in sent.items() if k in seen)
    if not delays:
        raise BenchError("no handler start was logged")
    def pct(p: float) -> float:
        return round(delays[max(0, int(len(delays) * p) - 1)], 2)
    # What the push adds to the send's own round trip (boto3, HTTP, the commit and its fsync), per message: the
    # handler's start against the client having its 200 (negative: it started first). Load moves the round trip;
    # this part is the queue -> mapping -> function path alone.
    beyond = [(seen[k] - answered[k]) * 1000 for k in sent if k in seen]
    return {"n": len(delays), "p50_ms": round(statistics.median(delays), 2), "p90_ms": pct(0.9), "p99_ms": pct(0.99),
            "send_rtt_p50_ms": round(statistics.median(rtt), 2),
            "after_send_answered_p50_ms": round(statistics.median(beyond), 2)}


def measure(args: argparse.Namespace) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="lamina-bench-queues-"))
    procs: list[subprocess.Popen[bytes]] = []
    ctx = multiprocessing.get_context("spawn")
    try:
        moto_proc, moto_endpoint = start_moto(tmp)
        procs.append(moto_proc)
        lamina_proc, lamina_endpoint, lamina_log = start_lamina(tmp, BenchError)
        procs.append(lamina_proc)
        log(f"send -> handler start: {args.latency_n} messages, one at a time ...")
        latency = esm_latency(lamina_endpoint, args.latency_n)   # first, on an idle server
        with ctx.Pool(args.clients) as pool:
            log(f"round trips: moto, {args.clients} clients, {args.duration} s ...")
            moto_rate = round_trips(pool, moto_endpoint, args.clients, args.duration)
            log(f"round trips: lamina, {args.clients} clients, {args.duration} s ...")
            lamina_rate = round_trips(pool, lamina_endpoint, args.clients, args.duration)
            log(f"queue -> function: {args.esm_messages} messages ...")
            esm = esm_throughput(pool, lamina_endpoint, args.clients, args.esm_messages)
        if lamina_proc.poll() is not None:
            raise BenchError(f"lamina serve exited:\n{lamina_log.read_text()[-3000:]}")
        return {"round_trips": {"clients": args.clients, "duration_s": args.duration,
                                "lamina_per_s": round(lamina_rate), "moto_per_s": round(moto_rate),
                                "ratio": round(lamina_rate / moto_rate, 2) if moto_rate else None, "target_ratio": 2.0},
                "esm_throughput": {**esm, "target_per_s": 5000},
                "send_to_handler_start": {**latency, "target_p50_ms": 5.0}}
    finally:
        for proc in procs:
            stop_process(proc)
        shutil.rmtree(tmp, ignore_errors=True)


def report(s: dict) -> None:
    rt, esm, lat = s["round_trips"], s["esm_throughput"], s["send_to_handler_start"]
    print(f"SQS send+receive+delete, {rt['clients']} boto3 clients, {rt['duration_s']} s:")
    print(f"  lamina (durable, fsync): {rt['lamina_per_s']:>7} messages/s")
    print(f"  moto (in memory):        {rt['moto_per_s']:>7} messages/s")
    print(f"  ratio {rt['ratio']}x (target >= {rt['target_ratio']}x)")
    print(f"queue -> function (BatchSize 10, trivial handler), {esm['messages']} messages:")
    print(f"  queued, then drained:    {esm['drain_per_s']:>7} messages/s (target >= {esm['target_per_s']})")
    print(f"  while producers send:    {esm['with_producers_per_s']:>7} messages/s")
    print(f"send -> handler start, idle, {lat['n']} messages: p50 {lat['p50_ms']} ms (target <= "
          f"{lat['target_p50_ms']}), p90 {lat['p90_ms']} ms, p99 {lat['p99_ms']} ms")
    print(f"  (of which the SendMessage call itself, its fsync included: p50 {lat['send_rtt_p50_ms']} ms; the "
          f"handler starts {lat['after_send_answered_p50_ms']} ms p50 after the client has its 200: negative, before)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--esm-messages", type=int, default=20000)
    parser.add_argument("--latency-n", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    return run_and_report(lambda: measure(args), lambda s: s, report, args.json, log, BenchError)


if __name__ == "__main__":
    sys.exit(main())
