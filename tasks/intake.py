"""Turning an accepted webhook into a canonical event."""

from __future__ import annotations

from sqlalchemy.exc import OperationalError

from worker.celery_app import app
from worker.intake import ingest
from worker.queue import INGEST_INBOX
from worker.runtime import get_runtime


# A database outage is worth retrying soon; anything else is a bug and is logged by Celery.
# The inbox row stays pending either way, so the sweeper is the last line of defence.
@app.task(  # type: ignore[untyped-decorator]
    name=INGEST_INBOX,
    autoretry_for=(OperationalError,),
    retry_backoff=2,
    retry_backoff_max=120,
    max_retries=6,
)
def ingest_inbox(inbox_id: int) -> str:
    runtime = get_runtime()
    return ingest(runtime.session_factory, inbox_id, runtime.clock).outcome
