"""Rows a lost broker never delivered are found again and re-enqueued."""

from __future__ import annotations

from datetime import timedelta

from tests.conftest import NOW, SAMPLES
from worker import scheduler
from worker.clock import FixedClock
from worker.intake import accept, ingest
from worker.queue import INGEST_INBOX, RecordingDispatcher
from worker.runtime import Runtime

BODY = (SAMPLES / "feedback_logged.de.json").read_bytes()


def test_pending_row_is_requeued_only_after_the_grace_period(
    runtime: Runtime, clock: FixedClock, dispatcher: RecordingDispatcher
) -> None:
    accepted = accept(runtime.session_factory, "generic", "evt_1", BODY, NOW)
    grace = timedelta(seconds=runtime.settings.sweep_grace_seconds)

    clock.set(NOW + grace - timedelta(seconds=1))
    assert scheduler.tick(runtime).inbox_requeued == 0  # the first enqueue may still land

    clock.set(NOW + grace + timedelta(seconds=1))
    assert scheduler.tick(runtime).inbox_requeued == 1
    assert dispatcher.sent == [(INGEST_INBOX, (accepted.inbox_id,))]

    # Just re-enqueued: the next tick leaves it alone for another grace period.
    assert scheduler.tick(runtime).inbox_requeued == 0


def test_processed_rows_are_never_requeued(runtime: Runtime, clock: FixedClock) -> None:
    accepted = accept(runtime.session_factory, "generic", "evt_1", BODY, NOW)
    ingest(runtime.session_factory, accepted.inbox_id, clock)
    clock.set(NOW + timedelta(days=1))
    assert scheduler.tick(runtime).inbox_requeued == 0


def test_two_sweepers_at_once_requeue_a_row_once(runtime: Runtime, clock: FixedClock) -> None:
    from worker.sweeper import claim_stale_inbox

    accept(runtime.session_factory, "generic", "evt_1", BODY, NOW)
    later = NOW + timedelta(hours=1)
    grace = timedelta(seconds=60)
    first = claim_stale_inbox(runtime.session_factory, later, grace)
    second = claim_stale_inbox(runtime.session_factory, later, grace)
    assert (len(first), len(second)) == (1, 0)


def test_a_broker_failure_does_not_stop_the_tick(runtime: Runtime, clock: FixedClock) -> None:
    class DownBroker:
        def send(self, task: str, *ids: int) -> None:
            raise ConnectionError("redis is down")

    runtime.dispatcher = DownBroker()
    accept(runtime.session_factory, "generic", "evt_1", BODY, NOW)
    accept(runtime.session_factory, "generic", "evt_2", BODY, NOW)
    clock.set(NOW + timedelta(hours=1))
    assert scheduler.tick(runtime).inbox_requeued == 2  # both tried; next grace tries again
    clock.set(NOW + timedelta(hours=2))
    assert scheduler.tick(runtime).inbox_requeued == 2


def test_the_scheduler_loop_beats_and_stops(runtime: Runtime) -> None:
    import threading

    from worker.healthcheck import scheduler_is_alive

    assert not scheduler_is_alive(runtime.settings)
    stop = threading.Event()
    stop.set()  # one pass, then return
    scheduler.run_forever(runtime, stop)
    assert scheduler_is_alive(runtime.settings)
    far_future = (runtime.settings.var_dir / "scheduler.heartbeat").stat().st_mtime + 3600
    assert not scheduler_is_alive(runtime.settings, now=far_future)
