"""The overview: how today and the last 30 days went, and whether anything is stuck.

Every number comes from a fixed handful of grouped queries, whatever the number of
letters: what each letter's state is and which of the viewer's days it reached it on, the
oldest due letter the scheduler has not claimed, the CRM outbox by destination, and the
rates from `worker.admin.stats`. Days are the viewer's (their time zone, midnight to
midnight): the database puts each letter in its day with a CASE over the days' edges in
UTC, which is exact in any zone and on days that daylight saving makes 23 or 25 hours
long, on SQLite as on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_skeleton, format_timedelta
from babel.numbers import format_decimal
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import ColumnElement, case, func, literal, select
from sqlalchemy.orm import Session

from worker.admin.stats import stats_rows
from worker.crm.adapters import CrmAdapter, CrmRouter
from worker.db import UTCDateTime
from worker.models import ActivityStatus, CrmActivity, Letter, LetterStatus
from worker.runtime import Runtime
from worker.ui.access import viewer
from worker.ui.charts import Series, bar_chart
from worker.ui.pages import format_locale, page, viewer_zone

router = APIRouter()
DAYS = 30
# The states a letter ends in, each counted on the day it reached it (see `_reached_at`).
COUNTED = (
    LetterStatus.SENT,
    LetterStatus.FAILED,
    LetterStatus.UNKNOWN,
    LetterStatus.SUPPRESSED,
    LetterStatus.HELD_OUT,
)
BACKLOG = (ActivityStatus.PENDING, ActivityStatus.DELIVERING, ActivityStatus.FAILED)
SENT_COLOUR, FAILED_COLOUR = "#1a7f37", "#b42318"


# --- time buckets, shared with the upcoming page -------------------------------------------


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The start of the viewer's `day`, in UTC."""
    return datetime.combine(day, time(), zone).astimezone(UTC)


def bucket_of(column: Any, edges: Sequence[datetime]) -> ColumnElement[int]:
    """Which span a time falls in, computed by the database: 0 before edges[0], 1 before
    edges[1], …, len(edges) at or after the last. A CASE of plain comparisons, so it
    works alike on every backend and is exact for any time zone's days or hours."""
    if not edges:
        return literal(0)
    return case(
        *[(column < literal(edge, UTCDateTime()), n) for n, edge in enumerate(edges)],
        else_=len(edges),
    )


def count_by_bucket(
    session: Session,
    at: Any,
    edges: Sequence[datetime],
    keys: Sequence[Any],
    where: Sequence[ColumnElement[bool]],
) -> list[tuple[Any, ...]]:
    """(keys…, bucket, count) per bucket and keys, for the rows `where` picks. The bucket
    is computed in a subquery and grouped on outside it, so no backend is asked to match
    a parameterised expression in GROUP BY with the one in SELECT."""
    labelled = [k.label(f"k{n}") for n, k in enumerate(keys)]
    inner = select(*labelled, bucket_of(at, edges).label("bucket")).where(*where).subquery()
    columns = [inner.c[f"k{n}"] for n in range(len(keys))] + [inner.c.bucket]
    query = select(*columns, func.count()).group_by(*columns)
    return [tuple(row) for row in session.execute(query)]


# --- the numbers --------------------------------------------------------------------------


def _reached_at() -> ColumnElement[datetime]:
    """When a letter reached its state: a sent letter when it was sent, a held-out one
    when it would have gone (its due time), the others at their last change (which a
    failure, an unknown outcome or a suppression is)."""
    return case(
        (Letter.status == LetterStatus.SENT, func.coalesce(Letter.sent_at, Letter.updated_at)),
        (Letter.status == LetterStatus.HELD_OUT, Letter.due_at),
        else_=Letter.updated_at,
    )


@dataclass
class Lag:
    oldest: datetime | None  # the due time of the oldest scheduled letter that is due
    due: int  # how many scheduled letters are due now
    seconds: int  # now minus `oldest` (0 when none is due)


@dataclass
class Backlog:
    crm: str
    pending: int = 0
    delivering: int = 0
    failed: int = 0
    oldest_waiting: datetime | None = None  # the oldest pending or delivering activity

    @property
    def waiting(self) -> int:
        return self.pending + self.delivering


