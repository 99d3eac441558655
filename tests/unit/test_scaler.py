"""The scaler's arithmetic against lambda-dispatch's own test vectors (spec/dispatch.md §1.6)."""

from __future__ import annotations

import pytest

from lamina.dispatch.scaler import Ewma, TokenBucket, constrain, ewma_desired, simple_desired


@pytest.mark.parametrize(("max_c", "mult", "pending", "running", "want"), [
    (10, 2, 0, 0, 0), (10, 2, 1, 1, 1), (1, 1, 1, 1, 2), (10, 5, 2, 2, 2), (20, 10, 5, 2, 2),
    (10, 2, 100, 2, 7), (20, 4, 1000, 110, 57), (10, 1, 10000, 0, 600),
])
def test_simple_scaler_vectors(max_c, mult, pending, running, want):
    assert simple_desired(pending, running, max_c, mult) == want


@pytest.mark.parametrize(("max_c", "mult", "rps", "dur", "want"), [
    (10, 2, 1, 1500, 1), (10, 2, 1, 59500, 15), (10, 2, 3000, 21, 16), (10, 2, 3000, 6, 5), (20, 4, 1000, 100, 24),
])
def test_ewma_scaler_vectors(max_c, mult, rps, dur, want):
    assert ewma_desired(rps, dur, 0, max_c, mult) == want


def test_ewma_hysteresis_never_scales_in_by_one():
    assert ewma_desired(1, 1500, 2, 10, 2) == 2
    assert ewma_desired(1, 1500, 3, 10, 2) == 1


@pytest.mark.parametrize(("proposed", "current", "step", "frac", "want"), [
    (10, 2, 0, 0.33, 3), (25, 15, 5, 0.5, 23), (10, 2, 5, 0.33, 7), (2, 10, 0, 0.33, 6), (13, 30, 5, 0.33, 20),
    (0, 30, 5, 0.33, 0),
])
def test_constrain_vectors(proposed, current, step, frac, want):
    assert constrain(proposed, current, step, frac, frac) == want


def test_token_bucket_refills_over_time():
    now = [0.0]
    bucket = TokenBucket(2, 1.0, clock=lambda: now[0])
    assert bucket.take() and bucket.take() and not bucket.take()
    assert bucket.wait_s() == pytest.approx(1.0)
    now[0] = 0.5
    assert not bucket.take()
    now[0] = 1.0
    assert bucket.take() and not bucket.take()
    now[0] = 100.0
    assert bucket.take() and bucket.take() and not bucket.take()  # capped at capacity


def test_ewma_tracks_rate_and_duration():
    ewma = Ewma(window_s=0.5)
    for _ in range(50):
        for _ in range(10):
            ewma.record(20.0)
        ewma.tick()
    assert ewma.rps == pytest.approx(100.0, rel=0.05)
    assert ewma.duration_ms == pytest.approx(20.0, rel=0.01)
    for _ in range(50):
        ewma.tick()  # idle: the rate decays, the duration stays
    assert ewma.rps < 5 and ewma.duration_ms == pytest.approx(20.0, rel=0.01)
