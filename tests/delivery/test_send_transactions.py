"""The send path's database work: two transactions for a letter that goes out, and the
write after the send survives a database connection that died while the message left."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import SAMPLES, make_settings
from tests.helpers import ingest_doc, terminate_connections
from worker.clock import FixedClock
from worker.delivery.send import send_letter
from worker.delivery.senders import MemorySender
from worker.models import Attempt, CrmActivity, Letter
from worker.queue import RecordingDispatcher
from worker.runtime import Runtime, build_runtime
from worker.scheduling import tick

FEEDBACK: dict[str, Any] = json.loads((SAMPLES / "feedback_logged.de.json").read_text())


def queued_letter(runtime: Runtime, clock: FixedClock) -> int:
    [letter] = ingest_doc(runtime, json.loads(json.dumps(FEEDBACK)), "evt_1")
    clock.set(max(clock.now(), letter.due_at))
    tick.tick(runtime)
    return letter.id


def outcome(runtime: Runtime, letter_id: int) -> tuple[str, list[str], list[str], int]:
    with runtime.session_factory() as session:
        letter = session.get_one(Letter, letter_id)
        attempts = session.scalars(select(Attempt.outcome).where(Attempt.letter_id == letter_id))
        activities = session.scalars(
            select(CrmActivity.kind).where(CrmActivity.letter_id == letter_id)
        )
        return letter.status, list(attempts), list(activities), letter.attempt_count


def test_a_letter_that_goes_out_costs_two_transactions(runtime: Runtime, clock: FixedClock) -> None:
    letter_id = queued_letter(runtime, clock)
    commits = []
    event.listen(runtime.engine, "commit", lambda conn: commits.append(1))
    assert send_letter(runtime.delivery(), letter_id) == "sent"
    assert len(commits) == 2  # prepare (claim, render, store); record (attempt, sent, CRM)
    assert outcome(runtime, letter_id) == ("sent", ["sent"], ["email.sent"], 1)
    with runtime.session_factory() as session:
        assert session.get_one(Letter, letter_id).rendered is not None  # kept for a replay


def test_a_letter_that_cannot_be_built_fails_in_the_first_transaction(
    runtime: Runtime, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    letter_id = queued_letter(runtime, clock)
    monkeypatch.setattr(
        "worker.letters.compose.build_message", lambda *a, **k: (_ for _ in ()).throw(KeyError("x"))
    )
    commits = []
    event.listen(runtime.engine, "commit", lambda conn: commits.append(1))
    assert send_letter(runtime.delivery(), letter_id) == "failed"
    assert len(commits) == 1
    assert outcome(runtime, letter_id) == ("failed", ["permanent"], ["email.failed"], 1)


class KillConnectionsWhileSending(MemorySender):
    """Sends, and meanwhile the database server ends every other session (a restart, a
    failover, an admin's pg_terminate_backend)."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url

    def send(self, message: EmailMessage, envelope_from: str, recipient: str) -> None:
        super().send(message, envelope_from, recipient)
        terminate_connections(self.url)


def test_the_write_after_a_send_survives_a_dead_connection(
    tmp_path: Path, pg_clean_url: str, clock: FixedClock
) -> None:
    sender = KillConnectionsWhileSending(pg_clean_url)
    runtime = build_runtime(
        make_settings(tmp_path, pg_clean_url),
        clock=clock,
        dispatcher=RecordingDispatcher(),
        sender=sender,
        sleep=lambda _: None,
        pre_ping=False,  # as the worker runs: the pooled connection is used untested
    )
    try:
        letter_id = queued_letter(runtime, clock)
        assert send_letter(runtime.delivery(), letter_id) == "sent"
        assert len(sender.sent) == 1
        assert outcome(runtime, letter_id) == ("sent", ["sent"], ["email.sent"], 1)
    finally:
        runtime.engine.dispose()


class LoseTheReplyToCommit:
    """A session factory whose first `begin()` after `arm()` commits and then reports the
    connection as lost: the server has the transaction, the worker cannot know it."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.factory, self.armed = factory, False

    def __call__(self) -> Session:
        return self.factory()

    def arm(self) -> None:
        self.armed = True

    @contextmanager
    def begin(self) -> Iterator[Session]:
        with self.factory.begin() as session:
            yield session
        if self.armed:
            self.armed = False
            raise OperationalError(
                "COMMIT", {}, Exception("server closed the connection"), connection_invalidated=True
            )


def test_a_commit_whose_reply_was_lost_is_not_written_twice(
    runtime: Runtime, clock: FixedClock
) -> None:
    letter_id = queued_letter(runtime, clock)
    factory = LoseTheReplyToCommit(runtime.session_factory)

    class ArmAfterSending(MemorySender):
        def send(self, message: EmailMessage, envelope_from: str, recipient: str) -> None:
            super().send(message, envelope_from, recipient)
            factory.arm()  # the next transaction is the one that records the send

    sender = ArmAfterSending()
    delivery = runtime.delivery()
    from dataclasses import replace

    delivery = replace(delivery, session_factory=factory, sender=sender)  # type: ignore[arg-type]
    assert send_letter(delivery, letter_id) == "sent"
    assert len(sender.sent) == 1
    # One Attempt, one activity: the second try found the first one's commit and stopped.
    assert outcome(runtime, letter_id) == ("sent", ["sent"], ["email.sent"], 1)
