#!/usr/bin/env python3
"""Fuzz every AWS-API operation Lamina serves with inputs generated from botocore's own service models: each case is
an operation's input shape filled from a seeded generator (valid values, wrong types, huge and empty values,
unicode, path traversal and injection strings in names), serialized by botocore's serializer for that protocol,
SigV4-signed and sent; some are then broken on the wire (truncated body, wrong content type, a body that is not the
protocol's).
Bad input must get a 4xx: a 5xx, a dropped connection or no answer within the timeout is a finding.

    .venv/bin/python tests/fuzz/botocore_fuzz.py [--endpoint URL] [--cases N] [--seconds S] [--seed N]
                                                  [--services lambda,sqs,...] [--keyed] [--json]

Without --endpoint it starts its own `lamina serve` (loopback, temporary data dir) and stops it; --keyed gives that
server a key (signatures verified) and breaks one case's signature in four (Authorization, X-Amz-Date). Bounded: at most
--cases cases per operation and --seconds in all. Prints operations covered, cases tried and every finding; exit 1
on a finding. tests/fuzz/test_fuzz_slice.py runs a short slice in `make test`.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, prepare_request_dict
from botocore.credentials import Credentials
from botocore.model import OperationModel, Shape
from botocore.serialize import create_serializer

REGION = "us-east-1"
CREDENTIALS = Credentials("test", "test")
HERE = Path(__file__).resolve().parent
SQS_QUERY_MODEL = HERE.parent / "compat" / "data" / "sqs-query"
# Operations Lamina serves per service model (None: all of the model's; the others answer "unknown operation",
# which is a 4xx too, but fuzzing 800 EC2 operations Lamina never heard of finds nothing).
SERVICES: dict[str, frozenset[str] | None] = {
    "lambda": None,
    "lambda-microvms": None,
    "sqs": None,
    "sqs-query": None,
    "logs": frozenset({"DescribeLogGroups", "DescribeLogStreams", "GetLogEvents", "FilterLogEvents",
                       "PutRetentionPolicy", "DeleteRetentionPolicy", "DeleteLogGroup"}),
    "ec2": frozenset({"CreateVpc", "DescribeVpcs", "DeleteVpc", "CreateSubnet", "DescribeSubnets", "DeleteSubnet",
                      "CreateSecurityGroup", "DescribeSecurityGroups", "DeleteSecurityGroup",
                      "AuthorizeSecurityGroupIngress", "AuthorizeSecurityGroupEgress", "RevokeSecurityGroupIngress",
                      "RevokeSecurityGroupEgress", "DescribeNetworkInterfaces"}),
    "events": None,
    "scheduler": None,
}
# Operations whose valid forms wait on purpose (long polls, streams), kept out of a bounded run.
SKIP = {("sqs", "ReceiveMessage"), ("sqs-query", "ReceiveMessage"), ("logs", "StartLiveTail"),
        ("lambda", "InvokeWithResponseStream")}
NASTY = ["", " ", "../../../../etc/passwd", "..", "%2e%2e%2f", "a/b", "a\x00b", "\u202e\u0645\u0631\u062d\u0628\u0627",
         "💥" * 40, "'; DROP TABLE functions; --", "${jndi:ldap://x}", "<xml>&amp;</xml>", "\r\nX-Injected: 1",
         "arn:aws:lambda:us-east-1:000000000000:function:../../x", "A" * 70000, "-1", "NaN", "null", "{}", "[]"]


@dataclass
class Report:
    operations: set[str] = field(default_factory=set)
    cases: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    findings: list[dict[str, Any]] = field(default_factory=list)
    unserializable: int = 0   # cases botocore's serializer or http.client would not write
    signatures_broken: int = 0


# ------------------------------------------------------------------ values from shapes


def _text(rng: random.Random, low: int, high: int) -> str:
    alphabet = rng.choice(["abcXYZ019-_", "abc/.:%*?#&=+ ", "\u00e9\u4e2d\U0001f600\u202e\x00\x7f\n\t"])
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(low, max(low, high))))


def _wrong(rng: random.Random) -> Any:
    return rng.choice([rng.randint(-2**63, 2**63), float("nan"), 1e308, True, None, [1, "a"], {"k": 1}, "x" * 5])


def _value(shape: Shape, rng: random.Random, depth: int = 0) -> Any:
    """A value for `shape`: usually of its type and within its constraints, sometimes not."""
    r = rng.randrange(100)
    if r < 6:
        return rng.choice(NASTY)
    if r < 9:
        return _wrong(rng)
    kind = shape.type_name
    if kind == "structure":
        if depth > 4:
            return {}
        required = set(shape.required_members)
        return {name: _value(member, rng, depth + 1) for name, member in shape.members.items()
                if name in required or rng.randrange(3) == 0}
    if kind == "list":
        return [_value(shape.member, rng, depth + 1) for _ in range(rng.randint(0, 3 if depth < 3 else 0))]
    if kind == "map":
        return {_text(rng, 1, 8): _value(shape.value, rng, depth + 1) for _ in range(rng.randint(0, 2))}
    if kind == "string":
        if shape.enum and rng.randrange(4):
            return rng.choice(shape.enum)
        low = shape.metadata.get("min", 0)
        high = min(shape.metadata.get("max", 64), 300)
        return _text(rng, min(low, high), high) or "x"
    if kind in ("integer", "long"):
        low, high = shape.metadata.get("min", -10), shape.metadata.get("max", 10**6)
        return rng.randint(min(low, high) - 2, max(low, high) + 2)
    if kind in ("float", "double"):
        return rng.uniform(-1e6, 1e6)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "blob":
        return os.urandom(rng.randint(0, 64))
    if kind == "timestamp":
        return rng.randint(0, 2**33)
    return None


# ------------------------------------------------------------------ requests


def _models(names: list[str]) -> list[tuple[str, Any]]:
    out = []
    for name in names:
        session = botocore.session.get_session()
        if name == "sqs-query":
            if not SQS_QUERY_MODEL.is_dir():
                continue
            session.get_component("data_loader").search_paths.insert(0, str(SQS_QUERY_MODEL))
            model = session.get_service_model("sqs")
        else:
            model = session.get_service_model(name)
        out.append((name, model))
    return out


def _request(endpoint: str, model: Any, op: OperationModel, params: Any) -> AWSRequest | None:
    serializer = create_serializer(model.protocol, include_validation=False)
    try:
        request_dict = serializer.serialize_to_request(params, op)
        prepare_request_dict(request_dict, endpoint)
    except Exception:
        return None   # botocore's serializer cannot write it at all (e.g. a dict where a list goes)
    if not isinstance(request_dict["body"], bytes | bytearray | str | None):
        return None   # e.g. a blob payload member given a number: nothing to put on the wire
    return AWSRequest(method=request_dict["method"], url=request_dict["url"], data=request_dict["body"],
                      headers=dict(request_dict["headers"]))


def _mangle(request: AWSRequest, how: int) -> None:
    body = request.data if isinstance(request.data, bytes) else str(request.data or "").encode()
    if how == 1 and body:
        request.data = body[: len(body) // 2]
    elif how == 2:
        request.headers["Content-Type"] = "text/plain; charset=\u00ff"
    elif how == 3:
        request.data = b"\xff\xfe{not json or a form" + os.urandom(16)
    elif how == 4:
        request.data = b"{" * 5000


_AUTH_MANGLES = (
    lambda a: a.replace("Signature=", "Signature=0"),
    lambda a: a.replace("Credential=", "Credential=x/"),
    lambda a: a.split(",")[0],
    lambda a: a.replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA1"),
    lambda a: a + "\u00e9" * 3,
    lambda a: "",
    lambda a: a.replace("/us-east-1/", "/us-east-1/" * 50),
)


def _send(endpoint: str, request: AWSRequest, signing_name: str, timeout: float,
          rng: random.Random | None = None) -> int | str | None:
    """The status, a finding's description, or None when http.client itself refuses to send it (a header with a
    line break). With rng, the signature is broken (Authorization, X-Amz-Date)."""
    if isinstance(request.data, str):
        request.data = request.data.encode()
    SigV4Auth(CREDENTIALS, signing_name, REGION).add_auth(request)
    if rng is not None:
        if rng.randrange(2):
            request.headers.replace_header("Authorization", rng.choice(_AUTH_MANGLES)(request.headers["Authorization"]))
        else:
            request.headers.replace_header("X-Amz-Date", rng.choice(["", "2026", "99999999T999999Z", "x" * 300]))
    prepared = request.prepare()
    host, port = endpoint.split("://", 1)[1].rstrip("/").rsplit(":", 1)
    path = prepared.url.split(endpoint.rstrip("/"), 1)[-1] or "/"
    headers = {k: v.encode("utf-8") if isinstance(v, str) else v for k, v in prepared.headers.items()}
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        try:
            conn.request(prepared.method, path.encode("utf-8").decode("latin-1"), body=prepared.body,
                         headers=headers)
        except (ValueError, UnicodeError):
            return None
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except TimeoutError:
        return "timeout"
    except (ConnectionError, http.client.HTTPException) as exc:
        return f"dropped: {type(exc).__name__}"
    finally:
        conn.close()


def fuzz(endpoint: str, services: list[str], cases: int, seconds: float, seed: int, timeout: float = 10.0,
         break_signatures: bool = False) -> Report:
    report = Report()
    rng = random.Random(seed)
    deadline = time.monotonic() + seconds
    plan = []
    for name, model in _models(services):
        wanted = SERVICES.get(name)
        for op_name in model.operation_names:
            if (wanted is None or op_name in wanted) and (name, op_name) not in SKIP:
                plan.append((name, model, model.operation_model(op_name)))
    rng.shuffle(plan)
    for round_ in range(cases):
        for name, model, op in plan:
            if time.monotonic() > deadline:
                return report
            report.operations.add(f"{name}:{op.name}")
            shape = op.input_shape
            params = _value(shape, rng) if shape is not None else {}
            request = _request(endpoint, model, op, params)
            if request is None:
                report.unserializable += 1
                continue
            how = rng.randrange(6) if round_ else 0
            _mangle(request, how)
            broken = break_signatures and rng.randrange(4) == 0
            status = _send(endpoint, request, model.signing_name or name, timeout, rng if broken else None)
            report.signatures_broken += broken
            if status is None:
                report.unserializable += 1
                continue
            report.cases += 1
            if isinstance(status, int):
                report.statuses[status] += 1
            if not isinstance(status, int) or status >= 500:
                report.findings.append({"operation": f"{name}:{op.name}", "status": status, "mangled": how,
                                        "params": _short(params)})
    return report


def _short(value: Any) -> str:
    text = json.dumps(value, default=repr, ensure_ascii=True)
    return text if len(text) < 400 else text[:400] + "..."


# ------------------------------------------------------------------ a server of its own


@contextlib.contextmanager
def own_server(credentials: str | None = None) -> Iterator[str]:
    tmp = Path(tempfile.mkdtemp(prefix="lamina-fuzz-"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAMINA_")}
    if credentials:
        env["LAMINA_CREDENTIALS"] = credentials
    log = open(tmp / "server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "lamina", "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--data-dir", str(tmp / "data"), "--sandbox", "process"], stdout=log,
                            stderr=subprocess.STDOUT, cwd=tmp, env=env, start_new_session=True)
    try:
        endpoint = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/lamina/v1/health")
                if conn.getresponse().status == 200:
                    break
            if proc.poll() is not None:
                raise SystemExit((tmp / "server.log").read_text(errors="replace"))
            time.sleep(0.2)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint", help="a running server (default: start one)")
    parser.add_argument("--cases", type=int, default=20, help="cases per operation")
    parser.add_argument("--seconds", type=float, default=300.0, help="at most this long in all")
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--services", default=",".join(SERVICES))
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keyed", action="store_true",
                        help="the server started verifies signatures (key test:test), and one case in four has its "
                             "signature broken")
    args = parser.parse_args()
    services = [s for s in args.services.split(",") if s]
    with contextlib.ExitStack() as stack:
        endpoint = args.endpoint or stack.enter_context(own_server("test:test" if args.keyed else None))
        report = fuzz(endpoint, services, args.cases, args.seconds, args.seed, break_signatures=args.keyed)
    summary = {"seed": args.seed, "operations": len(report.operations), "cases": report.cases,
               "statuses": dict(sorted(report.statuses.items())), "unserializable": report.unserializable,
               "signatures_broken": report.signatures_broken,
               "findings": report.findings}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"seed {args.seed}: {len(report.operations)} operations, {report.cases} cases, statuses "
              f"{dict(sorted(report.statuses.items()))}, {report.unserializable} not writable by botocore/http.client")
        for f in report.findings:
            print(f"  FINDING {f['operation']}: {f['status']} (mangled {f['mangled']}) {f['params']}")
    return 1 if report.findings else 0


if __name__ == "__main__":
    sys.exit(main())
