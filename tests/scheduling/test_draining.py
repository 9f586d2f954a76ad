"""The scheduler loop drains a backlog: after a full batch it ticks again at once, and it
rests only when nothing is due, until the next letter falls due or the interval passes."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import update

from tests.conftest import NOW
from tests.scheduling.test_scheduler_tick import _bulk_letters
from worker.clock import FixedClock
from worker.models import Letter
from worker.queue import SEND_LETTER, RecordingDispatcher
from worker.runtime import Runtime
from worker.scheduling import tick
from worker.scheduling.claims import BATCH, next_due


class CountedStop(threading.Event):
    """A stop event that records each pause the loop asks for, and ends it after `rounds`."""

    def __init__(self, rounds: int) -> None:
        super().__init__()
        self.rounds = rounds
        self.pauses: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.pauses.append(timeout)
        return len(self.pauses) >= self.rounds


def test_a_backlog_is_drained_without_resting_then_the_loop_waits_for_the_next_due(
    runtime: Runtime, db_url: str, clock: FixedClock, dispatcher: RecordingDispatcher
) -> None:
    backlog = 2 * BATCH + 50
    _bulk_letters(runtime.engine.url.render_as_string(False), backlog + 1, NOW)
    with runtime.session_factory.begin() as session:  # one letter falls due 3 s later
        session.execute(
            update(Letter).where(Letter.id == backlog + 1).values(due_at=NOW + timedelta(seconds=3))
        )
    clock.set(NOW)
    stop = CountedStop(rounds=3)
    tick.run_forever(runtime, stop)
    sent = [i for task, ids in dispatcher.sent if task == SEND_LETTER for i in ids]
    assert sorted(sent) == list(range(1, backlog + 1))  # every due letter, once, in three ticks
    assert stop.pauses == [0.0, 0.0, 3.0]  # full, full, then until the next due letter


def test_the_pause_is_the_time_to_the_next_due_item_capped_by_the_interval() -> None:
    assert tick.pause_until(NOW, None, 10.0) == 10.0
    assert tick.pause_until(NOW, NOW + timedelta(seconds=2.5), 10.0) == 2.5
    assert tick.pause_until(NOW, NOW - timedelta(minutes=5), 10.0) == 0.0
    assert tick.pause_until(NOW, NOW + timedelta(hours=48), 10.0) == 10.0


def test_next_due_looks_at_scheduled_letters_and_pending_activities_only(
    runtime: Runtime,
) -> None:
    assert next_due(runtime.session_factory) is None
    _bulk_letters(runtime.engine.url.render_as_string(False), 3, NOW + timedelta(hours=1))
    with runtime.session_factory.begin() as session:
        session.execute(update(Letter).where(Letter.id == 1).values(status="cancelled", due_at=NOW))
    assert next_due(runtime.session_factory) == NOW + timedelta(hours=1)
