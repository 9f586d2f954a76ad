"""Delivering one CRM activity from the outbox."""

from __future__ import annotations

from worker.celery_app import DB_RETRIES, app
from worker.crm.outbox import deliver_activity as deliver
from worker.queue import DELIVER_ACTIVITY
from worker.runtime import get_runtime


@app.task(name=DELIVER_ACTIVITY, **DB_RETRIES)  # type: ignore[untyped-decorator]
def deliver_activity(activity_id: int) -> str:
    runtime = get_runtime()
    return deliver(
        runtime.session_factory,
        runtime.crm,
        runtime.clock,
        activity_id,
        tries=runtime.settings.crm_tries,
        wait_base=runtime.settings.crm_retry_wait_seconds,
    )