@dataclass
class Overview:
    days: list[date]  # the viewer's last DAYS days, today last
    per_day: dict[str, list[int]] = field(default_factory=dict)  # state -> count per day
    lag: Lag = field(default_factory=lambda: Lag(None, 0, 0))
    backlog: list[Backlog] = field(default_factory=list)

    def today(self, state: str) -> int:
        return self.per_day[state][-1]

    def period(self, state: str) -> int:
        return sum(self.per_day[state])


def overview(runtime: Runtime, zone: ZoneInfo) -> Overview:
    now = runtime.clock.now()
    today = now.astimezone(zone).date()
    days = [today - timedelta(days=n) for n in range(DAYS - 1, -1, -1)]
    # Letters from the first day's midnight until now, in a bucket per day.
    start, inner_edges = local_midnight(days[0], zone), [local_midnight(d, zone) for d in days[1:]]
    result = Overview(days, {state: [0] * DAYS for state in COUNTED})
    with runtime.session_factory() as session:
        at = _reached_at()
        rows = count_by_bucket(
            session,
            at,
            inner_edges,
            [Letter.status],
            [Letter.status.in_(COUNTED), at >= start, at <= now],
        )
        for status, bucket, n in rows:
            result.per_day[status][bucket] += n

        oldest, due = session.execute(
            select(func.min(Letter.due_at), func.count()).where(
                Letter.status == LetterStatus.SCHEDULED, Letter.due_at <= now
            )
        ).one()
        seconds = int((now - oldest).total_seconds()) if oldest is not None else 0
        result.lag = Lag(oldest, due, max(0, seconds))

        result.backlog = _backlog(session, runtime.crm)
    return result


def destination(crm: CrmAdapter, source: str | None) -> str:
    """The CRM an activity goes to: the one its event came from when Thankly writes to it
    natively, else the default (the outbox's own routing, `CrmRouter.adapter_for`)."""
    if isinstance(crm, CrmRouter):
        return crm.adapter_for({"data": {"source": source}}).name
    return crm.name


def _backlog(session: Session, crm: CrmAdapter) -> list[Backlog]:
    source = CrmActivity.payload["data"]["source"].as_string()
    rows = session.execute(
        select(source, CrmActivity.status, func.count(), func.min(CrmActivity.created_at))
        .where(CrmActivity.status.in_(BACKLOG))
        .group_by(source, CrmActivity.status)
    ).all()
    # A handful of rows (three per source), folded by destination.
    found: dict[str, Backlog] = {}
    for src, status, n, oldest in rows:
        row = found.setdefault(destination(crm, src), Backlog(destination(crm, src)))
        setattr(row, status, getattr(row, status) + n)
        if status != ActivityStatus.FAILED and (
            row.oldest_waiting is None or oldest < row.oldest_waiting
        ):
            row.oldest_waiting = oldest
    return [found[name] for name in sorted(found)]


# --- the page -----------------------------------------------------------------------------


@router.get("/overview", response_class=HTMLResponse)
def show_overview(request: Request) -> Response:
    who = viewer(request)
    runtime: Runtime = request.app.state.runtime
    zone = viewer_zone(request)
    locale = format_locale(request)
    numbers = overview(runtime, zone)
    labels = [format_skeleton("MMMd", d, locale=locale) for d in numbers.days]
    sent, failed = numbers.per_day[LetterStatus.SENT], numbers.per_day[LetterStatus.FAILED]

    def number(value: float) -> str:
        return format_decimal(value, locale=locale)

    chart = bar_chart(
        "Letters sent and failed per day",
        labels,
        [Series("sent", sent, SENT_COLOUR), Series("failed", failed, FAILED_COLOUR)],
        number=number,
    )
    lag = numbers.lag
    return page(
        request,
        "overview.html",
        who,
        numbers=numbers,
        states=COUNTED,
        today=numbers.days[-1],
        today_text=format_skeleton("yMMMMEEEEd", numbers.days[-1], locale=locale),
        first_text=format_skeleton("yMMMd", numbers.days[0], locale=locale),
        chart=chart,
        per_day=[
            (label, day.isoformat(), s, x)
            for label, day, s, x in zip(labels, numbers.days, sent, failed, strict=True)
        ],
        lag=lag,
        lag_text=format_timedelta(timedelta(seconds=lag.seconds), locale=locale),
        rates=stats_rows(runtime.session_factory, since=local_midnight(numbers.days[0], zone)),
    )
