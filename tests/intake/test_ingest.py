"""Inbox row → canonical event, exactly once."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.conftest import NOW, SAMPLES
from worker.clock import FixedClock
from worker.intake.inbox import accept
from worker.intake.ingest import ingest
from worker.models import Event, InboxItem, InboxStatus
from worker.runtime import Runtime

RU_SAMPLE = (SAMPLES / "deal_closed.ru.json").read_bytes()


def test_ingest_creates_the_canonical_event(runtime: Runtime, clock: FixedClock) -> None:
    accepted = accept(runtime.session_factory, "generic", "evt_1", RU_SAMPLE, NOW)
    clock.set(NOW + timedelta(seconds=3))
    result = ingest(runtime.session_factory, accepted.inbox_id, clock)
    assert result.outcome == "ingested"
    with runtime.session_factory() as session:
        event = session.scalars(select(Event)).one()
        inbox = session.get(InboxItem, accepted.inbox_id)
    assert (event.type, event.external_id, event.source) == ("deal.closed", "evt_1", "generic")
    assert event.contact_email == "anna.ivanova@example.org"
    assert (event.contact_id, event.deal_id) == ("c-1001", "d-98765")
    assert event.occurred_at.isoformat() == "2026-11-20T10:00:00+00:00"
    assert event.payload["data"]["contact"]["first_name"] == "Анна"
    assert inbox is not None and inbox.status == InboxStatus.PROCESSED
    assert inbox.processed_at == NOW + timedelta(seconds=3)


def test_ingest_twice_makes_one_event(runtime: Runtime, clock: FixedClock) -> None:
    accepted = accept(runtime.session_factory, "generic", "evt_1", RU_SAMPLE, NOW)
    first = ingest(runtime.session_factory, accepted.inbox_id, clock)
    second = ingest(runtime.session_factory, accepted.inbox_id, clock)
    assert (first.outcome, second.outcome) == ("ingested", "already")
    with runtime.session_factory() as session:
        assert len(session.scalars(select(Event)).all()) == 1


def test_concurrent_ingests_of_one_row_make_one_event(runtime: Runtime, clock: FixedClock) -> None:
    """Redelivered task and sweeper re-enqueue racing each other (real row locks on PG)."""
    accepted = accept(runtime.session_factory, "generic", "evt_1", RU_SAMPLE, NOW)
    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def run() -> None:
        barrier.wait()
        try:
            outcomes.append(ingest(runtime.session_factory, accepted.inbox_id, clock).outcome)
        except Exception as exc:  # a lost race must not be an error either
            outcomes.append(f"error: {exc}")

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["already", "already", "already", "ingested"]
    with runtime.session_factory() as session:
        assert len(session.scalars(select(Event)).all()) == 1


def test_unknown_row_is_reported_missing(runtime: Runtime, clock: FixedClock) -> None:
    assert ingest(runtime.session_factory, 999, clock).outcome == "missing"


def test_a_stored_body_that_no_longer_validates_is_parked_not_retried(
    runtime: Runtime, clock: FixedClock
) -> None:
    accepted = accept(runtime.session_factory, "generic", "evt_1", b'{"type": "deal.won"}', NOW)
    assert ingest(runtime.session_factory, accepted.inbox_id, clock).outcome == "invalid"
    with runtime.session_factory() as session:
        inbox = session.get(InboxItem, accepted.inbox_id)
        assert inbox is not None and inbox.status == InboxStatus.FAILED
        assert "type" in (inbox.error or "")
        assert session.scalars(select(Event)).all() == []
    assert ingest(runtime.session_factory, accepted.inbox_id, clock).outcome == "already"


def test_same_id_from_another_source_is_a_different_event(runtime: Runtime) -> None:
    a = accept(runtime.session_factory, "generic", "evt_1", RU_SAMPLE, NOW)
    b = accept(runtime.session_factory, "hubspot", "evt_1", RU_SAMPLE, NOW)
    assert not a.duplicate and not b.duplicate and a.inbox_id != b.inbox_id


def test_concurrent_deliveries_of_one_webhook_store_one_row(runtime: Runtime) -> None:
    barrier = threading.Barrier(4)
    results: list[bool] = []

    def deliver() -> None:
        barrier.wait()
        results.append(
            accept(runtime.session_factory, "generic", "evt_1", RU_SAMPLE, NOW).duplicate
        )

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False, True, True, True]


def test_a_task_that_fails_for_good_parks_the_row(
    runtime: Runtime, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A poison row is marked failed with the reason, so the sweeper stops re-enqueueing it."""
    import tasks.intake
    import worker.jobs

    accepted = accept(runtime.session_factory, "generic", "evt_1", RU_SAMPLE, NOW)

    def broken(*args: object) -> None:
        raise ValueError("cannot plan letters for this event")

    monkeypatch.setattr(worker.jobs, "ingest", broken)
    with pytest.raises(ValueError):
        tasks.intake.ingest_inbox.run(accepted.inbox_id)
    with runtime.session_factory() as session:
        inbox = session.get(InboxItem, accepted.inbox_id)
        assert inbox is not None and inbox.status == InboxStatus.FAILED
        assert inbox.error == "ValueError: cannot plan letters for this event"
    clock.set(NOW + timedelta(days=1))
    from worker.scheduling import tick

    assert tick.tick(runtime).inbox_requeued == 0


def test_the_task_runs_ingest_once(runtime: Runtime) -> None:
    import tasks.intake

    accepted = accept(runtime.session_factory, "generic", "evt_1", RU_SAMPLE, NOW)
    assert tasks.intake.ingest_inbox.run(accepted.inbox_id) == "ingested"
    assert tasks.intake.ingest_inbox.run(accepted.inbox_id) == "already"
