"""Delivering one CRM activity from the outbox; catching up on missed CRM webhooks."""

from __future__ import annotations

from worker.celery_app import DB_RETRIES, app
from worker.jobs import run_job
from worker.queue import DELIVER_ACTIVITY, RECONCILE_CRM
from worker.runtime import get_runtime


@app.task(name=DELIVER_ACTIVITY, **DB_RETRIES)  # type: ignore[untyped-decorator]
def deliver_activity(activity_id: int) -> str:
    return run_job(get_runtime(), DELIVER_ACTIVITY, activity_id)


@app.task(name=RECONCILE_CRM, **DB_RETRIES)  # type: ignore[untyped-decorator]
def reconcile_crm(sync_id: int) -> str:
    return run_job(get_runtime(), RECONCILE_CRM, sync_id)
