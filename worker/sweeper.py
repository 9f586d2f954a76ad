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

    Each row is claimed with a conditional update, so two sweepers running at once do not
    both re-enqueue it (and if they did, ingest would still run once).
    """
    cutoff = now - grace
    stale = or_(InboxItem.enqueued_at.is_(None), InboxItem.enqueued_at < cutoff)
    claimed: list[int] = []
    with session_factory.begin() as session:
        ids = session.scalars(
            select(InboxItem.id)
            .where(InboxItem.status == InboxStatus.PENDING, stale)
            .order_by(InboxItem.id)
            .limit(limit)
        ).all()
        for inbox_id in ids:
            result = session.execute(
                update(InboxItem)
                .where(InboxItem.id == inbox_id, InboxItem.status == InboxStatus.PENDING, stale)
                .values(enqueued_at=now, enqueue_count=InboxItem.enqueue_count + 1)
            )
            if getattr(result, "rowcount", 0) == 1:
                claimed.append(inbox_id)
    return claimed
