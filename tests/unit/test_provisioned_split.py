"""How a weighted alias's provisioned concurrency is spread over its two versions (api/concurrency.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from lamina.functions.concurrency import split_by_weight


def test_no_weights_keeps_everything_on_the_primary_version():
    assert split_by_weight(5, "1", {}) == {"1": 5}


def test_weights_share_the_environments():
    assert split_by_weight(4, "1", {"2": 0.5}) == {"1": 2, "2": 2}
    assert split_by_weight(4, "1", {"2": 0.25}) == {"1": 3, "2": 1}
    assert split_by_weight(10, "3", {"4": 0.1}) == {"3": 9, "4": 1}


def test_shares_round_half_up_and_drop_empty_ones():
    assert split_by_weight(1, "1", {"2": 0.5}) == {"2": 1}       # 0.5 rounds up: the whole environment moves
    assert split_by_weight(1, "1", {"2": 0.4}) == {"1": 1}
    assert split_by_weight(3, "1", {"2": 0.0}) == {"1": 3}
    assert split_by_weight(3, "1", {"2": 1.0}) == {"2": 3}       # every invocation runs version 2


@given(st.integers(min_value=1, max_value=3000), st.floats(min_value=0.0, max_value=1.0))
def test_the_shares_always_add_up_to_the_request(requested, weight):
    shares = split_by_weight(requested, "1", {"2": weight})
    assert sum(shares.values()) == requested
    assert all(n > 0 for n in shares.values())
    assert abs(shares.get("2", 0) - requested * weight) <= 0.5
