"""Turning an accepted webhook into a canonical event."""

from __future__ import annotations

from sqlalchemy.exc import OperationalError

from worker.celery_app import DB_RETRIES, app
from worker.intake.ingest import ingest, mark_failed
from worker.planning.rules import RulesError
from worker.queue import INGEST_INBOX
from worker.runtime import get_runtime


# A database outage is worth retrying soon (and the row stays pending for the sweeper);
# any other error is permanent for this row.
@app.task(name=INGEST_INBOX, **DB_RETRIES)  # type: ignore[untyped-decorator]
def ingest_inbox(inbox_id: int) -> str:
    runtime = get_runtime()
    try:
        return ingest(runtime.session_factory, inbox_id, runtime.clock, runtime.planner).outcome
    except (OperationalError, RulesError):
        raise  # database unreachable or no valid rules yet: the row stays pending
    except Exception as exc:
        # Anything else will fail again the same way: park the row with the reason
        # instead of letting the sweeper re-enqueue a poison message forever.
        mark_failed(
            runtime.session_factory, inbox_id, f"{type(exc).__name__}: {exc}", runtime.clock
        )
        raise
