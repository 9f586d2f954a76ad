"""The one retry policy: how long to wait after a failure, whatever the outside system."""

from __future__ import annotations

from datetime import timedelta

import pytest

from worker.retry import CallError, backoff, call_with_retries

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


class _Flaky:
    """Fails with the given errors in order, then answers."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def _busy(retry_after: float | None = None) -> CallError:
    return CallError("503 busy", permanent=False, retry_after=retry_after)


def test_passing_failures_are_tried_again_with_waits_that_grow_within_the_cap() -> None:
    waits: list[float] = []
    call = _Flaky(_busy(), _busy())
    assert call_with_retries(call, tries=3, wait_base=4, max_wait=30, sleep=waits.append) == "ok"
    assert call.calls == 3
    # Full jitter: a random share of 4 s, then of 8 s.
    assert len(waits) == 2 and 0 <= waits[0] <= 4 and 0 <= waits[1] <= 8


def test_the_last_error_is_raised_when_the_tries_run_out() -> None:
    waits: list[float] = []
    call = _Flaky(_busy(), _busy(), _busy())
    with pytest.raises(CallError, match="503"):
        call_with_retries(call, tries=2, wait_base=1, max_wait=30, sleep=waits.append)
    assert call.calls == 2 and len(waits) == 1


def test_a_permanent_failure_is_never_tried_again() -> None:
    call = _Flaky(CallError("404 gone", permanent=True))
    with pytest.raises(CallError, match="404"):
        call_with_retries(call, tries=5, wait_base=1, max_wait=30, sleep=lambda _: None)
    assert call.calls == 1


def test_a_short_retry_after_is_waited_for_and_a_long_one_left_to_the_next_round() -> None:
    waits: list[float] = []
    assert (
        call_with_retries(_Flaky(_busy(12)), tries=3, wait_base=1, max_wait=30, sleep=waits.append)
        == "ok"
    )
    assert waits == [12]
    long = _Flaky(_busy(600))
    with pytest.raises(CallError):  # an hour's wait is backoff's business, not the task's
        call_with_retries(long, tries=3, wait_base=1, max_wait=30, sleep=waits.append)
    assert long.calls == 1 and waits == [12]


def test_an_unforeseen_error_is_not_retried() -> None:
    call = _Flaky(KeyError("bug"))
    with pytest.raises(KeyError):
        call_with_retries(call, tries=3, wait_base=1, max_wait=30, sleep=lambda _: None)
    assert call.calls == 1
