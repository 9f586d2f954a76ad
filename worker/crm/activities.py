"""Recording an activity in the same transaction as the change that caused it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from worker.db import insert_or_skip
from worker.models import ActivityStatus, CrmActivity, Event, Letter

KINDS = (
    "email.sent",
    "email.opened",
    "email.clicked",
    "email.failed",
    "contact.unsubscribed",
    # An experiment's holdout letter reached the time it would have gone (only when the
    # experiment sets note_held_out): the CRM can see who was left out, and when.
    "email.held_out",
)


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def letter_payload(
    session: Session,
    letter: Letter,
    kind: str,
    at: datetime,
    details: dict[str, Any],
    source: str | None = None,
) -> dict[str, Any]:
    """The write-back envelope: type, timestamp, data {letter id, letter, subject, Message-ID,
    contact, deal, details, source, experiment, arm}. `source` is where the event came from
    (`hubspot`, `generic`): write-back goes to that CRM when Thankly is connected to it
    natively; read from the letter's event unless the caller already has it. `arm` (a
    variant's name or `holdout`) is on every activity of an experiment's letter, so the
    CRM's own reports can segment by it."""
    if source is None:
        source = session.scalar(select(Event.source).where(Event.id == letter.event_id))
    return {
        "type": kind,
        "timestamp": _iso(at),
        "data": {
            "letter_id": letter.id,
            "letter": letter.letter,
            "locale": letter.locale,
            "subject": (letter.rendered or {}).get("subject"),
            "message_id": letter.message_id,
            "contact": {"id": letter.contact_id, "email": letter.contact_email},
            "deal": {"id": letter.deal_id} if letter.deal_id else None,
            "details": details,
            "source": source,
            "experiment": letter.experiment,
            "arm": letter.arm,
        },
    }


_INSERTS: dict[str, Any] = {}


def _insert_new(session: Session) -> Any:
    """INSERT … ON CONFLICT (idempotency_key) DO NOTHING, built once per database kind
    (building it costs more than running it); the values come in as parameters."""
    dialect = session.get_bind().dialect.name
    statement = _INSERTS.get(dialect)
    if statement is None:
        statement = _INSERTS[dialect] = (
            insert_or_skip(session, CrmActivity)
            .on_conflict_do_nothing(index_elements=["idempotency_key"])
            # The row it added, none when the key was there: the one answer both databases
            # give alike (psycopg leaves this INSERT's rowcount at -1).
            .returning(CrmActivity.id)
        )
    return statement


def record(
    session: Session,
    letter: Letter,
    kind: str,
    key: str,
    at: datetime,
    details: dict[str, Any] | None = None,
    *,
    source: str | None = None,
    recorded_at: datetime | None = None,
) -> bool:
    """Add the activity unless one with this key exists (then it is a no-op, False).
    `at` is when it happened and when it may be delivered; `recorded_at` (default `at`)
    is now, for an activity dated in the future (a holdout letter's would-be send).

    One INSERT … ON CONFLICT DO NOTHING (PostgreSQL and SQLite alike): no savepoint, and a
    concurrent writer of the same key waits for the other's transaction instead of failing
    it."""
    assert kind in KINDS
    values = {
        "letter_id": letter.id,
        "kind": kind,
        "idempotency_key": key,
        "payload": letter_payload(session, letter, kind, at, details or {}, source),
        "status": ActivityStatus.PENDING,
        "attempts": 0,
        "next_attempt_at": at,
        "created_at": recorded_at or at,
        "updated_at": recorded_at or at,
    }
    added = session.connection().execute(_insert_new(session), values)
    return added.first() is not None
