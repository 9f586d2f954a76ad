"""Storing accepted webhooks: the inbox keeps each event verbatim, once per (source, id).

The webhook is answered only after this commits. A request with several events is stored
in one transaction: all of its new events, or none.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from worker.db import insert_or_skip
from worker.intake.sources import RawEvent
from worker.models import InboxItem, InboxStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Accepted:
    inbox_id: int
    event_id: str
    duplicate: bool


def accept(
    session_factory: sessionmaker[Session], source: str, event_id: str, body: bytes, now: datetime
) -> Accepted:
    """Store one verified, validated event; a second delivery of the same id is a no-op."""
    [accepted] = accept_batch(session_factory, source, [RawEvent(event_id, body.decode())], now)
    return accepted


def accept_batch(
    session_factory: sessionmaker[Session],
    source: str,
    events: Sequence[RawEvent],
    now: datetime,
    *,
    enqueued: bool = True,
) -> list[Accepted]:
    """Store a request's events, in order; ids seen before are duplicates, not errors.
    `enqueued=False` leaves the rows to the scheduler's next sweep (for callers that do
    not publish, such as reconciliation)."""
    # A concurrent delivery of the same id waits on the unique index and then finds the
    # row (ON CONFLICT DO NOTHING): no IntegrityError to retry, the batch commits whole.
    return _store(session_factory, source, events, now, enqueued)


def _store(
    session_factory: sessionmaker[Session],
    source: str,
    events: Sequence[RawEvent],
    now: datetime,
    enqueued: bool,
) -> list[Accepted]:
    """Each event is one INSERT … ON CONFLICT DO NOTHING RETURNING id (no ORM unit of
    work: this is the webhook's hot path); only an id stored before costs a second query,
    to tell a redelivery from a sender that reuses ids."""
    with session_factory.begin() as session:
        # (inbox id, body digest) of each id added by this request.
        seen: dict[str, tuple[int, str]] = {}
        out: list[Accepted] = []
        for event in events:
            digest = hashlib.sha256(event.body.encode("utf-8")).hexdigest()
            if event.event_id not in seen:
                added = session.execute(
                    insert_or_skip(session, InboxItem.__table__)
                    .values(
                        source=source,
                        event_id=event.event_id,
                        received_at=now,
                        body=event.body,
                        body_sha256=digest,
                        status=InboxStatus.PENDING,
                        # Counts as enqueued now: the sweeper waits its grace period before
                        # retrying. Not enqueued: the sweeper takes it at its next pass.
                        enqueued_at=now if enqueued else None,
                        enqueue_count=1 if enqueued else 0,
                    )
                    .on_conflict_do_nothing(index_elements=["source", "event_id"])
                    .returning(InboxItem.__table__.c.id)
                ).scalar()
                if added is not None:
                    seen[event.event_id] = (added, digest)
                    out.append(Accepted(added, event.event_id, duplicate=False))
                    continue
                seen |= _existing(session, source, [event.event_id])
            first_id, first_digest = seen[event.event_id]
            if first_digest != digest:
                # Same id, different body: the sender reuses ids. We keep the first (the
                # id is the contract), but say so loudly: the second is not processed.
                log.warning(
                    "%s webhook %s redelivered with a different body; kept the first",
                    source,
                    event.event_id,
                )
            out.append(Accepted(first_id, event.event_id, duplicate=True))
        return out


def _existing(session: Session, source: str, ids: list[str]) -> dict[str, tuple[int, str]]:
    rows = session.execute(
        select(InboxItem.event_id, InboxItem.id, InboxItem.body_sha256).where(
            InboxItem.source == source, InboxItem.event_id.in_(set(ids))
        )
    )
    return {event_id: (inbox_id, digest) for event_id, inbox_id, digest in rows}
