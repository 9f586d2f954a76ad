"""Durations as ops staff write them: 0s, 90m, 48h, 3d, 1w."""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION = re.compile(r"^(\d{1,6})([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: object) -> timedelta:
    """Parse `48h`; ValueError whose message says what to write instead."""
    if isinstance(text, int) and not isinstance(text, bool) and text == 0:
        return timedelta(0)
    if not isinstance(text, str) or not _DURATION.match(text.strip()):
        raise ValueError(
            f"{text!r} is not a duration: write a whole number and a unit "
            "(s, m, h, d, w) with no space, e.g. 48h, 90m, 3d or 0s"
        )
    match = _DURATION.match(text.strip())
    assert match is not None
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def format_duration(delta: timedelta) -> str:
    """The way ops staff write it: hours below a week (24h, 72h), days from a week (7d)."""
    seconds = int(delta.total_seconds())
    if seconds == 0:
        return "0s"
    units = [("d", 86400)] if seconds >= 604800 else []
    units += [("h", 3600), ("m", 60)]
    for unit, size in units:
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
