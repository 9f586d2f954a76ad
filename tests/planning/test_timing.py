"""Delay spread and send windows, in the recipient's zone, across DST and week ends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.planning.rules_model import Delay, SendWindow
from worker.planning.timing import due_time, next_opening, spread

BERLIN = ZoneInfo("Europe/Berlin")
OFFICE = SendWindow.model_validate(
    {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "18:00"}
)
WINDOW = Delay(timedelta(hours=24), timedelta(hours=72))


def local(text: str, zone: ZoneInfo = BERLIN) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=zone)


def opening(at: str, zone: ZoneInfo = BERLIN) -> str:
    return next_opening(local(at, zone), OFFICE, zone).astimezone(zone).isoformat()


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        ("2026-11-18T17:59", "2026-11-18T17:59:00+01:00"),  # inside: unchanged
        ("2026-11-18T18:00", "2026-11-19T09:00:00+01:00"),  # end is exclusive
        ("2026-11-18T08:59", "2026-11-18T09:00:00+01:00"),  # before opening: same day
        ("2026-11-18T09:00", "2026-11-18T09:00:00+01:00"),
        ("2026-11-20T18:00", "2026-11-23T09:00:00+01:00"),  # Friday evening → Monday
        ("2026-11-21T12:00", "2026-11-23T09:00:00+01:00"),  # Saturday → Monday
        ("2026-11-22T23:59", "2026-11-23T09:00:00+01:00"),  # Sunday night → Monday
    ],
)
def test_window_edges(at: str, expected: str) -> None:
    assert opening(at) == expected


def test_spring_dst_friday_evening_to_monday_summer_time() -> None:
    # Clocks go forward on Sunday 29 March 2026: Monday 09:00 is CEST, 07:00 UTC.
    due = next_opening(local("2026-03-27T18:30"), OFFICE, BERLIN)
    assert due == datetime(2026, 3, 30, 7, 0, tzinfo=UTC)


def test_autumn_dst_friday_evening_to_monday_winter_time() -> None:
    # Clocks go back on Sunday 25 October 2026: Monday 09:00 is CET, 08:00 UTC.
    due = next_opening(local("2026-10-23T18:30"), OFFICE, BERLIN)
    assert due == datetime(2026, 10, 26, 8, 0, tzinfo=UTC)


def test_a_fixed_delay_counts_elapsed_hours_across_dst() -> None:
    # Saturday 10:00 CET + 48 h = Monday 11:00 CEST (the lost hour is not added back).
    fixed = Delay(timedelta(hours=48), timedelta(hours=48))
    due = due_time(local("2026-03-28T10:00"), fixed, "k", OFFICE, BERLIN)
    assert due.astimezone(BERLIN).isoformat() == "2026-03-30T11:00:00+02:00"


def test_window_start_inside_the_spring_gap_moves_past_it() -> None:
    night = SendWindow.model_validate({"days": ["sun"], "start": "02:30", "end": "04:00"})
    due = next_opening(local("2026-03-29T00:00"), night, BERLIN)
    assert due.astimezone(BERLIN).isoformat() == "2026-03-29T03:30:00+02:00"


@pytest.mark.parametrize(
    ("zone", "expected_utc"),
    [
        # Friday 20:00 UTC is already Saturday 10:00 in Kiritimati (UTC+14): Monday 09:00
        # there is Sunday 19:00 UTC.
        ("Pacific/Kiritimati", "2026-11-22T19:00:00+00:00"),
        # …and still Friday 12:00 in Honolulu (UTC-10): inside the window, sent as is.
        ("Pacific/Honolulu", "2026-11-20T20:00:00+00:00"),
    ],
)
def test_zones_far_from_utc(zone: str, expected_utc: str) -> None:
    at = datetime(2026, 11, 20, 20, 0, tzinfo=UTC)
    assert next_opening(at, OFFICE, ZoneInfo(zone)).isoformat() == expected_utc


def test_no_window_means_any_time() -> None:
    at = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
    assert next_opening(at, None, BERLIN) == at


def test_the_spread_is_the_same_on_every_evaluation() -> None:
    assert spread(WINDOW, "anna@example.org|deal.closed|…") == spread(
        WINDOW, "anna@example.org|deal.closed|…"
    )


def test_the_spread_differs_between_contacts() -> None:
    offsets = {spread(WINDOW, f"contact-{i}@example.org") for i in range(50)}
    assert len(offsets) > 40  # a batch import does not land in one minute


@given(key=st.text(max_size=40), low=st.integers(0, 200), extra=st.integers(0, 200))
def test_the_spread_stays_inside_the_window(key: str, low: int, extra: int) -> None:
    delay = Delay(timedelta(hours=low), timedelta(hours=low + extra))
    assert delay.min <= spread(delay, key) <= delay.max


@given(
    at=st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
    )
)
def test_an_opening_is_always_inside_the_window_and_not_earlier(at: datetime) -> None:
    due = next_opening(at, OFFICE, BERLIN)
    local_due = due.astimezone(BERLIN)
    assert due >= at
    assert local_due.weekday() < 5
    assert (9, 0) <= (local_due.hour, local_due.minute) < (18, 0)
    assert due - at < timedelta(days=3, hours=16)  # never skips an opening


# --- no Monday 09:00 wall: letters moved to an opening are spread after it ---------------

SPREAD_OFFICE = OFFICE.model_copy(update={"spread": timedelta(hours=2)})
FRIDAY_IMPORT = local("2026-11-20T17:00")  # + 24-72 h lands on the weekend or Monday


def test_a_friday_import_no_longer_goes_out_in_one_minute_on_monday() -> None:
    keys = [f"c{n}@example.org|deal.closed" for n in range(1000)]
    walled = [due_time(FRIDAY_IMPORT, WINDOW, k, OFFICE, BERLIN) for k in keys]
    spread_out = [due_time(FRIDAY_IMPORT, WINDOW, k, SPREAD_OFFICE, BERLIN) for k in keys]
    monday_nine = local("2026-11-23T09:00")
    at_the_wall = [i for i, due in enumerate(walled) if due == monday_nine]
    assert len(at_the_wall) > 500  # without a spread, most of the batch shares one instant
    moved = [spread_out[i] for i in at_the_wall]
    assert all(monday_nine <= due <= monday_nine + timedelta(hours=2) for due in moved)
    assert len({due.replace(second=0) for due in moved}) > 100  # spread over the minutes
    # Letters that were due inside the window keep their time.
    inside = [i for i, due in enumerate(walled) if due != monday_nine and due.hour != 9]
    assert inside and all(spread_out[i] == walled[i] for i in inside)


def test_the_opening_spread_is_the_same_on_every_evaluation() -> None:
    key = "anna@example.org|deal.closed|d-1|deal-closed-thanks"
    first = due_time(FRIDAY_IMPORT, WINDOW, key, SPREAD_OFFICE, BERLIN)
    assert all(
        due_time(FRIDAY_IMPORT, WINDOW, key, SPREAD_OFFICE, BERLIN) == first for _ in range(5)
    )


def test_a_spread_as_long_as_the_window_is_refused() -> None:
    with pytest.raises(ValueError, match="spread must be shorter than the window"):
        SendWindow.model_validate(
            {"days": ["mon"], "start": "09:00", "end": "11:00", "spread": "2h"}
        )
