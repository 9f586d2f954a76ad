"""Steps the CRM tests share: a runtime connected to imitation CRMs and its HTTP client,
the inbox, ingesting one row through a storm of API failures, and a letter going out
and being reported, the way the scheduler and workers would."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.conftest import NOW, make_settings
from worker.clock import FixedClock
from worker.http.app import create_app
from worker.jobs import run_enqueued, run_job
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


def inbox(runtime: Runtime) -> list[InboxItem]:
    with runtime.session_factory() as session:
        return list(session.scalars(select(InboxItem).order_by(InboxItem.id)))


@contextmanager
def app_client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime), raise_server_exceptions=False) as client:
        yield client


def send_then_report(runtime: Runtime, clock: FixedClock, due: datetime) -> None:
    """Let the letter fall due and go out, then a minute later the CRM hear of it: what
    the scheduler's ticks and the workers do."""
    dispatcher = runtime.dispatcher
    assert isinstance(dispatcher, RecordingDispatcher)
    for moment in (due, due + timedelta(minutes=1)):
        dispatcher.sent.clear()
        clock.set(moment)
        tick.tick(runtime)
        run_enqueued(runtime, list(dispatcher.sent))
