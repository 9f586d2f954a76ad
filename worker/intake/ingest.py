"""From a stored webhook to the canonical event, exactly once.

`ingest` turns one inbox row into one canonical event, however often it is called or
however many workers call it at the same time. The row's source translates it first,
outside any transaction (a CRM source may ask its API for details); then a short
transaction claims the row by conditional update and writes the event and its letters.

The one retry/park policy for a source's failures: a `CallError` that can pass (a 429, a
5xx, a timeout) leaves the row pending and the sweeper tries it again with a doubling wait,
never less than the Retry-After; a failure that will repeat (bad data, an object that is
gone) parks the row `failed` with the reason, for an admin to see.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from worker.clock import Clock
from worker.events import GenericEvent, InvalidEvent
from worker.intake.generic import GenericSource
from worker.intake.sources import Source
from worker.metrics import INGEST_LAG_SECONDS
from worker.models import Event, InboxItem, InboxStatus
from worker.retry import CallError, backoff

log = logging.getLogger(__name__)

# Applies a new event to the letters table inside the ingest transaction (worker.planning.planner).
OnEvent = Callable[[Session, Event, GenericEvent, datetime], object]
# The source that stored a row, by name; None when no such source is registered any more.
SourceFor = Callable[[str], Source | None]

# A Retry-After longer than this is not believed (the sweeper's own doubling then applies).
MAX_RETRY_AFTER = timedelta(hours=1)


def _builtin_only(name: str) -> Source | None:
    # Translating a generic row needs no settings; other sources come from the runtime.
    return GenericSource() if name == "generic" else None


@dataclass(frozen=True)
class IngestResult:
    outcome: str  # "ingested" | "already" | "missing" | "invalid" | "retry"
    event_id: int | None = None


def ingest(
    session_factory: sessionmaker[Session],
    inbox_id: int,
    clock: Clock,
    on_event: OnEvent | None = None,
    source_for: SourceFor = _builtin_only,
) -> IngestResult:
    """Create the canonical event for one inbox row, and its letters, in one transaction.
    Idempotent and safe to run concurrently."""
    with session_factory() as session:
        item = session.get(InboxItem, inbox_id)
        if item is None:
            return IngestResult("missing")
        if item.status != InboxStatus.PENDING:
            return IngestResult("already")
        source_name, external_id, raw = item.source, item.event_id, item.body
        received_at = item.received_at

    source = source_for(source_name)
    try:
        if source is None:
            raise ValueError(f"no source named {source_name!r} is registered")
        parsed = source.translate(raw)
    except CallError as exc:
        if not exc.permanent:
            return _retry_later(session_factory, inbox_id, clock.now(), source_name, exc)
        return _park(session_factory, inbox_id, clock.now(), f"{source_name}: {exc}")
    except (ValueError, InvalidEvent, RecursionError) as exc:
        # Cannot happen for rows the intake validated, unless validation got stricter since
        # (a row stored before the nesting limit can be too deep to parse here). Park the
        # row with the reason instead of retrying it forever.
        return _park(session_factory, inbox_id, clock.now(), str(exc))

    now = clock.now()
    with session_factory.begin() as session:
        # Claim by conditional update: a concurrent ingest of the same row waits on the row
        # lock and then updates nothing, so only one of them creates the event.
        if not _claim(session, inbox_id, InboxStatus.PROCESSED, now):
            return IngestResult("already")
        event = Event(
            inbox_id=inbox_id,
            source=source_name,
            external_id=external_id,
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
        log.info("ingested %s event %s as #%s", parsed.type, external_id, event.id)
        event_id = event.id
    INGEST_LAG_SECONDS.observe(max(0.0, (now - received_at).total_seconds()))
    return IngestResult("ingested", event_id)


def _park(
    session_factory: sessionmaker[Session], inbox_id: int, now: datetime, reason: str
) -> IngestResult:
    with session_factory.begin() as session:
        claimed = _claim(session, inbox_id, InboxStatus.FAILED, now, error=reason[:2000])
    log.error("inbox row %s is not a valid event: %s", inbox_id, reason)
    return IngestResult("invalid" if claimed else "already")


def _retry_later(
    session_factory: sessionmaker[Session],
    inbox_id: int,
    now: datetime,
    source: str,
    exc: CallError,
) -> IngestResult:
    """Keep the row pending with the reason. The sweeper re-enqueues it once its back-off
    since `enqueued_at` has run out; moving `enqueued_at` forward by the Retry-After makes
    that wait at least as long as the CRM asked."""
    # The doubling is the sweeper's; this adds what the CRM asked for, clamped.
    asked = backoff(1, base=timedelta(0), cap=MAX_RETRY_AFTER, retry_after=exc.retry_after)
    with session_factory.begin() as session:
        session.execute(
            update(InboxItem)
            .where(InboxItem.id == inbox_id, InboxItem.status == InboxStatus.PENDING)
            .values(enqueued_at=now + asked, error=f"{source}: {exc}"[:2000])
        )
    log.warning("inbox row %s: %s did not answer (%s); tried again later", inbox_id, source, exc)
    return IngestResult("retry")


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
