"""Storing accepted webhooks: one row per (source, event id), also under a race."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from sqlalchemy import func, select

from worker.db import make_engine, make_session_factory
from worker.intake.inbox import Accepted, accept_batch
from worker.intake.sources import RawEvent
from worker.migrate import upgrade
from worker.models import InboxItem

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def test_the_same_event_posted_at_once_by_many_senders_is_stored_once(db_url: str) -> None:
    """Eight deliveries of one id at the same moment (a CRM retrying on a timeout): one is
    new, the rest are duplicates of it, none fails, and one row exists."""
    upgrade(db_url)
    engine = make_engine(db_url)
    factory = make_session_factory(engine)
    start = threading.Barrier(8)
    answers: list[Accepted] = []
    errors: list[Exception] = []

    def deliver() -> None:
        start.wait()
        try:
            answers.extend(accept_batch(factory, "generic", [RawEvent("evt_race", "{}")], NOW))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with factory() as session:
        rows = session.scalar(select(func.count()).select_from(InboxItem))
    engine.dispose()
    assert errors == []
    assert sorted(a.duplicate for a in answers) == [False] + [True] * 7
    assert len({a.inbox_id for a in answers}) == 1 and rows == 1
