"""Finding letters for admins: one filter for the CLI, the API and bulk operations."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeVar, get_args

from sqlalchemy import Select, exists, func, select
from sqlalchemy.orm import Session, sessionmaker

from worker.models import (
    Attempt,
    Letter,
)

# Spelt out as Literals so the admin API answers a typo with 422 and the valid values;
# tests keep them equal to LetterStatus and to the classes the senders raise.
StatusName = Literal[
    "scheduled",
    "queued",
    "sending",
    "sent",
    "failed",
    "unknown",
    "cancelled",
    "suppressed",
    "held_out",
]
ErrorClass = Literal[
    "connect",
    "ehlo",
    "auth",
    "mail",
    "rcpt",
    "data",
    "data-end",
    "after-data",
    "outbox",
    "render",
    "wire-check",
]
STATUSES: tuple[str, ...] = get_args(StatusName)
ERROR_CLASSES: tuple[str, ...] = get_args(ErrorClass)
_Q = TypeVar("_Q", bound=Select[Any])  # a query the filter narrows


@dataclass
class LetterFilter:
    ids: list[int] = field(default_factory=list)
    status: str | None = None
    letter: str | None = None
    locale: str | None = None
    contact: str | None = None
    since: datetime | None = None  # on the letter's last change (a failure, a send, …)
    until: datetime | None = None
    error_class: str | None = None  # any attempt of the letter failed with this class
    limit: int | None = None
    offset: int = 0
    newest_first: bool = False  # lists show the newest; replays pace the oldest first

    def query(self) -> Select[Letter]:
        q = self._where(select(Letter))
        q = q.order_by(Letter.id.desc() if self.newest_first else Letter.id).offset(self.offset)
        return q.limit(self.limit) if self.limit else q

    def count(self) -> Select[int]:
        """How many letters match, ignoring the page."""
        return self._where(select(func.count()).select_from(Letter))

    def _where(self, q: _Q) -> _Q:
        if self.ids:
            q = q.where(Letter.id.in_(self.ids))
        if self.status:
            q = q.where(Letter.status == self.status)
        if self.letter:
            q = q.where(Letter.letter == self.letter)
        if self.locale:
            q = q.where(Letter.locale == self.locale)
        if self.contact:
            q = q.where(Letter.contact_email == self.contact.strip().lower())
        if self.since:
            q = q.where(Letter.updated_at >= self.since)
        if self.until:
            q = q.where(Letter.updated_at < self.until)
        if self.error_class:
            q = q.where(
                exists().where(
                    Attempt.letter_id == Letter.id, Attempt.error_class == self.error_class
                )
            )
        return q


def find_letters(factory: sessionmaker[Session], flt: LetterFilter) -> list[Letter]:
    with factory() as session:
        return list(session.scalars(flt.query()))


def count_letters(factory: sessionmaker[Session], flt: LetterFilter) -> int:
    with factory() as session:
        return session.scalar(flt.count()) or 0


def summary(letter: Letter) -> dict[str, Any]:
    return {
        "id": letter.id,
        "status": letter.status,
        "letter": letter.letter,
        "locale": letter.locale,
        "contact": letter.contact_email,
        "due_at": letter.due_at.isoformat(),
        "updated_at": letter.updated_at.isoformat(),
        "attempts": letter.attempt_count,
        "last_error": letter.last_error,
        "subject": (letter.rendered or {}).get("subject"),
        "experiment": letter.experiment,
        "arm": letter.arm,
    }
