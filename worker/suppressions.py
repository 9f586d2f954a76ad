"""The suppression list: addresses that get no letters, and lifting that, audited.

The one module that knows how an address gets suppressed (`suppress`: the list and its
pending letters; `unsubscribe_from_letter`: the one-click link, with its audit entry and
CRM activity) and what "suppressed" means (`suppression_reason`, asked when planning and
again when sending). Planning, tracking, sending, the CLI and the admin API call it;
bounces will too.

An address lands here from a `contact.unsubscribed` event, the one-click link in a letter,
or an operator (`thankly suppressions add`, `POST /admin/suppressions`). Either way its
pending letters become `suppressed` in the same transaction. Lifting a suppression lets
later events plan letters again; letters already `suppressed` stay so (they were meant
for a moment that has passed, and replay refuses them).

A manual add does not tell the CRM: CRM activities describe what happened to a letter
(the envelope names the letter and its Message-ID), and an operator adding an address by
hand is usually acting on a request the CRM or a person already holds. Reporting it as
`contact.unsubscribed` would claim the recipient clicked. The audit log records it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from worker.crm.activities import record
from worker.events import normalise_address
from worker.models import (
    PENDING_LETTER_STATUSES,
    AuditEntry,
    Event,
    Letter,
    LetterStatus,
    Suppression,
)

REASON_COLUMN = 64  # suppressions.reason; the audit log keeps the full text
ADDED, LIFTED = "suppress", "unsuppress"
LINK_ACTOR = "recipient (unsubscribe link)"  # the audit log's actor for link unsubscribes


class SuppressionError(Exception):
    """A one-line reason an operation was refused (bad address, not on the list)."""


class NotSuppressed(SuppressionError):
    pass


def normalise_email(text: str) -> str:
    """The address as every table stores it (`worker.events.normalise_address`), or refuse."""
    try:
        return normalise_address(text)
    except ValueError as exc:
        raise SuppressionError(f"{text!r} is not a valid email address: {exc}") from None


def suppression_reason(session: Session, email: str) -> str | None:
    """Why the address gets no letters (e.g. `unsubscribed on 2026-11-20`), or None when it
    is not suppressed. Asked when planning and again when sending."""
    row = session.scalars(select(Suppression).where(Suppression.email == email)).first()
    if row is None:
        return None
    day = row.created_at.date().isoformat()
    if row.reason.startswith("unsubscribed"):
        return f"{row.reason} on {day}"  # by event, or "unsubscribed (link)"
    return f"suppressed by hand on {day}: {row.reason}"


def _short(reason: str) -> str:
    return reason if len(reason) <= REASON_COLUMN else reason[: REASON_COLUMN - 1] + "…"


def suppress(
    session: Session,
    email: str,
    reason: str,
    now: datetime,
    *,
    event_id: int | None = None,
    letter_reason: str = "unsubscribed",
) -> tuple[bool, list[int]]:
    """Put a normalised address on the list (a no-op if it is there) and suppress its
    scheduled and queued letters. Returns (newly added, ids of letters suppressed now)."""
    added = True
    try:
        with session.begin_nested():
            session.add(
                Suppression(email=email, reason=_short(reason), created_at=now, event_id=event_id)
            )
    except IntegrityError:
        added = False  # already suppressed: a second unsubscribe changes nothing
    ids = session.scalars(
        update(Letter)
        .where(Letter.contact_email == email, Letter.status.in_(PENDING_LETTER_STATUSES))
        .values(status=LetterStatus.SUPPRESSED, status_reason=letter_reason, updated_at=now)
        .returning(Letter.id)
    ).all()
    return added, sorted(ids)


def audit(
    session: Session,
    now: datetime,
    actor: str,
    action: str,
    email: str,
    reason: str | None,
    details: dict[str, Any],
    letter_id: int | None = None,
) -> None:
    session.add(
        AuditEntry(
            at=now,
            actor=actor[:128],
            action=action,
            letter_id=letter_id,
            email=email,
            reason=reason,
            details=details,
        )
    )


# --- what operators call ---------------------------------------------------------------


@dataclass
class Added:
    email: str
    added: bool  # False: it was on the list already, nothing changed
    since: datetime
    reason: str
    suppressed_letters: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "email": self.email,
            "added": self.added,
            "since": self.since.isoformat(),
            "reason": self.reason,
            "suppressed_letters": self.suppressed_letters,
        }


@dataclass
class Lifted:
    email: str
    was_reason: str
    since: datetime
    letters_staying_suppressed: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "email": self.email,
            "removed": True,
            "was_reason": self.was_reason,
            "since": self.since.isoformat(),
            "letters_staying_suppressed": self.letters_staying_suppressed,
        }


def _reason(reason: str) -> str:
    reason = reason.strip()
    if not reason:
        raise SuppressionError("give a reason: it goes to the audit log")
    return reason


def add(
    factory: sessionmaker[Session], email: str, reason: str, now: datetime, *, actor: str
) -> Added:
    address, why = normalise_email(email), _reason(reason)
    with factory.begin() as session:
        added, ids = suppress(
            session, address, why, now, letter_reason=f"suppressed by {actor}: {_short(why)}"
        )
        if added:
            audit(session, now, actor, ADDED, address, why, {"suppressed_letters": ids})
            return Added(address, True, now, _short(why), ids)
        row = session.scalars(select(Suppression).where(Suppression.email == address)).one()
        return Added(address, False, row.created_at, row.reason, ids)


def remove(
    factory: sessionmaker[Session], email: str, reason: str, now: datetime, *, actor: str
) -> Lifted:
    address, why = normalise_email(email), _reason(reason)
    with factory.begin() as session:
        row = session.scalars(select(Suppression).where(Suppression.email == address)).first()
        if row is None:
            raise NotSuppressed(f"{address} is not on the suppression list")
        lifted = Lifted(address, row.reason, row.created_at, 0)
        session.execute(delete(Suppression).where(Suppression.id == row.id))
        lifted.letters_staying_suppressed = int(
            session.scalar(
                select(func.count())
                .select_from(Letter)
                .where(Letter.contact_email == address, Letter.status == LetterStatus.SUPPRESSED)
            )
            or 0
        )
        audit(
            session,
            now,
            actor,
            LIFTED,
            address,
            why,
            {
                "was_reason": row.reason,
                "since": row.created_at.isoformat(),
                "event_id": row.event_id,
                "letters_staying_suppressed": lifted.letters_staying_suppressed,
            },
        )
        return lifted


def list_suppressions(
    factory: sessionmaker[Session], contact: str | None = None
) -> list[dict[str, Any]]:
    """Newest first: address, reason, since, and by which event or actor."""
    with factory() as session:
        q = (
            select(Suppression, Event.external_id)
            .outerjoin(Event, Event.id == Suppression.event_id)
            .order_by(Suppression.created_at.desc(), Suppression.id.desc())
        )
        if contact is not None:
            q = q.where(Suppression.email == normalise_email(contact))
        rows = session.execute(q).all()
        # Who added each address by hand or by link: its newest `suppress` audit entry.
        actors: dict[str, str] = {}
        listed = select(Suppression.email)
        if contact is not None:
            listed = listed.where(Suppression.email == normalise_email(contact))
        for email, actor in session.execute(
            select(AuditEntry.email, AuditEntry.actor)
            .where(AuditEntry.action == ADDED, AuditEntry.email.in_(listed))
            .order_by(AuditEntry.id)
        ):
            actors[str(email)] = actor
        return [
            {
                "email": row.email,
                "reason": row.reason,
                "since": row.created_at.isoformat(),
                "by": f"event {external_id}" if external_id else actors.get(row.email),
            }
            for row, external_id in rows
        ]


def unsubscribe_from_letter(
    factory: sessionmaker[Session], letter_id: int, now: datetime
) -> tuple[str, str] | None:
    """Suppress the letter's address at once. Idempotent. Returns (address, the letter's
    locale), None when there is no such letter."""
    with factory.begin() as session:
        letter = session.get(Letter, letter_id)
        if letter is None:
            return None
        email = letter.contact_email
        added, ids = suppress(session, email, "unsubscribed (link)", now)
        if added:
            details = {"via": "one-click link", "suppressed_letters": ids}
            audit(session, now, LINK_ACTOR, ADDED, email, None, details, letter_id=letter.id)
        record(
            session,
            letter,
            "contact.unsubscribed",
            f"unsubscribed:{email}",
            now,
            {"via": "one-click link"},
        )
        return email, letter.locale
