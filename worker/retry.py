"""The one retry policy for calls to systems outside Thankly: SMTP servers and CRM APIs.

A transport says whether trying again can help by raising `CallError(permanent=…)`, with the
wait the other side asked for (`Retry-After`) when it gave one. Callers decide nothing about
timing themselves: `backoff` gives the wait before the next try, doubling per failure from a
base up to a cap, and never shorter than what the other side asked for.
"""

from __future__ import annotations

from datetime import timedelta


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
