"""Steps the CRM tests share: a runtime connected to imitation CRMs, and ingesting one row
through a storm of API failures the way the scheduler would."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from tests.conftest import NOW, make_settings
from worker.clock import FixedClock
from worker.jobs import run_job
from worker.models import InboxItem, InboxStatus
from worker.queue import INGEST_INBOX, RecordingDispatcher
from worker.runtime import Runtime, build_runtime, set_runtime
from worker.scheduling import tick


@contextmanager
def crm_runtime(
    tmp_path: Path,
    db_url: str,
    clock: FixedClock,
    dispatcher: RecordingDispatcher,
    **settings: Any,
) -> Iterator[Runtime]:
    runtime = build_runtime(
        make_settings(tmp_path, db_url, **settings),
        clock=clock,
        dispatcher=dispatcher,
        sleep=lambda _: None,
    )
    set_runtime(runtime)
    try:
        yield runtime
    finally:
        set_runtime(None)
        runtime.engine.dispose()


def ingest_through_failures(runtime: Runtime, clock: FixedClock, inbox_id: int) -> list[str]:
    """Ingest the row, and after each passing failure let ten minutes go by and the
    scheduler tick, as production would; the row must never be parked meanwhile."""
    outcomes = []
    for minute in range(1, 60):
        outcome = run_job(runtime, INGEST_INBOX, inbox_id)
        outcomes.append(outcome)
        with runtime.session_factory() as session:
            row = session.get_one(InboxItem, inbox_id)
        assert row.status != InboxStatus.FAILED
        if outcome == "ingested":
            break
        assert "429" in (row.error or "") or "503" in (row.error or "")
        clock.set(NOW + timedelta(minutes=minute * 10))
        tick.tick(runtime)
    return outcomes
