"""The numbers per letter and locale, computed by the database in a few grouped queries.

What `since` means for each number:
- the status columns and the rates count letters *created* since then;
- opens, clicks and unsubscribes count the *hits* that happened since then, whenever
  their letter was created (a letter sent last month and opened today counts today);
- open_rate and click_rate are the share of the row's sent letters with at least one human
  open, and with at least one click (ever): how well the letters shown did.
Hits beyond the per-letter row cap (`letters.extra_opens`/`extra_clicks`, which have no
time) are not in the totals: they are machine loops, not readers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, exists, func, select
from sqlalchemy.orm import Session, sessionmaker

from worker.models import Click, CrmActivity, Letter, LetterStatus, Open

# A letter on its way (queued, being sent) still counts as scheduled: not yet out.
_SHOWN_AS: dict[str, str] = {
    LetterStatus.SCHEDULED: "scheduled",
    LetterStatus.QUEUED: "scheduled",
    LetterStatus.SENDING: "scheduled",
    LetterStatus.SENT: "sent",
    LetterStatus.FAILED: "failed",
    LetterStatus.UNKNOWN: "unknown",
    LetterStatus.SUPPRESSED: "suppressed",
    LetterStatus.HELD_OUT: "held_out",
}


@dataclass
class StatsRow:
    letter: str
    locale: str
    scheduled: int = 0
    sent: int = 0
    failed: int = 0
    unknown: int = 0
    suppressed: int = 0
    held_out: int = 0  # an experiment's holdout: planned, never sent
    human_opens: int = 0
    machine_opens: int = 0
    clicks: int = 0
    unsubscribes: int = 0
    opened: int = 0  # sent letters with at least one human open
    clicked: int = 0  # sent letters with at least one click

    @property
    def open_rate(self) -> float | None:
        return round(self.opened / self.sent, 4) if self.sent else None

    @property
    def click_rate(self) -> float | None:
        return round(self.clicked / self.sent, 4) if self.sent else None

    def as_dict(self) -> dict[str, Any]:
        """The shape `thankly stats --json` and `GET /admin/stats` answer with."""
        row = asdict(self)
        del row["opened"], row["clicked"]
        return row | {"open_rate": self.open_rate, "click_rate": self.click_rate}


def _since(column: Any, since: datetime | None) -> list[ColumnElement[bool]]:
    return [] if since is None else [column >= since]


def _per_group(query: Any) -> Any:
    # Any: Select is generic over its column types, which differ per query here.
    return query.group_by(Letter.letter, Letter.locale)


def stats_rows(factory: sessionmaker[Session], since: datetime | None = None) -> list[StatsRow]:
    """One row per (letter, locale) that has letters or hits in the period, sorted."""
    rows: dict[tuple[str, str], StatsRow] = {}

    def row(letter: str, locale: str) -> StatsRow:
        return rows.setdefault((letter, locale), StatsRow(letter, locale))

    created = _since(Letter.created_at, since)
    sent = [Letter.status == LetterStatus.SENT, *created]
    with factory() as session:
        by_status = _per_group(
            select(Letter.letter, Letter.locale, Letter.status, func.count()).where(*created)
        ).group_by(Letter.status)
        for letter, locale, status, n in session.execute(by_status):
            shown = _SHOWN_AS.get(status)
            if shown is not None:  # cancelled letters are not in the numbers
                setattr(row(letter, locale), shown, getattr(row(letter, locale), shown) + n)

        opens = _per_group(
            select(Letter.letter, Letter.locale, Open.kind, func.count())
            .select_from(Open)
            .join(Letter, Letter.id == Open.letter_id)
            .where(*_since(Open.at, since))
        ).group_by(Open.kind)
        for letter, locale, kind, n in session.execute(opens):
            target = row(letter, locale)
            if kind == "human":
                target.human_opens += n
            else:
                target.machine_opens += n

        hits: list[tuple[str, Any]] = [
            (
                "clicks",
                select(Letter.letter, Letter.locale, func.count())
                .select_from(Click)
                .join(Letter, Letter.id == Click.letter_id)
                .where(*_since(Click.at, since)),
            ),
            (
                "unsubscribes",
                select(Letter.letter, Letter.locale, func.count())
                .select_from(CrmActivity)
                .join(Letter, Letter.id == CrmActivity.letter_id)
                .where(
                    CrmActivity.kind == "contact.unsubscribed",
                    *_since(CrmActivity.created_at, since),
                ),
            ),
            (
                "opened",
                select(Letter.letter, Letter.locale, func.count()).where(
                    *sent,
                    exists().where(Open.letter_id == Letter.id, Open.kind == "human"),
                ),
            ),
            (
                "clicked",
                select(Letter.letter, Letter.locale, func.count()).where(
                    *sent, exists().where(Click.letter_id == Letter.id)
                ),
            ),
        ]
        for name, query in hits:
            for letter, locale, n in session.execute(_per_group(query)):
                setattr(row(letter, locale), name, n)
    return [rows[key] for key in sorted(rows)]


def stats(factory: sessionmaker[Session], since: datetime | None = None) -> list[dict[str, Any]]:
    """Per letter and locale, as plain dicts (see the module docstring for `since`)."""
    return [row.as_dict() for row in stats_rows(factory, since)]
