"""Upcoming: what goes out in the next hours or days, per day or hour of the viewer's time
zone, by letter and locale.

Counted are scheduled letters due after now and at most `hours` from now: letters already
due are the scheduler's lag (on the overview), and held-out letters never go out, so they
are not here. One grouped query does it, reading the (status, due_at) index; the viewer's
days or hours are put in by the database with the overview's CASE over their edges, exact
on days that daylight saving makes longer or shorter and in zones half an hour off UTC.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_skeleton, format_time
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response

from worker.models import Letter, LetterStatus
from worker.runtime import Runtime
from worker.ui.access import viewer
from worker.ui.overview import count_by_bucket, local_midnight
from worker.ui.pages import format_locale, page, viewer_zone

router = APIRouter()
HOURS = {24: "24 hours", 48: "48 hours", 168: "7 days"}
GROUPINGS = {"day": "day", "hour": "hour"}


def edges(now: datetime, end: datetime, zone: ZoneInfo, by: str) -> list[datetime]:
    """The starts of the viewer's days (or hours) after `now` and before `end`, in UTC."""
    found: list[datetime] = []
    if by == "day":
        day = now.astimezone(zone).date()
        while (edge := local_midnight(day := day + timedelta(days=1), zone)) < end:
            found.append(edge)
        return found
    edge = _hour_start(now, zone)
    while (edge := _next_hour(edge, zone)) < end:
        found.append(edge)
    return found


def _hour_start(moment: datetime, zone: ZoneInfo) -> datetime:
    """The start of the viewer's hour holding `moment`, in UTC (zones half an hour off
    UTC have their hours at :30)."""
    local = moment.astimezone(zone)
    return local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)


def _next_hour(edge: datetime, zone: ZoneInfo) -> datetime:
    step = timedelta(hours=1)
    while (after := _hour_start(edge + step, zone)) <= edge:
        step += timedelta(hours=1)  # a change of offset that is not whole hours
    return after


@dataclass
class Row:
    letter: str
    locale: str
    count: int

    @property
    def href(self) -> str:
        """The letters list, narrowed to these (the list filters by letter, not by time)."""
        query = {"status": LetterStatus.SCHEDULED.value, "letter": self.letter}
        return "/ui/letters?" + urlencode(query | {"locale": self.locale})


@dataclass
class Group:
    start: datetime  # UTC: now for the first group, else the local day's or hour's start
    key: str  # the local day or hour, machine-readable (a <time> attribute)
    label: str
    rows: list[Row] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(r.count for r in self.rows)


def upcoming(
    runtime: Runtime, zone: ZoneInfo, locale: Locale, hours: int, by: str
) -> tuple[list[Group], list[Row]]:
    """The non-empty groups in time order, and the totals per letter and locale."""
    now = runtime.clock.now()
    end = now + timedelta(hours=hours)
    starts = [now, *edges(now, end, zone, by)]
    with runtime.session_factory() as session:
        counted = count_by_bucket(
            session,
            Letter.due_at,
            starts[1:],
            [Letter.letter, Letter.locale],
            [
                Letter.status == LetterStatus.SCHEDULED,
                Letter.due_at > now,
                Letter.due_at <= end,
            ],
        )
    groups: dict[int, Group] = {}
    totals: dict[tuple[str, str], int] = {}
    for letter, letter_locale, bucket, n in sorted(counted, key=lambda r: (r[2], r[0], r[1])):
        if bucket not in groups:
            groups[bucket] = _group(starts[bucket], zone, locale, by)
        groups[bucket].rows.append(Row(letter, letter_locale, n))
        totals[(letter, letter_locale)] = totals.get((letter, letter_locale), 0) + n
    overall = [Row(letter, loc, n) for (letter, loc), n in sorted(totals.items())]
    return [groups[b] for b in sorted(groups)], overall


def _group(start: datetime, zone: ZoneInfo, locale: Locale, by: str) -> Group:
    local = start.astimezone(zone)
    # Babel is given the local date and time as they are (naive): already the viewer's.
    if by == "day":
        label = format_skeleton("yMMMEd", local.date(), locale=locale)
        return Group(start, local.date().isoformat(), label)
    hour = local.replace(minute=0, second=0, microsecond=0)
    day = format_skeleton("MMMEd", local.date(), locale=locale)
    label = f"{day} {format_time(hour.time(), 'short', locale=locale)}"
    return Group(start, hour.isoformat(timespec="minutes"), label)


@router.get("/upcoming", response_class=HTMLResponse)
def show_upcoming(
    request: Request,
    hours: Annotated[int, Query()] = 48,
    by: Annotated[str, Query(max_length=8)] = "day",
) -> Response:
    who = viewer(request)
    if hours not in HOURS:
        choices = ", ".join(str(h) for h in HOURS)
        raise HTTPException(422, f"hours={hours} is not one of {choices}")
    if by not in GROUPINGS:
        raise HTTPException(422, f"by={by!r} is not one of {', '.join(GROUPINGS)}")
    runtime: Runtime = request.app.state.runtime
    groups, overall = upcoming(runtime, viewer_zone(request), format_locale(request), hours, by)
    return page(
        request,
        "upcoming.html",
        who,
        groups=groups,
        overall=overall,
        total=sum(g.total for g in groups),
        hours=hours,
        by=by,
        hour_choices=HOURS,
        groupings=GROUPINGS,
        now=runtime.clock.now(),
        end=runtime.clock.now() + timedelta(hours=hours),
    )
