"""Re-enqueue inbox rows that were accepted but never ingested.

The broker is not the source of truth: Redis may lose its queue (restart without
persistence, eviction, a flush). Every accepted webhook is in the inbox table, so a row
still pending a while after its last enqueue is simply enqueued again; ingest is idempotent.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from worker.models import InboxItem, InboxStatus


def claim_stale_inbox(
    session_factory: sessionmaker[Session], now: datetime, grace: timedelta, limit: int = 500
) -> list[int]:
    """Ids of pending rows last enqueued before `now - grace`, marked as enqueued now.

    Rows are claimed with a conditional update, so two sweepers running at once do not
    both re-enqueue a row (and if they did, ingest would still run once).
    """
    cutoff = now - grace
    stale = or_(InboxItem.enqueued_at.is_(None), InboxItem.enqueued_at < cutoff)
    due = (InboxItem.status == InboxStatus.PENDING, stale)
    with session_factory.begin() as session:
        ids = list(
            session.scalars(select(InboxItem.id).where(*due).order_by(InboxItem.id).limit(limit))
        )
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
