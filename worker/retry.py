"""The one retry policy for calls to systems outside Thankly: SMTP servers and CRM APIs.

Two places wait. Inside a task, `call_with_retries` tries a call a few times with short
waits (seconds: a dropped connection, a brief 429). Between tasks, `backoff` gives how long
the work rests before the next round (minutes to hours: an outage), never shorter than
what the other side asked for.

A transport says whether trying again can help by raising `CallError(permanent=…)`, with the
wait the other side asked for (`Retry-After`) when it gave one. Callers decide nothing about
timing themselves: `backoff` gives the wait before the next try, doubling per failure from a
base up to a cap, and never shorter than what the other side asked for.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

T = TypeVar("T")


class CallError(Exception):
    """A call to an outside system failed. `permanent`: the same call will fail again (a 4xx,
    an object that is gone), so it must not be retried. `retry_after`: seconds the other
    side asked us to wait (already parsed; may be None)."""

    def __init__(self, message: str, *, permanent: bool, retry_after: float | None = None):
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after


def backoff(
    failures: int,
    *,
    base: timedelta,
    cap: timedelta,
    retry_after: float | None = None,
) -> timedelta:
    """The wait after the `failures`-th failure in a row (1 = the first): base, 2*base,
    4*base, … at most `cap`; at least `retry_after` (clamped to the cap, so a hostile or
    broken header cannot park work for a year)."""
    doublings = min(max(failures, 1) - 1, 30)  # 2**30 times any base is past every cap
    delay = min(base * (1 << doublings), cap)
    if retry_after is not None:
        asked = timedelta(seconds=min(max(retry_after, 0.0), cap.total_seconds()))
        delay = max(delay, asked)
    return delay


def retryable_in_call(exc: BaseException, max_wait: float) -> bool:
    """Worth another try within this task: a passing failure whose Retry-After, if any,
    is short enough to wait for here (a long one is honoured by `backoff` instead)."""
    return (
        isinstance(exc, CallError)
        and not exc.permanent
        and (exc.retry_after is None or exc.retry_after <= max_wait)
    )


def call_with_retries(
    call: Callable[[], T],
    *,
    tries: int,
    wait_base: float,
    max_wait: float,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """`call()`, tried up to `tries` times while it raises a retryable CallError. Waits
    the Retry-After when given, else a random share of wait_base * 2**(try - 1) ("full
    jitter", so workers that failed together do not retry together), at most `max_wait`.
    The last error is raised as it is."""
    for attempt in range(1, max(tries, 1) + 1):
        try:
            return call()
        except CallError as exc:
            if attempt >= tries or not retryable_in_call(exc, max_wait):
                raise
            if exc.retry_after is not None:
                wait = max(exc.retry_after, 0.0)
            else:
                ceiling = min(wait_base * (1 << min(attempt - 1, 30)), max_wait)
                wait = random.uniform(0, ceiling)  # noqa: S311 - jitter, not a secret
            sleep(min(wait, max_wait))
    raise AssertionError("unreachable: the loop returns or raises")
