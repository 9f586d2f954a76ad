"""The periodic loop of `thankly scheduler` (and of `thankly run`).

Each tick asks the database what is due and enqueues it; the broker never holds a timer.
The loop drains: after a tick that claimed a full batch it ticks again at once, and
otherwise rests until the next letter or activity falls due, at most the interval.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from worker.crm.outbox import BATCH as ACTIVITY_BATCH
from worker.crm.outbox import claim_due_activities
from worker.crm.reconcile import claim_due_runs, connected
from worker.healthcheck import HEARTBEAT_FILE
from worker.intake.sweeper import BATCH as INBOX_BATCH
from worker.intake.sweeper import claim_stale_inbox
from worker.metrics import LETTER_TRANSITIONS, TICK_SECONDS
from worker.models import LetterStatus
from worker.queue import (
    DELIVER_ACTIVITY,
    INGEST_INBOX,
    RECONCILE_CRM,
    SEND_LETTER,
    send_many_quietly,
    send_quietly,
)
from worker.runtime import Runtime
from worker.scheduling.claims import (
    BATCH,
    claim_due_letters,
    claim_stuck_queued,
    mark_stale_sending_unknown,
    next_due,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TickReport:
    inbox_requeued: int
    letters_queued: int = 0
    letters_requeued: int = 0
    letters_lost: int = 0
    activities_queued: int = 0
    # Some claim returned its whole batch: more may be due right now.
    full: bool = False


def pause_until(now: datetime, due: datetime | None, interval: float) -> float:
    """How long the loop rests after a tick that left nothing due: until the next letter
    or activity falls due, at most `interval` (the sweeps of lost messages run at least
    that often)."""
    if due is None:
        return interval
    return min(max((due - now).total_seconds(), 0.0), interval)


def tick(runtime: Runtime) -> TickReport:
    now = runtime.clock.now()
    grace = timedelta(seconds=runtime.settings.sweep_grace_seconds)
    # Each claim commits before its tasks are enqueued: a task never sees a row that is
    # not yet in its new state, and a lost message is found again by the next sweep.
    # A claimed batch goes to the broker in one round trip.
    inbox = claim_stale_inbox(runtime.session_factory, now, grace)
    send_many_quietly(runtime.dispatcher, INGEST_INBOX, [(i,) for i in inbox])
    if inbox:
        log.info("re-enqueued %d inbox rows that were never ingested", len(inbox))
    due = claim_due_letters(runtime.session_factory, now)
    LETTER_TRANSITIONS.labels(LetterStatus.QUEUED).inc(len(due))
    stuck = claim_stuck_queued(runtime.session_factory, now, grace)
    letters = (*due, *stuck)
    size = runtime.settings.send_batch
    groups = [letters[start : start + size] for start in range(0, len(letters), size)]
    send_many_quietly(runtime.dispatcher, SEND_LETTER, groups)
    if due or stuck:
        log.info("queued %d due letters, re-enqueued %d stuck ones", len(due), len(stuck))
    timeout = timedelta(seconds=runtime.settings.sending_timeout_seconds)
    lost = mark_stale_sending_unknown(runtime.session_factory, now, timeout)
    if lost:
        log.error("letters %s were left in `sending`; marked unknown (not resent)", lost)
    lease = timedelta(seconds=runtime.settings.crm_lease_seconds)
    activities = claim_due_activities(runtime.session_factory, now, lease=lease)
    send_many_quietly(runtime.dispatcher, DELIVER_ACTIVITY, [(i,) for i in activities])
    _reconcile_when_due(runtime, now)
    full = (
        len(inbox) >= INBOX_BATCH
        or len(due) >= BATCH
        or len(stuck) >= BATCH
        or len(activities) >= ACTIVITY_BATCH
    )
    return TickReport(len(inbox), len(due), len(stuck), len(lost), len(activities), full)


def _reconcile_when_due(runtime: Runtime, now: datetime) -> None:
    """Every THANKLY_CRM_RECONCILE_MINUTES, one reconciliation per connected CRM."""
    minutes = runtime.settings.crm_reconcile_minutes
    if not minutes:
        return
    names = sorted(connected(runtime))
    if not names:
        return
    every = timedelta(minutes=minutes)
    for sync_id in claim_due_runs(runtime.session_factory, names, now, every):
        send_quietly(runtime.dispatcher, RECONCILE_CRM, sync_id)


def run_forever(runtime: Runtime, stop: threading.Event) -> None:
    interval = runtime.settings.sweep_interval_seconds
    heartbeat = runtime.settings.var_dir / HEARTBEAT_FILE
    heartbeat.parent.mkdir(parents=True, exist_ok=True)
    while True:
        pause = interval
        try:
            with TICK_SECONDS.time():
                report = tick(runtime)
            heartbeat.touch()  # read by the container health check
            # After a full batch, more is due now: drain the backlog before resting.
            due = None if report.full else next_due(runtime.session_factory)
            pause = 0.0 if report.full else pause_until(runtime.clock.now(), due, interval)
        except Exception:
            # The database may be down for a while; keep ticking rather than exit.
            log.exception("scheduler tick failed; trying again in %.0f s", interval)
        if stop.wait(pause):
            return
