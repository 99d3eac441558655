"""AWS's retry rules for asynchronous invocations, as pure functions of an event's history (spec/events.md §1.2).

- A function error (a timeout included) is retried up to MaximumRetryAttempts times, about 1 minute after
  the first attempt and 2 minutes after the second.
- A throttle or a system error puts the event back with an exponential backoff from 1 s up to 5 minutes;
  these do not count as attempts.
- Age look-ahead: a retry whose wait would take the event past MaximumEventAgeInSeconds is not waited for;
  the event goes to failure handling at once (EventAgeExceeded).

`scale` multiplies every time here, the waits and the maximum age alike (the `async_wait_scale` setting), so
that a test can run a schedule of minutes in seconds with the same decisions.
"""

from __future__ import annotations

from dataclasses import dataclass

RETRY_WAIT_S = 60.0           # after the first failed attempt; twice that after the second
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 300.0

RETRIES_EXHAUSTED = "RetriesExhausted"
EVENT_AGE_EXCEEDED = "EventAgeExceeded"
ZERO_RESERVED = "ZeroReservedConcurrency"
SUCCESS = "Success"


@dataclass(frozen=True, slots=True)
class Decision:
    """Retry after delay_s, or (condition set) go to failure handling now."""

    delay_s: float = 0.0
    condition: str | None = None

    @property
    def retry(self) -> bool:
        return self.condition is None


def after_function_error(attempts: int, age_s: float, max_retries: int, max_age_s: float, scale: float = 1.0
                         ) -> Decision:
    """After attempt number `attempts` failed with a function error, the event `age_s` old (real seconds)."""
    if attempts > max_retries:
        return Decision(condition=RETRIES_EXHAUSTED)
    delay = RETRY_WAIT_S * attempts * scale
    if age_s + delay > max_age_s * scale:
        return Decision(condition=EVENT_AGE_EXCEEDED)
    return Decision(delay)


def after_throttle(throttles: int, age_s: float, max_age_s: float, scale: float = 1.0) -> Decision:
    """After the event's `throttles`-th throttle or system error (1 for the first)."""
    delay = min(BACKOFF_FIRST_S * 2 ** max(0, throttles - 1), BACKOFF_MAX_S) * scale
    if age_s + delay > max_age_s * scale:
        return Decision(condition=EVENT_AGE_EXCEEDED)
    return Decision(delay)


def expired(age_s: float, max_age_s: float, scale: float = 1.0) -> bool:
    """Too old to run at all (only when a wait was longer than planned, such as across a restart)."""
    return age_s > max_age_s * scale
