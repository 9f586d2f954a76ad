"""The one retry policy: how long to wait after a failure, whatever the outside system."""

from __future__ import annotations

from datetime import timedelta

import pytest

from worker.retry import CallError, backoff

BASE, CAP = timedelta(seconds=30), timedelta(hours=1)


def test_the_wait_doubles_per_failure_from_the_base() -> None:
    waits = [backoff(n, base=BASE, cap=CAP) for n in range(1, 6)]
    assert waits == [BASE * 2**i for i in range(5)]


def test_the_wait_never_passes_the_cap_however_many_failures() -> None:
    assert backoff(7, base=BASE, cap=CAP) == BASE * 64  # 32 min: still under the cap
    assert backoff(8, base=BASE, cap=CAP) == CAP  # 64 min would pass it
    assert backoff(10_000, base=BASE, cap=CAP) == CAP


def test_a_retry_after_longer_than_the_backoff_is_honoured() -> None:
    assert backoff(1, base=BASE, cap=CAP, retry_after=120) == timedelta(minutes=2)
    # …but a shorter one does not cut the backoff short.
    assert backoff(3, base=BASE, cap=CAP, retry_after=5) == BASE * 4


@pytest.mark.parametrize("asked", [10**9, float("inf")])
def test_a_huge_retry_after_is_clamped_to_the_cap(asked: float) -> None:
    assert backoff(1, base=BASE, cap=CAP, retry_after=asked) == CAP


def test_a_negative_retry_after_is_ignored() -> None:
    assert backoff(2, base=BASE, cap=CAP, retry_after=-60) == BASE * 2


def test_a_call_error_says_whether_trying_again_can_help() -> None:
    gone = CallError("404 object deleted", permanent=True)
    busy = CallError("429 slow down", permanent=False, retry_after=12.5)
    assert (gone.permanent, gone.retry_after, str(gone)) == (True, None, "404 object deleted")
    assert (busy.permanent, busy.retry_after) == (False, 12.5)
