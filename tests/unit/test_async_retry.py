"""AWS's async retry rules (events/retry.py) against the spec's recorded examples (spec/events.md §1.2)."""

from __future__ import annotations

import pytest

from lamina.events import retry


def test_function_errors_retry_after_one_then_two_minutes():
    first = retry.after_function_error(1, age_s=0.5, max_retries=2, max_age_s=21600)
    assert first.retry and first.delay_s == 60
    second = retry.after_function_error(2, age_s=61, max_retries=2, max_age_s=21600)
    assert second.retry and second.delay_s == 120
    third = retry.after_function_error(3, age_s=182, max_retries=2, max_age_s=21600)
    assert third.condition == retry.RETRIES_EXHAUSTED


@pytest.mark.parametrize("max_retries, attempts_run", [(0, 1), (1, 2), (2, 3)])
def test_maximum_retry_attempts(max_retries, attempts_run):
    attempts = 1
    while retry.after_function_error(attempts, 0, max_retries, 21600).retry:
        attempts += 1
    assert attempts == attempts_run


def test_age_look_ahead_60_seconds_fails_after_the_first_attempt():
    # test_maxeventage: MaximumEventAgeInSeconds 60 with 2 retries -> EventAgeExceeded, approximateInvokeCount 1.
    d = retry.after_function_error(1, age_s=1.0, max_retries=2, max_age_s=60)
    assert d.condition == retry.EVENT_AGE_EXCEEDED


def test_age_look_ahead_90_seconds_retries_once():
    # ... and with 90: one retry, then EventAgeExceeded with approximateInvokeCount 2.
    assert retry.after_function_error(1, age_s=1.0, max_retries=2, max_age_s=90).retry
    assert retry.after_function_error(2, age_s=62.0, max_retries=2, max_age_s=90).condition == \
        retry.EVENT_AGE_EXCEEDED


def test_throttle_backoff_doubles_from_one_second_to_five_minutes():
    delays = [retry.after_throttle(n, 0, 21600).delay_s for n in range(1, 12)]
    assert delays[:5] == [1, 2, 4, 8, 16]
    assert max(delays) == 300 and delays[-1] == 300


def test_throttles_give_up_only_at_the_maximum_age():
    assert retry.after_throttle(20, age_s=21000, max_age_s=21600).retry
    assert retry.after_throttle(20, age_s=21400, max_age_s=21600).condition == retry.EVENT_AGE_EXCEEDED


def test_scale_shrinks_waits_and_ages_alike():
    d = retry.after_function_error(1, age_s=0.01, max_retries=2, max_age_s=90, scale=0.01)
    assert d.retry and d.delay_s == pytest.approx(0.6)
    assert retry.after_function_error(1, age_s=0.01, max_retries=2, max_age_s=60, scale=0.01).condition == \
        retry.EVENT_AGE_EXCEEDED
    assert retry.after_throttle(1, 0, 21600, scale=0.01).delay_s == pytest.approx(0.01)
    assert retry.expired(0.7, 60, scale=0.01) and not retry.expired(0.5, 60, scale=0.01)
