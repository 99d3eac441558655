"""Provisioned concurrency at admission (Dispatcher._admit): a version of a function without a reservation runs up
to its provisioned concurrency on its own, and that much is taken out of the unreserved pool everything else shares
(the function's other versions too); a function with a reservation has its provisioned concurrency inside the
reservation."""

from __future__ import annotations

import pytest

from lamina.dispatch.dispatcher import Dispatcher
from lamina.dispatch.invocation import Throttled
from lamina.dispatch.spec import pool_key


def _dispatcher(account: int) -> Dispatcher:
    return Dispatcher(backend=None, logs=None, max_environments=account)  # type: ignore[arg-type]


def _run(d: Dispatcher, name: str, n: int = 1, version: str = "1") -> None:
    """Admit n invocations of a version and count them in flight, as submit() does."""
    key = pool_key(name, version)
    for _ in range(n):
        d._admit(name, key)
        d.inflight[name] = d.inflight.get(name, 0) + 1
        d.key_inflight[key] = d.key_inflight.get(key, 0) + 1
        d.total_inflight += 1


def _throttled(d: Dispatcher, name: str, version: str = "1") -> str:
    with pytest.raises(Throttled) as info:
        d._admit(name, pool_key(name, version))
    return info.value.reason


def test_provisioned_concurrency_is_taken_out_of_the_shared_pool():
    d = _dispatcher(10)
    d.set_provisioned(pool_key("prov", "1"), 3)
    d.set_provisioned(pool_key("prov", "2"), 1)
    assert d.claims == {"prov:1": 3, "prov:2": 1}
    _run(d, "other", 6)  # 10 - 4 provisioned
    assert _throttled(d, "other") == "ConcurrentInvocationLimitExceeded"
    _run(d, "prov", 3, "1")  # each version's provisioned concurrency is there whatever the others use
    _run(d, "prov", 1, "2")
    assert _throttled(d, "prov", "1") == "ConcurrentInvocationLimitExceeded"  # and the shared pool is full
    assert _throttled(d, "prov", "2") == "ConcurrentInvocationLimitExceeded"


def test_provisioned_concurrency_serves_only_its_own_version():
    d = _dispatcher(10)
    d.set_provisioned(pool_key("prov", "1"), 3)
    _run(d, "other", 7)  # the shared pool (10 - 3) is full
    assert _throttled(d, "prov", "$LATEST") == "ConcurrentInvocationLimitExceeded"
    assert _throttled(d, "prov", "2") == "ConcurrentInvocationLimitExceeded"
    _run(d, "prov", 3, "1")
    assert _throttled(d, "prov", "1") == "ConcurrentInvocationLimitExceeded"
    d._release(pool_key("prov", "1"))  # a provisioned slot frees: for version 1 only
    assert _throttled(d, "prov", "$LATEST") == "ConcurrentInvocationLimitExceeded"
    _run(d, "prov", 1, "1")
    assert d.inflight == {"other": 7, "prov": 3} and d.key_inflight["prov:1"] == 3


def test_spillover_beyond_provisioned_uses_the_shared_pool():
    d = _dispatcher(10)
    d.set_provisioned(pool_key("prov", "1"), 2)
    _run(d, "prov", 5)  # 2 provisioned + 3 from the shared pool of 8
    _run(d, "other", 5)
    assert _throttled(d, "other") == "ConcurrentInvocationLimitExceeded"
    assert _throttled(d, "prov") == "ConcurrentInvocationLimitExceeded"
    d._release(pool_key("prov", "1"))  # one spillover ends: room for one more of either
    _run(d, "other")
    assert _throttled(d, "prov") == "ConcurrentInvocationLimitExceeded"


def test_reserved_function_keeps_provisioned_inside_its_reservation():
    d = _dispatcher(10)
    d.set_reserved("res", 3)
    d.set_provisioned(pool_key("res", "1"), 2)
    assert d.claims == {}  # not counted twice: the reservation already left the pool
    _run(d, "other", 7)
    assert _throttled(d, "other") == "ConcurrentInvocationLimitExceeded"
    _run(d, "res", 3)
    assert _throttled(d, "res") == "ReservedFunctionConcurrentInvocationLimitExceeded"
    d.set_reserved("res", None)  # the reservation goes: its provisioned concurrency now comes from the pool
    assert d.claims == {"res:1": 2}


def test_claims_follow_removal():
    d = _dispatcher(10)
    d.set_provisioned(pool_key("prov", "1"), 4)
    d.set_provisioned(pool_key("prov", "2"), 1)
    d.remove_version("prov", "2")
    assert d.claims == {"prov:1": 4}
    d.set_provisioned(pool_key("prov", "1"), 0)
    assert d.claims == {}
    d.set_provisioned(pool_key("prov", "1"), 4)
    d.remove_function("prov")
    assert d.claims == {}
    _run(d, "other", 10)
    assert _throttled(d, "other") == "ConcurrentInvocationLimitExceeded"
