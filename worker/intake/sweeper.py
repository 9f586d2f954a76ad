"""Re-enqueue inbox rows that were accepted but never ingested.

The broker is not the source of truth: Redis may lose its queue (restart without
persistence, eviction, a flush). Every accepted webhook is in the inbox table, so a row
still pending a while after its last enqueue is simply enqueued again; ingest is idempotent.

"A while" doubles with each enqueue: under a backlog the first message is usually still
in the queue, and re-enqueueing every grace period would only lengthen that queue with
no-ops. A row lost by the broker is still found, at most grace * 2**MAX_DOUBLINGS later.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

from worker.db import indexed_by
from worker.models import InboxItem, InboxStatus

# The longest wait between two enqueues of a row is the grace period * 2**MAX_DOUBLINGS
# (64 minutes with the default 60 s grace).
MAX_DOUBLINGS = 6
BATCH = 500  # inbox rows re-enqueued by one sweep at most


def backed_off(
    last: InstrumentedAttribute[datetime] | InstrumentedAttribute[datetime | None],
    count: InstrumentedAttribute[int],
    now: datetime,
    grace: timedelta,
) -> ColumnElement[bool]:
    """Rows last enqueued at least grace * 2**(count - 1) ago, the exponent capped at
    MAX_DOUBLINGS. One branch per count keeps it plain SQL on SQLite and PostgreSQL."""
    branches = [last.is_(None), and_(count <= 1, last < now - grace)]
    for doublings in range(1, MAX_DOUBLINGS):
        branches.append(and_(count == doublings + 1, last < now - grace * 2**doublings))
    branches.append(and_(count > MAX_DOUBLINGS, last < now - grace * 2**MAX_DOUBLINGS))
    return or_(*branches)


def claim_stale_inbox(
    session_factory: sessionmaker[Session], now: datetime, grace: timedelta, limit: int = BATCH
) -> list[int]:
    """Ids of pending rows whose back-off since their last enqueue ran out (a grace
    period after the first, doubling with each), marked as enqueued now.

    Rows are claimed with a conditional update, so two sweepers running at once do not
    both re-enqueue a row (and if they did, ingest would still run once).
    """
    stale = backed_off(InboxItem.enqueued_at, InboxItem.enqueue_count, now, grace)
    due = (InboxItem.status == InboxStatus.PENDING, stale)
    with session_factory.begin() as session:
        query = select(InboxItem.id).where(*due).order_by(InboxItem.id).limit(limit)
        ids = list(session.scalars(indexed_by(query, InboxItem, "ix_inbox_status_enqueued_at")))
        if not ids:
            return []
        # One conditional UPDATE … RETURNING, as for due letters: only rows still pending
        # and stale are claimed, whatever another sweeper did meanwhile.
        return sorted(
            session.scalars(
                update(InboxItem)
                .where(InboxItem.id.in_(ids), *due)
                .values(enqueued_at=now, enqueue_count=InboxItem.enqueue_count + 1)
                .returning(InboxItem.id)
            ).all()
        )
