"""When a letter is due: the event time plus the rule's delay, moved into the send window.

All arithmetic on instants is in UTC (a 48h delay is 48 elapsed hours, DST or not);
send windows are wall-clock times in the recipient's zone, via zoneinfo.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from worker.planning.rules_model import DAYS, Delay, SendWindow


def _point(key: str, span: timedelta) -> timedelta:
    """A point in [0, span] that depends only on `key`: the same on every evaluation."""
    seconds = int(span.total_seconds())
    digest = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
    return timedelta(seconds=digest % (seconds + 1))


def spread(delay: Delay, key: str) -> timedelta:
    """A point inside the delay window that depends only on `key` (contact + event + rule),
    so every evaluation of the same event gives the same time, and a batch of events from
    one import does not go out in the same minute."""
    if delay.fixed:
        return delay.min
    return delay.min + _point(key, delay.max - delay.min)


def _local(day: date, at: time, zone: ZoneInfo) -> datetime:
    """Wall-clock `at` on `day` in `zone`, as UTC. When the clock falls back and `at`
    happens twice, the first; when it springs forward and `at` never happens, the same
    distance past the gap (02:30 → 03:30 local)."""
    wall = datetime.combine(day, at, tzinfo=zone)
    first = wall.astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall.replace(tzinfo=None):
        return first
    return max(first, wall.replace(fold=1).astimezone(UTC))


def next_opening(at: datetime, window: SendWindow | None, zone: ZoneInfo) -> datetime:
    """`at` if it falls inside the window in `zone`, else the window's next start (UTC)."""
    at = at.astimezone(UTC)
    if window is None:
        return at
    allowed = {DAYS.index(d) for d in window.days}
    local_day = at.astimezone(zone).date()
    for offset in range(8):
        day = local_day + timedelta(days=offset)
        if day.weekday() not in allowed:
            continue
        opens, closes = _local(day, window.start, zone), _local(day, window.end, zone)
        if at < opens:
            return opens
        if at < closes:
            return at
    raise AssertionError("a window with at least one day always opens within a week")


def due_time(
    occurred_at: datetime, delay: Delay, key: str, window: SendWindow | None, zone: ZoneInfo
) -> datetime:
    # UTC first: Python adds a timedelta to a zoneinfo datetime in wall-clock time, which
    # would make "48h" 47 or 49 elapsed hours across a DST change.
    wanted = occurred_at.astimezone(UTC) + spread(delay, key)
    due = next_opening(wanted, window, zone)
    if window is None or due == wanted or not window.spread:
        return due
    # Moved to the window's opening: without a spread every letter that fell outside the
    # window would go out at the same minute. A different key than the delay's, so the two
    # points do not move together. The window validator keeps it before the window closes.
    return due + _point(f"{key}|window", window.spread)
