"""A send that outlives THANKLY_SENDING_TIMEOUT_SECONDS: the scheduler marks the letter
`unknown` meanwhile; what the server then answers is the truth, recorded on the letter,
and the CRM hears only of status changes that actually happened."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

from sqlalchemy import select

from tests.conftest import SAMPLES
from tests.helpers import ingest_doc
from worker.admin import find, operations
from worker.clock import FixedClock
from worker.delivery.send import send_letter
from worker.delivery.senders import SendError
from worker.models import Attempt, CrmActivity, Letter, LetterStatus
from worker.runtime import Runtime
from worker.scheduling import tick

FEEDBACK: dict[str, Any] = json.loads((SAMPLES / "feedback_logged.de.json").read_text())


class SlowSender:
    """Stands for a server that answers after the sending timeout: while it 'waits', the
    clock moves past the timeout, the scheduler ticks, and `meanwhile` runs."""

    def __init__(
        self,
        runtime: Runtime,
        clock: FixedClock,
        meanwhile: Callable[[], None] = lambda: None,
        answer: SendError | None = None,
    ) -> None:
        self.runtime, self.clock, self.meanwhile, self.answer = runtime, clock, meanwhile, answer
        self.sent: list[EmailMessage] = []

    def send(self, message: EmailMessage, envelope_from: str, recipient: str) -> None:
        timeout = self.runtime.settings.sending_timeout_seconds
        self.clock.set(self.clock.now() + timedelta(seconds=timeout + 1))
        assert tick.tick(self.runtime).letters_lost == 1  # marked `unknown` meanwhile
        self.meanwhile()
        if self.answer is not None:
            raise self.answer
        self.sent.append(message)


def queued_letter(runtime: Runtime, clock: FixedClock) -> int:
    [letter] = ingest_doc(runtime, json.loads(json.dumps(FEEDBACK)), "evt_1")
    clock.set(max(clock.now(), letter.due_at))
    tick.tick(runtime)
    return letter.id


def state(runtime: Runtime, letter_id: int) -> tuple[Letter, list[str], list[str]]:
    """The letter, its attempts' outcomes and its CRM activities' kinds."""
    with runtime.session_factory() as session:
        letter = session.get_one(Letter, letter_id)
        attempts = session.scalars(
            select(Attempt.outcome).where(Attempt.letter_id == letter_id).order_by(Attempt.id)
        ).all()
        activities = session.scalars(
            select(CrmActivity.kind).where(CrmActivity.letter_id == letter_id)
        ).all()
    return letter, list(attempts), list(activities)


def test_a_late_250_makes_the_letter_sent_once_and_a_forced_replay_is_refused(
    runtime: Runtime, clock: FixedClock
) -> None:
    letter_id = queued_letter(runtime, clock)
    sender = SlowSender(runtime, clock)
    assert send_letter(replace(runtime.delivery(), sender=sender), letter_id) == "sent"
    letter, attempts, activities = state(runtime, letter_id)
    assert len(sender.sent) == 1
    assert letter.status == LetterStatus.SENT and letter.sent_at == clock.now()
    assert "after the sending timeout" in (letter.status_reason or "")
    assert letter.last_error is None
    assert attempts == ["sent"] and activities == ["email.sent"]

    replayed = operations.replay(
        runtime.session_factory,
        find.LetterFilter(ids=[letter_id]),
        clock.now(),
        actor="ops",
        reason="was it sent?",
        rate_per_second=1,
        force=True,
    )
    assert replayed.done == [] and replayed.refused == {letter_id: "already sent"}
    # Nothing more for the scheduler either: the letter is not sent twice.
    clock.set(clock.now() + timedelta(days=1))
    assert tick.tick(runtime).letters_queued == 0


def test_a_late_250_reports_nothing_when_the_letter_has_moved_on(
    runtime: Runtime, clock: FixedClock
) -> None:
    """Marked unknown, replayed and then cancelled by an admin before the server answered:
    the late 250 changes no status, so no `email.sent` is recorded for the CRM."""
    letter_id = queued_letter(runtime, clock)

    def admin_acts() -> None:
        factory, now = runtime.session_factory, clock.now()
        flt = find.LetterFilter(ids=[letter_id])
        kw: dict[str, Any] = {"actor": "ops", "reason": "unknown"}
        assert operations.replay(factory, flt, now, rate_per_second=1, force=True, **kw).done
        assert operations.cancel(factory, [letter_id], now, **kw).done

    sender = SlowSender(runtime, clock, meanwhile=admin_acts)
    send_letter(replace(runtime.delivery(), sender=sender), letter_id)
    letter, attempts, activities = state(runtime, letter_id)
    assert letter.status == LetterStatus.CANCELLED
    assert attempts == ["sent"]  # what happened is kept on the attempt, and counted
    assert letter.attempt_count == 1
    assert activities == []


def test_a_late_refusal_makes_the_letter_failed_with_one_report(
    runtime: Runtime, clock: FixedClock
) -> None:
    letter_id = queued_letter(runtime, clock)
    refusal = SendError("permanent", "data-end", "5.7.1 refused", 550)
    sender = SlowSender(runtime, clock, answer=refusal)
    assert send_letter(replace(runtime.delivery(), sender=sender), letter_id) == "failed"
    letter, attempts, activities = state(runtime, letter_id)
    assert letter.status == LetterStatus.FAILED and "5.7.1 refused" in (letter.last_error or "")
    assert attempts == ["permanent"] and activities == ["email.failed"]
