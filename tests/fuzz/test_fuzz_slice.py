"""A short, bounded slice of the botocore-model fuzzer (botocore_fuzz.py) against the session's server: every
AWS-API operation Lamina serves, a few generated cases each, none may get a 5xx, a dropped connection or no answer.
A server of its own: the cases create queues, VPCs and buses with generated names. The full run is the script itself
(see its docstring)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import botocore_fuzz  # noqa: E402 - the script beside this file


def test_generated_bad_input_never_gets_a_5xx(lamina_factory) -> None:
    endpoint = lamina_factory().endpoint
    report = botocore_fuzz.fuzz(endpoint, list(botocore_fuzz.SERVICES), cases=2, seconds=90, seed=20)
    assert len(report.operations) > 150 and report.cases > 200, (len(report.operations), report.cases)
    assert not report.findings, "\n".join(f"{f['operation']}: {f['status']} {f['params']}" for f in report.findings)


def test_broken_signatures_and_bad_input_on_a_keyed_server(lamina_factory) -> None:
    endpoint = lamina_factory(env={"LAMINA_CREDENTIALS": "test:test"}).endpoint
    report = botocore_fuzz.fuzz(endpoint, list(botocore_fuzz.SERVICES), cases=1, seconds=60, seed=21,
                                break_signatures=True)
    assert report.signatures_broken > 10 and report.cases > 100, (report.signatures_broken, report.cases)
    assert not report.findings, "\n".join(f"{f['operation']}: {f['status']} {f['params']}" for f in report.findings)
