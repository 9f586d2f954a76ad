"""Turning an accepted webhook into a canonical event."""

from __future__ import annotations

from worker.celery_app import DB_RETRIES, app
from worker.jobs import run_job
from worker.queue import INGEST_INBOX
from worker.runtime import get_runtime


# A database outage is retried soon (the row also stays pending for the sweeper); the job
# parks a row that can never be ingested, so a retry never loops on a poison message.
@app.task(name=INGEST_INBOX, **DB_RETRIES)  # type: ignore[untyped-decorator]
def ingest_inbox(inbox_id: int) -> str:
    return run_job(get_runtime(), INGEST_INBOX, inbox_id)
