"""The job table: every queued task's name and the plain function that does its work.

Celery's thin tasks (`tasks/`) and the in-process runner (tests, `run_enqueued`) both look
jobs up here, so how a task reaches its function is written once, and there is one place
where every outcome passes by (to count them for metrics). A job takes the runtime and one
id, re-fetches what it needs, and returns its outcome as a short word ("sent", "retry",
"skipped", …); it raises only when the whole job should be retried by the queue.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy.exc import OperationalError

from worker.crm.outbox import deliver_activity as deliver
from worker.delivery.send import send_letter as send
from worker.delivery.send import send_letters as send_batch
from worker.intake.ingest import ingest, mark_failed
from worker.metrics import JOBS as JOB_OUTCOMES
from worker.planning.rules import RulesError
from worker.queue import DELIVER_ACTIVITY, INGEST_INBOX, RECONCILE_CRM, SEND_LETTER

if TYPE_CHECKING:
    from worker.runtime import Runtime

log = logging.getLogger(__name__)

Job = Callable[["Runtime", int], str]


def ingest_inbox(runtime: Runtime, inbox_id: int) -> str:
    """One accepted webhook into a canonical event and its letters."""
    try:
        return ingest(
            runtime.session_factory, inbox_id, runtime.clock, runtime.planner, runtime.source
        ).outcome
    except (OperationalError, RulesError):
        raise  # database unreachable or no valid rules yet: the row stays pending
    except Exception as exc:
        # Anything else will fail again the same way: park the row with the reason
        # instead of letting the sweeper re-enqueue a poison message forever.
        mark_failed(
            runtime.session_factory, inbox_id, f"{type(exc).__name__}: {exc}", runtime.clock
        )
        raise


def send_letter(runtime: Runtime, letter_id: int) -> str:
    """One due letter to its recipient, exactly once or with the reason why not."""
    return send(runtime.delivery(), letter_id)


def send_letters(runtime: Runtime, letter_ids: Sequence[int]) -> list[str]:
    """Several due letters in one task (the scheduler groups them), one after the other."""
    return list(send_batch(runtime.delivery(), letter_ids))


def deliver_activity(runtime: Runtime, activity_id: int) -> str:
    """One outbox activity to the CRM."""
    return deliver(
        runtime.session_factory,
        runtime.crm,
        runtime.clock,
        activity_id,
        tries=runtime.settings.crm_tries,
        wait_base=runtime.settings.crm_retry_wait_seconds,
        sleep=runtime.sleep,
        lease=timedelta(seconds=runtime.settings.crm_lease_seconds),
    )


def reconcile_crm(runtime: Runtime, sync_id: int) -> str:
    """Catch up on the won deals a CRM's webhooks missed (one crm_sync row)."""
    from worker.crm.reconcile import run_claimed

    return run_claimed(runtime, sync_id)


JOBS: Mapping[str, Job] = {
    INGEST_INBOX: ingest_inbox,
    SEND_LETTER: send_letter,
    DELIVER_ACTIVITY: deliver_activity,
    RECONCILE_CRM: reconcile_crm,
}


# Jobs that do several ids of one task better together than one by one.
BATCHED: Mapping[str, Callable[[Runtime, Sequence[int]], list[str]]] = {
    SEND_LETTER: send_letters,
}


def run_jobs(runtime: Runtime, task: str, item_ids: Sequence[int]) -> list[str]:
    """Run one task's jobs by its name, one outcome per id. The single path every job
    takes, in Celery or not."""
    batched = BATCHED.get(task)
    if batched is not None and len(item_ids) > 1:
        outcomes = batched(runtime, item_ids)
    elif len(item_ids) == 1:
        outcomes = [JOBS[task](runtime, item_ids[0])]
    else:
        return _one_by_one(runtime, task, item_ids)
    for item_id, outcome in zip(item_ids, outcomes, strict=True):
        _count(task, item_id, outcome)
    return outcomes


def _one_by_one(runtime: Runtime, task: str, item_ids: Sequence[int]) -> list[str]:
    """Each id of a grouped task in turn. One that raises does not stop the others; the
    first error is raised at the end, so the queue retries the task (ids already done are
    no-ops by then) exactly as it would have retried that id alone."""
    outcomes, failure = [], None
    for item_id in item_ids:
        try:
            outcome = JOBS[task](runtime, item_id)
        except Exception as exc:
            failure = failure or exc
            log.warning("%s(%s) raised %s; going on with the rest", task, item_id, exc)
            continue
        _count(task, item_id, outcome)
        outcomes.append(outcome)
    if failure is not None:
        raise failure
    return outcomes


def _count(task: str, item_id: int, outcome: str) -> None:
    JOB_OUTCOMES.labels(task, outcome).inc()
    log.debug("%s(%s) -> %s", task, item_id, outcome)


def run_job(runtime: Runtime, task: str, *item_ids: int) -> str:
    """A queued task: its jobs' outcomes, comma-separated (one word for one id)."""
    return ",".join(run_jobs(runtime, task, item_ids))


def run_enqueued(
    runtime: Runtime, enqueued: list[tuple[str, tuple[int, ...]]]
) -> list[tuple[str, int, str]]:
    """Run, in this process and in order, what was put on the queue (a RecordingDispatcher's
    `sent`): what a worker would do with it. Returns (task, id, outcome) per job."""
    return [
        (task, item, outcome)
        for task, items in enqueued
        for item, outcome in zip(items, run_jobs(runtime, task, items), strict=True)
    ]
