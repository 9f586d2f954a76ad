"""Delivering the activity outbox: claim, POST with retries, record the result.

A CRM outage of hours loses nothing: an activity stays pending with a growing
`next_attempt_at` (Retry-After when the CRM gives one) and the scheduler tick enqueues it
again when due. Only a permanent refusal (4xx other than 408/429) ends in `failed`; any
other failure, even one no CrmError describes, is recorded on the activity and retried
with backoff, so nothing is left `delivering` to be re-claimed every lease forever.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from worker.clock import Clock
from worker.crm.adapters import CrmAdapter, CrmError
from worker.db import indexed_by
from worker.models import ActivityStatus, CrmActivity
from worker.retry import backoff, call_with_retries

log = logging.getLogger(__name__)
# THANKLY_CRM_LEASE_SECONDS's default: how long a claimed activity is left to its task.
LEASE = timedelta(minutes=5)
MAX_BACKOFF = timedelta(hours=1)
MAX_WAIT_IN_TASK = 30.0
BATCH = 200  # activities claimed by one tick at most


def claim_due_activities(
    session_factory: sessionmaker[Session],
    now: datetime,
    limit: int = BATCH,
    lease: timedelta = LEASE,
) -> list[int]:
    """Pending activities that are due, plus ones whose delivery lease ran out (a worker
    died mid-POST, or the broker lost the task: the Idempotency-Key makes sending them
    again safe).

    A lease that ran out is most often a task still waiting behind a backlog (a slow or
    busy CRM), not a lost one. Re-claiming it every lease would queue one more copy each
    time and swell the backlog further, so a re-claimed activity's next lease is as long as
    it has existed (at least `lease`, at most MAX_BACKOFF): copies come at doubling
    intervals, and a task the broker really lost is still found."""
    pending = (CrmActivity.status == ActivityStatus.PENDING) & (CrmActivity.next_attempt_at <= now)
    expired = (CrmActivity.status == ActivityStatus.DELIVERING) & (
        CrmActivity.next_attempt_at <= now
    )
    with session_factory.begin() as session:
        query = (
            select(CrmActivity.id, CrmActivity.status, CrmActivity.created_at)
            .where(pending | expired)
            .order_by(CrmActivity.id)
            .limit(limit)
        )
        # Most activities are delivered long ago: read the two due ranges of the index.
        rows = session.execute(
            indexed_by(query, CrmActivity, "ix_crm_activities_status_next")
        ).all()
        if not rows:
            return []
        claimed = list(
            session.scalars(
                update(CrmActivity)
                # `pending` picks the first claims among these rows; re-claims follow.
                .where(CrmActivity.id.in_([r.id for r in rows]), pending)
                .values(
                    status=ActivityStatus.DELIVERING, next_attempt_at=now + lease, updated_at=now
                )
                .returning(CrmActivity.id)
            )
        )
        for row in rows:
            if row.status != ActivityStatus.DELIVERING:
                continue
            longer = min(max(lease, now - row.created_at), MAX_BACKOFF)
            again = session.execute(
                update(CrmActivity)
                .where(CrmActivity.id == row.id, expired)
                .values(next_attempt_at=now + longer, updated_at=now)
            )
            if getattr(again, "rowcount", 0) == 1:
                claimed.append(row.id)
        return sorted(claimed)


def deliver_activity(
    session_factory: sessionmaker[Session],
    crm: CrmAdapter,
    clock: Clock,
    activity_id: int,
    *,
    tries: int = 3,
    wait_base: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    lease: timedelta = LEASE,
) -> str:
    with session_factory() as session:
        activity = session.get(CrmActivity, activity_id)
        if activity is None or activity.status != ActivityStatus.DELIVERING:
            return "skipped"
        key, payload, attempts = activity.idempotency_key, activity.payload, activity.attempts
        created = activity.created_at

    now = clock.now()
    # Older than a lease: a worker may have sent it and died before recording the answer
    # (its attempt is not counted then), so the CRM may have it already.
    maybe_sent = attempts > 0 or now - created >= lease
    made = 0

    def attempt() -> None:
        nonlocal made
        made += 1
        # Tried before (this round, an earlier one, or by a worker that died).
        crm.deliver(key, payload, retry=maybe_sent or made > 1)

    try:
        # A short Retry-After is waited for here; a long one by rescheduling the activity.
        call_with_retries(
            attempt, tries=tries, wait_base=wait_base, max_wait=MAX_WAIT_IN_TASK, sleep=sleep
        )
    except Exception as exc:  # every failure is recorded: none may strand the activity
        return _record_failure(
            session_factory, clock, activity_id, exc, now, attempts + made, tries
        )
    with session_factory.begin() as session:
        session.execute(
            update(CrmActivity)
            .where(CrmActivity.id == activity_id)
            .values(
                status=ActivityStatus.DELIVERED,
                attempts=attempts + made,
                last_error=None,
                delivered_at=clock.now(),
                updated_at=clock.now(),
            )
        )
    return "delivered"


def retry_delay(total_attempts: int, tries: int, retry_after: float | None) -> timedelta:
    """30 s, 1 min, 2 min, … per failed round of `tries`, at most an hour; at least what
    the CRM asked for."""
    rounds = max(1, -(-total_attempts // max(tries, 1)))
    return backoff(rounds, base=timedelta(seconds=30), cap=MAX_BACKOFF, retry_after=retry_after)


def _record_failure(
    session_factory: sessionmaker[Session],
    clock: Clock,
    activity_id: int,
    exc: Exception,
    now: datetime,
    total: int,
    tries: int,
) -> str:
    if isinstance(exc, CrmError) and exc.permanent:
        values: dict[str, object] = {"status": ActivityStatus.FAILED}
        outcome = "failed"
    else:
        retry_after = exc.retry_after if isinstance(exc, CrmError) else None
        delay = retry_delay(total, tries, retry_after)
        values = {"status": ActivityStatus.PENDING, "next_attempt_at": now + delay}
        outcome = "retry"
    error = str(exc) if isinstance(exc, CrmError) else f"{type(exc).__name__}: {exc}"
    with session_factory.begin() as session:
        session.execute(
            update(CrmActivity)
            .where(CrmActivity.id == activity_id)
            .values(attempts=total, last_error=error[:2000], updated_at=clock.now(), **values)
        )
    # The key and an unexpected error's text may hold the address: logged by id and type.
    reason = str(exc) if isinstance(exc, CrmError) else f"unexpected {type(exc).__name__}"
    log.warning("CRM activity %s: %s -> %s", activity_id, reason, outcome)
    return outcome
