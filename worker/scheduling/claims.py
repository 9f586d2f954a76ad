"""Claiming due letters for sending: the scheduler tick's half that concerns letters.

A letter is claimed by moving it from `scheduled` to `queued` in a committed transaction
before its send task is enqueued. On PostgreSQL the candidate rows are locked with
`FOR UPDATE SKIP LOCKED`, so concurrent schedulers take disjoint batches instead of
waiting on each other; on both backends the update is conditional on the status, so a
row is claimed once however many schedulers run. `letters.enqueue_count` counts the
enqueues since the letter was last claimed (a claim starts it at 1), and the sweep of
queued letters backs off by it: a letter retried or replayed many times is not made to
wait the longest back-off when its next message is lost.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from worker.db import indexed_by
from worker.intake.sweeper import backed_off
from worker.models import ActivityStatus, CrmActivity, Letter, LetterStatus

BATCH = 200  # letters claimed by one tick at most; a full batch means more may be due
# What every sweep of letters by status reads on SQLite (see indexed_by).
STATUS_INDEX = "ix_letters_status_due_at"


def claim_due_letters(
    session_factory: sessionmaker[Session], now: datetime, limit: int = BATCH
) -> list[int]:
    with session_factory.begin() as session:
        query = indexed_by(
            select(Letter.id)
            .where(Letter.status == LetterStatus.SCHEDULED, Letter.due_at <= now)
            .order_by(Letter.due_at, Letter.id)
            .limit(limit),
            Letter,
            STATUS_INDEX,
        )
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        ids = list(session.scalars(query))
        if not ids:
            return []
        claimed = session.scalars(
            update(Letter)
            .where(Letter.id.in_(ids), Letter.status == LetterStatus.SCHEDULED)
            .values(
                status=LetterStatus.QUEUED,
                updated_at=now,
                enqueue_count=1,
            )
            .returning(Letter.id)
        ).all()
    return sorted(claimed)


def next_due(session_factory: sessionmaker[Session]) -> datetime | None:
    """When the next scheduled letter or pending CRM activity falls due (an index read)."""
    with session_factory() as session:
        letter = session.scalar(
            select(func.min(Letter.due_at)).where(Letter.status == LetterStatus.SCHEDULED)
        )
        activity = session.scalar(
            select(func.min(CrmActivity.next_attempt_at)).where(
                CrmActivity.status == ActivityStatus.PENDING
            )
        )
    found = [t for t in (letter, activity) if t is not None]
    return min(found) if found else None


def claim_stuck_queued(
    session_factory: sessionmaker[Session], now: datetime, grace: timedelta, limit: int = BATCH
) -> list[int]:
    """Queued letters whose send task never started (lost by the broker, or still behind
    a backlog): enqueue again, a grace period after the claim and then after twice as long
    each time (see worker.intake.sweeper). The send task claims `queued → sending`
    conditionally, so a duplicate is harmless, only wasted."""
    stuck = (
        Letter.status == LetterStatus.QUEUED,
        backed_off(Letter.updated_at, Letter.enqueue_count, now, grace),
    )
    with session_factory.begin() as session:
        query = select(Letter.id).where(*stuck).order_by(Letter.id).limit(limit)
        ids = list(session.scalars(indexed_by(query, Letter, STATUS_INDEX)))
        if not ids:
            return []
        return sorted(
            session.scalars(
                update(Letter)
                .where(Letter.id.in_(ids), *stuck)
                .values(updated_at=now, enqueue_count=Letter.enqueue_count + 1)
                .returning(Letter.id)
            ).all()
        )


def mark_stale_sending_unknown(
    session_factory: sessionmaker[Session], now: datetime, timeout: timedelta
) -> list[int]:
    """Letters stuck in `sending` (the worker died mid-send, or could not record the
    result): the server may have accepted them, so they become `unknown`, never resent."""
    cutoff = now - timeout
    stale = (Letter.status == LetterStatus.SENDING, Letter.updated_at < cutoff)
    lost: list[int] = []
    with session_factory.begin() as session:
        # Found through the index first (SQLAlchemy renders no hint in an UPDATE), then
        # updated by id on the same condition: a letter whose outcome landed meanwhile is
        # left alone.
        ids = list(
            session.scalars(indexed_by(select(Letter.id).where(*stale), Letter, STATUS_INDEX))
        )
        for start in range(0, len(ids), BATCH):  # within any driver's limit on parameters
            lost += session.scalars(
                update(Letter)
                .where(Letter.id.in_(ids[start : start + BATCH]), *stale)
                .values(
                    status=LetterStatus.UNKNOWN,
                    updated_at=now,
                    # Dead worker or merely slow send: the scheduler cannot tell which. A
                    # late answer from a slow one still lands on the letter (sending.py).
                    last_error=(
                        f"no outcome within {int(timeout.total_seconds())} s of sending (the "
                        "worker stopped, or the send is still running); it may have been sent"
                    ),
                )
                .returning(Letter.id)
            ).all()
    return sorted(lost)
