"""Rows a lost broker never delivered are found again and re-enqueued."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from tests.conftest import NOW, SAMPLES
from worker.clock import FixedClock
from worker.intake.inbox import accept
from worker.intake.ingest import ingest
from worker.queue import INGEST_INBOX, RecordingDispatcher
from worker.runtime import Runtime
from worker.scheduling import tick

BODY = (SAMPLES / "feedback_logged.de.json").read_bytes()


def test_pending_row_is_requeued_only_after_the_grace_period(
    runtime: Runtime, clock: FixedClock, dispatcher: RecordingDispatcher
) -> None:
    accepted = accept(runtime.session_factory, "generic", "evt_1", BODY, NOW)
    grace = timedelta(seconds=runtime.settings.sweep_grace_seconds)

    clock.set(NOW + grace - timedelta(seconds=1))
    assert tick.tick(runtime).inbox_requeued == 0  # the first enqueue may still land

    clock.set(NOW + grace + timedelta(seconds=1))
    assert tick.tick(runtime).inbox_requeued == 1
    assert dispatcher.sent == [(INGEST_INBOX, (accepted.inbox_id,))]

    # Just re-enqueued: the next tick leaves it alone for another grace period.
    assert tick.tick(runtime).inbox_requeued == 0


def test_processed_rows_are_never_requeued(runtime: Runtime, clock: FixedClock) -> None:
    accepted = accept(runtime.session_factory, "generic", "evt_1", BODY, NOW)
    ingest(runtime.session_factory, accepted.inbox_id, clock)
    clock.set(NOW + timedelta(days=1))
    assert tick.tick(runtime).inbox_requeued == 0


def test_two_sweepers_at_once_requeue_a_row_once(runtime: Runtime, clock: FixedClock) -> None:
    from worker.intake.sweeper import claim_stale_inbox

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

        def send_many(self, task: str, groups: Sequence[Sequence[int]]) -> None:
            raise ConnectionError("redis is down")

    runtime.dispatcher = DownBroker()
    accept(runtime.session_factory, "generic", "evt_1", BODY, NOW)
    accept(runtime.session_factory, "generic", "evt_2", BODY, NOW)
    clock.set(NOW + timedelta(hours=1))
    assert tick.tick(runtime).inbox_requeued == 2  # both tried; next grace tries again
    clock.set(NOW + timedelta(hours=2))
    assert tick.tick(runtime).inbox_requeued == 2


def test_the_scheduler_loop_beats_and_stops(runtime: Runtime) -> None:
    import threading

    from worker.healthcheck import scheduler_is_alive

    assert not scheduler_is_alive(runtime.settings)
    stop = threading.Event()
    stop.set()  # one pass, then return
    tick.run_forever(runtime, stop)
    assert scheduler_is_alive(runtime.settings)
    far_future = (runtime.settings.var_dir / "scheduler.heartbeat").stat().st_mtime + 3600
    assert not scheduler_is_alive(runtime.settings, now=far_future)


# --- a backlog does not breed redundant work (issue 10, point 11) -------------------------


def backlog(runtime: Runtime, clock: FixedClock) -> tuple[list[int], list[int]]:
    """Three webhooks never ingested and three letters claimed for sending, with a broker
    that takes every message and a worker that never gets to any of them."""
    import json

    from tests.helpers import ingest_doc

    doc = json.loads(BODY)
    letters = []
    for n in range(3):
        doc["data"]["contact"]["email"] = f"k{n}@example.de"
        [letter] = ingest_doc(runtime, doc, f"evt_letter_{n}")
        letters.append(letter)
    inbox = [
        accept(runtime.session_factory, "generic", f"evt_{n}", BODY, NOW).inbox_id for n in range(3)
    ]
    clock.set(max(letter.due_at for letter in letters))
    return inbox, [letter.id for letter in letters]


def test_under_a_backlog_rows_are_re_enqueued_with_growing_back_off(
    runtime: Runtime, clock: FixedClock, dispatcher: RecordingDispatcher
) -> None:
    from collections import Counter

    from sqlalchemy import select

    from worker.models import InboxItem, Letter
    from worker.queue import SEND_LETTER

    inbox, letters = backlog(runtime, clock)
    start = clock.now()
    sweeps = 360  # an hour of ticks, every THANKLY_SWEEP_INTERVAL_SECONDS (10 s)
    for _ in range(sweeps):
        tick.tick(runtime)
        clock.set(clock.now() + timedelta(seconds=runtime.settings.sweep_interval_seconds))
    sent = Counter((task, (i,)) for task, ids in dispatcher.sent for i in ids)  # per row
    # Each wait doubles (1, 2, 4, 8, 16 grace periods of 60 s), so an hour of 10 s ticks
    # re-enqueues a webhook at 0, 130, 380, 870 and 1840 s (its 6th enqueue, counting
    # accept's) and sends a letter's task at its claim, then at 70, 200, 450, 940 and
    # 1910 s. Re-enqueued every grace period, each would have gone out over 50 times.
    assert [sent[(INGEST_INBOX, (i,))] for i in inbox] == [5, 5, 5]
    assert [sent[(SEND_LETTER, (i,))] for i in letters] == [6, 6, 6]
    with runtime.session_factory() as session:
        counts = select(InboxItem.enqueue_count).where(InboxItem.id.in_(inbox))
        assert list(session.scalars(counts)) == [6, 6, 6]
        assert list(session.scalars(select(Letter.enqueue_count))) == [6, 6, 6]
    assert clock.now() - start == timedelta(hours=1)


def test_the_back_off_is_capped_so_a_lost_row_is_still_found(
    runtime: Runtime, clock: FixedClock, dispatcher: RecordingDispatcher
) -> None:
    from worker.intake.sweeper import MAX_DOUBLINGS

    [inbox_id] = [accept(runtime.session_factory, "generic", "evt_1", BODY, NOW).inbox_id]
    grace = timedelta(seconds=runtime.settings.sweep_grace_seconds)
    longest = grace * 2**MAX_DOUBLINGS
    for _ in range(12):  # well past the cap
        clock.set(clock.now() + longest + timedelta(seconds=1))
        assert tick.tick(runtime).inbox_requeued == 1
    assert dispatcher.sent.count((INGEST_INBOX, (inbox_id,))) == 12


def test_a_claim_restarts_the_back_off_of_a_letter_retried_before(
    runtime: Runtime, clock: FixedClock, dispatcher: RecordingDispatcher
) -> None:
    """A letter that went through many rounds before is re-enqueued one grace period
    after its new claim, not after the longest back-off."""
    from sqlalchemy import update

    from worker.models import Letter
    from worker.queue import SEND_LETTER

    _, [letter_id, *_] = backlog(runtime, clock)
    with runtime.session_factory.begin() as session:  # as after many earlier rounds
        session.execute(update(Letter).where(Letter.id == letter_id).values(enqueue_count=40))
    tick.tick(runtime)  # claims it: queued, enqueued once
    grace = timedelta(seconds=runtime.settings.sweep_grace_seconds)
    clock.set(clock.now() + grace + timedelta(seconds=1))
    tick.tick(runtime)  # its message was lost: sent again after one grace period
    sent = [i for task, ids in dispatcher.sent if task == SEND_LETTER for i in ids]
    assert sent.count(letter_id) == 2
