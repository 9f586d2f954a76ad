"""What happened in each arm of an experiment, counted by the database.

Every letter planned under the experiment counts in its arm, whatever became of it
(intent to treat): a letter the frequency cap or an unsubscribe stopped still tells what
assigning the contact to that arm did, and the arms stay comparable because the same rules
stopped letters in all of them. The units are letters, not contacts: a contact with two
deals in the experiment counts twice.

A letter converts when the same contact has a later `convert_on` event (by default a
`deal.closed` of another deal) within the window after the letter's planned time, the time
it went or, in the holdout, would have gone. Events from every source count: the generic
webhook, a natively connected CRM, reconciliation.

Each measure is one grouped query whose EXISTS the database runs as a semi-join (one pass
over the arm's letters, not one probe per letter in Python), so a million letters take
seconds (benchmarks/experiment_report.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Interval,
    and_,
    case,
    exists,
    func,
    literal,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.orm import Session

from worker.db import UTCDateTime
from worker.models import Click, CrmActivity, Event, Letter, LetterStatus, Open


@dataclass
class ArmCounts:
    arm: str
    planned: int = 0  # every letter of the arm (the population the rates are over)
    sent: int = 0
    held_out: int = 0
    opened: int = 0  # sent letters with at least one human open
    clicked: int = 0  # sent letters whose next step was clicked
    unsubscribed: int = 0  # letters whose unsubscribe link was used
    converted: int = 0
    in_window: int = 0  # letters whose window is still open: conversions may still come


def later_by(column: Any, delta: timedelta, dialect: str) -> Any:
    """`column + delta` in SQL. SQLite stores times as text (`YYYY-MM-DD HH:MM:SS.ffffff`),
    so there it is strftime with a modifier, written in the same shape so that comparing
    the text compares the times."""
    if dialect == "sqlite":
        seconds = int(delta.total_seconds())
        shifted = func.strftime("%Y-%m-%d %H:%M:%f000", column, f"{seconds:+d} seconds")
        # Typed, so that a time compared with it is bound in the stored shape too.
        return type_coerce(shifted, UTCDateTime())
    return column + literal(delta, Interval())


def clock(letter: type[Letter] = Letter) -> ColumnElement[Any]:
    """The letter's planned time: the conversion clock starts here in every arm (send-now
    and replays move due_at, and they cannot act on holdout letters)."""
    return func.coalesce(letter.planned_at, letter.due_at)


def converts(window: timedelta, convert_on: list[str], dialect: str) -> ColumnElement[bool]:
    """EXISTS a later conversion event of the letter's contact within the window. Not the
    deal the letter thanked for: a CRM reporting the same win again is no new purchase."""
    start = clock()
    return exists().where(
        Event.contact_email == Letter.contact_email,
        Event.type.in_(convert_on),
        Event.occurred_at > start,
        Event.occurred_at <= later_by(start, window, dialect),
        or_(Event.deal_id.is_(None), Letter.deal_id.is_(None), Event.deal_id != Letter.deal_id),
    )


def arm_counts(
    session: Session,
    experiment: str,
    *,
    window: timedelta,
    convert_on: list[str],
    now: datetime,
    since: datetime | None = None,
) -> dict[str, ArmCounts]:
    """Counts per arm for letters of `experiment` planned at or after `since`."""
    dialect = session.get_bind().dialect.name
    scope: list[ColumnElement[bool]] = [Letter.experiment == experiment]
    if since is not None:
        scope.append(clock() >= since)
    sent = Letter.status == LetterStatus.SENT

    def count_if(condition: ColumnElement[bool]) -> Any:
        return func.sum(case((condition, 1), else_=0))

    arms: dict[str, ArmCounts] = {}
    totals = select(
        Letter.arm,
        func.count(),
        count_if(sent),
        count_if(Letter.status == LetterStatus.HELD_OUT),
        count_if(later_by(clock(), window, dialect) > now),
    ).where(*scope)
    for arm, planned, n_sent, held, open_window in session.execute(totals.group_by(Letter.arm)):
        arms[arm] = ArmCounts(arm, planned, n_sent or 0, held or 0, in_window=open_window or 0)

    measures: dict[str, ColumnElement[bool]] = {
        "opened": and_(sent, exists().where(Open.letter_id == Letter.id, Open.kind == "human")),
        "clicked": and_(
            sent,
            or_(Letter.extra_clicks > 0, exists().where(Click.letter_id == Letter.id)),
        ),
        "unsubscribed": exists().where(
            CrmActivity.letter_id == Letter.id, CrmActivity.kind == "contact.unsubscribed"
        ),
        "converted": converts(window, convert_on, dialect),
    }
    for name, condition in measures.items():
        query = select(Letter.arm, func.count()).where(*scope, condition).group_by(Letter.arm)
        for arm, n in session.execute(query):
            setattr(arms.setdefault(str(arm), ArmCounts(str(arm))), name, n)
    return arms


def experiment_names(session: Session) -> dict[str, tuple[int, datetime | None, datetime | None]]:
    """Experiments that have letters: name → (letters, first and last planned time)."""
    rows = session.execute(
        select(Letter.experiment, func.count(), func.min(clock()), func.max(clock()))
        .where(Letter.experiment.is_not(None))
        .group_by(Letter.experiment)
    )
    return {name: (n, first, last) for name, n, first, last in rows}
