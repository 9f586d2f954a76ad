"""Turning accepted webhooks into canonical events."""

from __future__ import annotations

from worker.celery_app import DB_RETRIES, app
from worker.jobs import run_job
from worker.queue import INGEST_INBOX
from worker.runtime import get_runtime


# One or several inbox rows (the API's publisher groups them). A database outage is
# retried soon (the rows also stay pending for the sweeper; those done are no-ops then);
# the job parks a row that can never be ingested, so a retry never loops on a poison
# message.
@app.task(name=INGEST_INBOX, **DB_RETRIES)  # type: ignore[untyped-decorator]
def ingest_inbox(*inbox_ids: int) -> str:
    return run_job(get_runtime(), INGEST_INBOX, *inbox_ids)
