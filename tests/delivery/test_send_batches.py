"""Several letters per send task: one read for the batch, each letter still claimed just
before its own send, and whatever is unusual handled exactly as for a letter alone."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, insert, select, update

from tests.conftest import SAMPLES, make_settings
from tests.helpers import ingest_doc
from worker.clock import FixedClock
from worker.delivery import send
from worker.delivery.senders import MemorySender
from worker.jobs import run_enqueued
from worker.models import Letter, LetterStatus, Suppression
from worker.queue import SEND_LETTER, RecordingDispatcher
from worker.runtime import Runtime, build_runtime
from worker.scheduling import tick

FEEDBACK: dict[str, Any] = json.loads((SAMPLES / "feedback_logged.de.json").read_text())


@pytest.fixture
def sender() -> MemorySender:
    return MemorySender()


@pytest.fixture
def batch_runtime(
    tmp_path: Path, db_url: str, clock: FixedClock, sender: MemorySender
) -> Iterator[Runtime]:
    runtime = build_runtime(
        make_settings(tmp_path, db_url, send_batch=3),
        clock=clock,
        dispatcher=RecordingDispatcher(),
        sender=sender,
        sleep=lambda _: None,
    )
    yield runtime
    runtime.engine.dispose()


def queued_letters(runtime: Runtime, clock: FixedClock, count: int) -> list[int]:
    """`count` letters to different people, queued by one tick (their task not yet run)."""
    ids = []
    for n in range(count):
        doc = json.loads(json.dumps(FEEDBACK))
        doc["data"]["contact"]["email"] = f"customer{n}@example.de"
        [letter] = ingest_doc(runtime, doc, f"evt_{n}")
        clock.set(max(clock.now(), letter.due_at))
        ids.append(letter.id)
    tick.tick(runtime)
    return ids


def statuses(runtime: Runtime, ids: Sequence[int]) -> list[str]:
    with runtime.session_factory() as session:
        query = select(Letter.id, Letter.status).where(Letter.id.in_(ids))
        rows = {letter_id: status for letter_id, status in session.execute(query)}
    return [rows[i] for i in ids]


def recipients(sender: MemorySender) -> list[str]:
    return [str(message["To"]) for message in sender.sent]


def test_the_scheduler_hands_due_letters_out_send_batch_at_a_time(
    batch_runtime: Runtime, clock: FixedClock
) -> None:
    ids = queued_letters(batch_runtime, clock, 7)
    dispatcher = batch_runtime.dispatcher
    assert isinstance(dispatcher, RecordingDispatcher)
    groups = [ids for task, ids in dispatcher.sent if task == SEND_LETTER]
    assert groups == [tuple(ids[0:3]), tuple(ids[3:6]), tuple(ids[6:])]


def test_a_batch_reads_once_and_sends_each_letter_in_two_transactions(
    batch_runtime: Runtime, clock: FixedClock, sender: MemorySender
) -> None:
    ids = queued_letters(batch_runtime, clock, 3)
    statements: list[str] = []
    commits = []
    event.listen(
        batch_runtime.engine,
        "before_cursor_execute",
        lambda conn, cursor, sql, *rest: statements.append(sql.split(None, 1)[0]),
    )
    event.listen(batch_runtime.engine, "commit", lambda conn: commits.append(1))
    assert send.send_letters(batch_runtime.delivery(), ids) == ["sent"] * 3
    # One read for the batch's letters and their events; then per letter the claim (one
    # UPDATE) and the record: the attempt, `sent` with the attempt counted, the activity.
    assert statements == ["SELECT"] + ["UPDATE", "INSERT", "UPDATE", "INSERT"] * 3
    assert len(commits) == 6  # per letter: claim and store; attempt, sent and CRM activity
    assert recipients(sender) == [f"customer{n}@example.de" for n in range(3)]
    assert statuses(batch_runtime, ids) == ["sent"] * 3


def test_what_is_unusual_in_a_batch_is_handled_as_for_a_letter_alone(
    batch_runtime: Runtime, clock: FixedClock, sender: MemorySender, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = queued_letters(batch_runtime, clock, 5)
    cancelled, broken = ids[1], ids[3]  # ids[2] is unsubscribed after the batch read
    with batch_runtime.session_factory.begin() as session:
        session.execute(
            update(Letter).where(Letter.id == cancelled).values(status=LetterStatus.CANCELLED)
        )
    read = send.read_queued

    def read_then_unsubscribe(d: send.Delivery, letter_ids: Sequence[int]) -> Any:
        batch = read(d, letter_ids)
        # The address is suppressed after the batch was read; its letter was not touched
        # (the row alone, as a race with an unsubscribe would leave it for an instant).
        with d.session_factory.begin() as session:
            session.execute(
                insert(Suppression).values(
                    email="customer2@example.de", reason="unsubscribed", created_at=clock.now()
                )
            )
        return batch

    build = send.build

    def build_or_fail(d: send.Delivery, letter: Letter, *args: Any) -> send.Prepared:
        if letter.id == broken:
            raise ValueError("the template refused this one")
        return build(d, letter, *args)

    monkeypatch.setattr(send, "read_queued", read_then_unsubscribe)
    monkeypatch.setattr(send, "build", build_or_fail)
    outcomes = send.send_letters(batch_runtime.delivery(), ids)
    assert outcomes == ["sent", "skipped", "suppressed", "failed", "sent"]
    assert statuses(batch_runtime, ids) == ["sent", "cancelled", "suppressed", "failed", "sent"]
    assert recipients(sender) == ["customer0@example.de", "customer4@example.de"]
    with batch_runtime.session_factory() as session:
        failed = session.get_one(Letter, broken)
        assert failed.last_error == "render: ValueError: the template refused this one"
        assert failed.attempt_count == 1


class Killed(BaseException):
    """The worker process dies (SIGKILL, OOM) while a message is on its way."""


class DiesOnTheSecondLetter(MemorySender):
    def __init__(self) -> None:
        super().__init__()
        self.dying = True

    def send(self, message: EmailMessage, envelope_from: str, recipient: str) -> None:
        if self.dying and len(self.sent) == 1:
            self.dying = False
            raise Killed
        super().send(message, envelope_from, recipient)


def test_a_worker_that_dies_mid_batch_leaves_the_rest_queued_and_they_go_out_once(
    tmp_path: Path, db_url: str, clock: FixedClock
) -> None:
    sender = DiesOnTheSecondLetter()
    dispatcher = RecordingDispatcher()
    runtime = build_runtime(
        make_settings(tmp_path, db_url, send_batch=4),
        clock=clock,
        dispatcher=dispatcher,
        sender=sender,
        sleep=lambda _: None,
    )
    try:
        ids = queued_letters(runtime, clock, 4)
        with pytest.raises(Killed):
            run_enqueued(runtime, list(dispatcher.sent))
        # Only the letter on its way is `sending` (its outcome is unknown); the ones after
        # it were never claimed.
        assert statuses(runtime, ids) == ["sent", "sending", "queued", "queued"]
        dispatcher.sent.clear()
        clock.set(clock.now() + timedelta(seconds=runtime.settings.sweep_grace_seconds + 1))
        tick.tick(runtime)  # the sweep finds the queued letters whose task was lost
        run_enqueued(runtime, list(dispatcher.sent))
        assert statuses(runtime, ids) == ["sent", "sending", "sent", "sent"]
        clock.set(clock.now() + timedelta(seconds=runtime.settings.sending_timeout_seconds + 1))
        tick.tick(runtime)
        assert statuses(runtime, ids) == ["sent", "unknown", "sent", "sent"]
        assert recipients(sender) == [f"customer{n}@example.de" for n in (0, 2, 3)]
    finally:
        runtime.engine.dispose()
