"""From webhook to canonical event.

`accept` stores the raw body durably (the webhook is answered only after it commits);
`ingest` turns one inbox row into one canonical event, exactly once, however often it is
called or however many workers call it at the same time.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from worker.clock import Clock
from worker.events import GenericEvent, InvalidEvent, parse_event_json
from worker.models import Event, InboxItem, InboxStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Accepted:
    inbox_id: int
    event_id: str
    duplicate: bool


def accept(
    session_factory: sessionmaker[Session], source: str, event_id: str, body: bytes, now: datetime
) -> Accepted:
    """Store a verified, validated webhook body; a second delivery of the same id is a no-op."""
    digest = hashlib.sha256(body).hexdigest()
    try:
        with session_factory.begin() as session:
            item = InboxItem(
                source=source,
                event_id=event_id,
                received_at=now,
                body=body.decode("utf-8"),
                body_sha256=digest,
                status=InboxStatus.PENDING,
                # Counts as enqueued now: the sweeper waits its grace period before retrying.
                enqueued_at=now,
                enqueue_count=1,
            )
            session.add(item)
            session.flush()
            return Accepted(item.id, event_id, duplicate=False)
    except IntegrityError:
        pass  # the unique (source, event_id) caught a redelivery, possibly a concurrent one
    with session_factory() as session:
        existing = session.execute(
            select(InboxItem.id, InboxItem.body_sha256).where(
                InboxItem.source == source, InboxItem.event_id == event_id
            )
        ).one()
    if existing.body_sha256 != digest:
        # Same id, different body: the sender reuses ids. We keep the first (the id is the
        # contract), but say so loudly since the second event is not processed.
        log.warning(
            "%s webhook %s redelivered with a different body; kept the first", source, event_id
        )
    return Accepted(existing.id, event_id, duplicate=True)


# Applies a new event to the letters table inside the ingest transaction (worker.planning.planner).
OnEvent = Callable[[Session, Event, GenericEvent, datetime], object]


@dataclass(frozen=True)
class IngestResult:
    outcome: str  # "ingested" | "already" | "missing" | "invalid"
    event_id: int | None = None


def ingest(
    session_factory: sessionmaker[Session],
    inbox_id: int,
    clock: Clock,
    on_event: OnEvent | None = None,
) -> IngestResult:
    """Create the canonical event for one inbox row, and its letters, in one transaction.
    Idempotent and safe to run concurrently."""
    now = clock.now()
    with session_factory.begin() as session:
        item = session.get(InboxItem, inbox_id)
        if item is None:
            return IngestResult("missing")
        if item.status != InboxStatus.PENDING:
            return IngestResult("already")
        try:
            parsed = parse_event_json(item.body)
        except (ValueError, InvalidEvent, RecursionError) as exc:
            # Cannot happen for rows the intake validated, unless validation got stricter
            # since (a row stored before the nesting limit can be too deep to parse here).
            # Park the row with the reason instead of retrying it forever.
            claimed = _claim(session, inbox_id, InboxStatus.FAILED, now, error=str(exc)[:2000])
            log.error("inbox row %s is not a valid event: %s", inbox_id, exc)
            return IngestResult("invalid" if claimed else "already")
        # Claim by conditional update: a concurrent ingest of the same row waits on the row
        # lock and then updates nothing, so only one of them creates the event.
        if not _claim(session, inbox_id, InboxStatus.PROCESSED, now):
            return IngestResult("already")
        event = Event(
            inbox_id=item.id,
            source=item.source,
            external_id=item.event_id,
            type=parsed.type,
            occurred_at=parsed.timestamp,
            contact_email=parsed.contact_email,
            contact_id=parsed.contact_id,
            deal_id=parsed.deal_id,
            payload=parsed.model_dump(mode="json"),
            created_at=now,
        )
        session.add(event)
        session.flush()
        if on_event is not None:
            on_event(session, event, parsed, now)
        log.info("ingested %s event %s as #%s", parsed.type, item.event_id, event.id)
        return IngestResult("ingested", event.id)


def mark_failed(
    session_factory: sessionmaker[Session], inbox_id: int, error: str, clock: Clock
) -> bool:
    """Park a row that ingest cannot process, with the reason, so the sweeper stops
    re-enqueueing it and an admin can see why."""
    with session_factory.begin() as session:
        return _claim(session, inbox_id, InboxStatus.FAILED, clock.now(), error=error[:2000])


def _claim(
    session: Session, inbox_id: int, status: str, now: datetime, error: str | None = None
) -> bool:
    result = session.execute(
        update(InboxItem)
        .where(InboxItem.id == inbox_id, InboxItem.status == InboxStatus.PENDING)
        .values(status=status, processed_at=now, error=error)
    )
    return bool(getattr(result, "rowcount", 0) == 1)
