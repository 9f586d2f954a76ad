"""No letter is stranded by data: an exception before the first byte reaches the server
makes the letter `failed` with the error, never leaves it `sending` (later `unknown`)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import pytest
from sqlalchemy import select, update

from tests.conftest import SAMPLES
from tests.helpers import ingest_doc
from tests.smtp_server import smtp_server
from worker.clock import FixedClock
from worker.delivery.send import send_letter
from worker.models import Attempt, CrmActivity, Event, Letter, LetterStatus
from worker.runtime import Runtime
from worker.scheduling import tick

FEEDBACK: dict[str, Any] = json.loads((SAMPLES / "feedback_logged.de.json").read_text())


def queued_letter(runtime: Runtime, clock: FixedClock, timezone: str = "Europe/Berlin") -> int:
    doc = json.loads(json.dumps(FEEDBACK))
    doc["data"]["contact"]["timezone"] = timezone
    [letter] = ingest_doc(runtime, doc, "evt_1")
    clock.set(max(clock.now(), letter.due_at))
    tick.tick(runtime)
    return letter.id


def assert_failed_with(runtime: Runtime, clock: FixedClock, letter_id: int, error: str) -> None:
    # Well past the sending timeout: a letter left in `sending` would now become `unknown`.
    clock.set(clock.now() + timedelta(seconds=runtime.settings.sending_timeout_seconds + 60))
    tick.tick(runtime)
    with runtime.session_factory() as session:
        letter = session.get_one(Letter, letter_id)
        [attempt] = session.scalars(select(Attempt).where(Attempt.letter_id == letter_id))
        activities = session.scalars(
            select(CrmActivity.kind).where(CrmActivity.letter_id == letter_id)
        ).all()
    assert letter.status == LetterStatus.FAILED
    assert error in (letter.last_error or "")
    assert attempt.outcome == "permanent" and error in (attempt.error_text or "")
    assert activities == ["email.failed"]  # the CRM hears of the failure, once


def test_a_year_one_timestamp_in_a_negative_offset_zone_fails_the_letter(
    runtime: Runtime, clock: FixedClock
) -> None:
    letter_id = queued_letter(runtime, clock, timezone="America/New_York")
    # An event stored before intake refused such timestamps (its date cannot be shown in
    # New York time: it falls before year 1). Sending reads the stored event through the
    # event model, which refuses it now: the letter fails with the reason, never strands.
    with runtime.session_factory.begin() as session:
        event_id = session.get_one(Letter, letter_id).event_id
        payload = session.get_one(Event, event_id).payload
        payload = payload | {"timestamp": "0001-01-01T00:00:00Z"}
        session.execute(update(Event).where(Event.id == event_id).values(payload=payload))
    assert send_letter(runtime.delivery(), letter_id) == "failed"
    assert_failed_with(runtime, clock, letter_id, "must be from 1970-01-01")


def _raise(exc: Exception) -> Any:
    def boom(*args: object, **kwargs: object) -> Any:
        raise exc

    return boom


@pytest.mark.parametrize(
    ("target", "name"),
    [
        ("worker.letters.compose.build_context", "context"),  # rendering
        ("worker.letters.compose.instrument_html", "tracking"),  # rewriting links
        ("worker.letters.compose.build_message", "message"),  # headers and parts
        ("email.message.EmailMessage.as_bytes", "serialising"),  # inside the sender
    ],
)
def test_an_exception_at_any_stage_before_sending_fails_the_letter(
    runtime: Runtime, clock: FixedClock, monkeypatch: pytest.MonkeyPatch, target: str, name: str
) -> None:
    letter_id = queued_letter(runtime, clock)
    monkeypatch.setattr(target, _raise(ValueError(f"injected at {name}")))
    assert send_letter(runtime.delivery(), letter_id) == "failed"
    monkeypatch.undo()
    assert_failed_with(runtime, clock, letter_id, f"injected at {name}")


def test_an_smtp_sender_that_cannot_write_the_message_fails_the_letter(
    smtp_runtimes: Any, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with smtp_server() as (script, port):
        runtime = smtp_runtimes(port)
        letter_id = queued_letter(runtime, clock)
        monkeypatch.setattr(EmailMessage, "as_bytes", _raise(ValueError("injected at bytes")))
        assert send_letter(runtime.delivery(), letter_id) == "failed"
        monkeypatch.undo()
    assert script.delivered == []
    assert_failed_with(runtime, clock, letter_id, "injected at bytes")


class _BrokenSender:
    """A sender that fails in a way it does not classify (a bug, say): by the Sender
    contract nothing was sent."""

    def send(self, message: EmailMessage, envelope_from: str, recipient: str) -> None:
        raise RuntimeError("injected in the sender")


def test_an_unclassified_sender_exception_fails_the_letter(
    runtime: Runtime, clock: FixedClock
) -> None:
    letter_id = queued_letter(runtime, clock)
    delivery = replace(runtime.delivery(), sender=_BrokenSender())
    assert send_letter(delivery, letter_id) == "failed"
    assert_failed_with(runtime, clock, letter_id, "injected in the sender")
