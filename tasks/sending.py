"""Delivering due letters."""

from __future__ import annotations

from typing import Any

from celery.signals import worker_process_init

from worker.celery_app import DB_RETRIES, app
from worker.jobs import run_job
from worker.queue import SEND_LETTER
from worker.runtime import get_runtime


# One or several letters (the scheduler groups due letters, THANKLY_SEND_BATCH at a time).
# A database hiccup is retried; a redelivery after a letter moved on finds it already
# claimed and does nothing, so retrying can never send twice.
@app.task(name=SEND_LETTER, **DB_RETRIES)  # type: ignore[untyped-decorator]
def send_letter(*letter_ids: int) -> str:
    return run_job(get_runtime(), SEND_LETTER, *letter_ids)


@worker_process_init.connect  # type: ignore[untyped-decorator]
def _fresh_connections_after_fork(**_: Any) -> None:
    # Prefork children must not share the parent's pooled database connections.
    get_runtime().engine.dispose(close=False)
