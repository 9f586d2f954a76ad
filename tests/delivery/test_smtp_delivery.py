"""Delivery through a real SMTP server: exactly once, or exactly why not."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import SAMPLES
from tests.helpers import all_letters, ingest_doc
from tests.smtp_server import Script, refusing_server, smtp_server
from worker.clock import FixedClock
from worker.delivery.send import send_letter
from worker.models import Attempt, Letter, LetterStatus, Suppression
from worker.runtime import Runtime
from worker.scheduling import tick

FEEDBACK: dict[str, Any] = json.loads((SAMPLES / "feedback_logged.de.json").read_text())


@pytest.fixture
def make_runtime(smtp_runtimes: Any) -> Any:
    return smtp_runtimes


def queue_letter(
    runtime: Runtime, clock: FixedClock, msg_id: str = "evt_1", email: str = "k.mueller@example.de"
) -> int:
    doc = json.loads(json.dumps(FEEDBACK))
    doc["data"]["contact"]["email"] = email
    [letter] = ingest_doc(runtime, doc, msg_id)
    clock.set(max(clock.now(), letter.due_at))
    tick.tick(runtime)
    return letter.id


def attempts(runtime: Runtime, letter_id: int) -> list[Attempt]:
    with runtime.session_factory() as session:
        return list(
            session.scalars(
                select(Attempt).where(Attempt.letter_id == letter_id).order_by(Attempt.id)
            )
        )


def test_a_letter_is_delivered_once_with_its_message_id(
    make_runtime: Any, clock: FixedClock
) -> None:
    with smtp_server() as (script, port):
        runtime = make_runtime(port)
        letter_id = queue_letter(runtime, clock)
        assert send_letter(runtime.delivery(), letter_id) == "sent"
        assert send_letter(runtime.delivery(), letter_id) == "skipped"  # a redelivered task
    [letter] = all_letters(runtime)
    assert letter.status == LetterStatus.SENT and letter.sent_at is not None
    assert script.delivered == [letter.message_id]
    [attempt] = attempts(runtime, letter_id)
    assert attempt.outcome == "sent" and attempt.error_class is None
    raw = script.raw[0].decode()
    assert "From: Jonas Weber <thanks@shop.example>" in raw
    assert "Reply-To: Jonas Weber <jonas.weber@seller.example>" in raw


def test_451_twice_then_250_is_delivered_once_in_three_attempts(
    make_runtime: Any, clock: FixedClock
) -> None:
    with smtp_server() as (script, port):
        script.data_replies = ["451 4.3.0 try later", "451 4.3.0 try later"]
        runtime = make_runtime(port)
        letter_id = queue_letter(runtime, clock)
        assert send_letter(runtime.delivery(), letter_id) == "sent"
    assert len(script.delivered) == 1
    outcomes = [(a.outcome, a.smtp_code) for a in attempts(runtime, letter_id)]
    assert outcomes == [("transient", 451), ("transient", 451), ("sent", None)]
    assert all_letters(runtime)[0].attempt_count == 3


def test_550_fails_at_once(make_runtime: Any, clock: FixedClock) -> None:
    with smtp_server() as (script, port):
        script.data_replies = ["550 5.7.1 message refused"]
        runtime = make_runtime(port)
        letter_id = queue_letter(runtime, clock)
        assert send_letter(runtime.delivery(), letter_id) == "failed"
    [attempt] = attempts(runtime, letter_id)
    assert (attempt.outcome, attempt.error_class, attempt.smtp_code) == (
        "permanent",
        "data-end",
        550,
    )
    letter = all_letters(runtime)[0]
    assert letter.status == LetterStatus.FAILED and "message refused" in (letter.last_error or "")


def test_all_recipients_refused_fails(make_runtime: Any, clock: FixedClock) -> None:
    with smtp_server() as (script, port):
        script.rcpt_replies = ["550 5.1.1 no such user"]
        runtime = make_runtime(port)
        letter_id = queue_letter(runtime, clock)
        assert send_letter(runtime.delivery(), letter_id) == "failed"
    assert script.delivered == []
    [attempt] = attempts(runtime, letter_id)
    assert (attempt.error_class, attempt.smtp_code) == ("rcpt", 550)


def test_a_busy_recipient_server_is_retried_later(make_runtime: Any, clock: FixedClock) -> None:
    with smtp_server() as (script, port):
        script.rcpt_replies = ["450 4.2.1 mailbox busy"] * 3
        runtime = make_runtime(port)
        letter_id = queue_letter(runtime, clock)
        assert send_letter(runtime.delivery(), letter_id) == "retry"
    letter = all_letters(runtime)[0]
    assert letter.status == LetterStatus.SCHEDULED
    assert letter.due_at == clock.now() + timedelta(seconds=600)
    assert [a.smtp_code for a in attempts(runtime, letter_id)] == [450, 450, 450]


def test_421_on_connect_is_transient_and_bounded(make_runtime: Any, clock: FixedClock) -> None:
    with refusing_server() as port:
        runtime = make_runtime(port, max_send_attempts=6)
        letter_id = queue_letter(runtime, clock)
        assert send_letter(runtime.delivery(), letter_id) == "retry"
        first = all_letters(runtime)[0]
        assert first.status == LetterStatus.SCHEDULED and "421" in (first.last_error or "")
        clock.set(first.due_at)
        tick.tick(runtime)
        assert send_letter(runtime.delivery(), letter_id) == "failed"  # 6 attempts in all
    letter = all_letters(runtime)[0]
    assert letter.status == LetterStatus.FAILED
    assert (letter.last_error or "").startswith("gave up after 6 attempts")
    assert {(a.outcome, a.error_class, a.smtp_code) for a in attempts(runtime, letter_id)} == {
        ("transient", "connect", 421)
    }


def test_connection_lost_after_data_is_unknown_and_never_resent(
    make_runtime: Any, clock: FixedClock
) -> None:
    with smtp_server() as (script, port):
        script.drop_after_data = True
        runtime = make_runtime(port)
        letter_id = queue_letter(runtime, clock)
        assert send_letter(runtime.delivery(), letter_id) == "unknown"
        script.drop_after_data = False
        clock.set(clock.now() + timedelta(days=2))
        report = tick.tick(runtime)
        assert (report.letters_queued, report.letters_requeued) == (0, 0)
        assert send_letter(runtime.delivery(), letter_id) == "skipped"
    assert len(script.delivered) == 1  # the server had it; we did not send it again
    [attempt] = attempts(runtime, letter_id)
    assert (attempt.outcome, attempt.error_class) == ("unknown", "after-data")
    assert all_letters(runtime)[0].status == LetterStatus.UNKNOWN


def test_one_connection_serves_many_letters(make_runtime: Any, clock: FixedClock) -> None:
    with smtp_server() as (script, port):
        runtime = make_runtime(port)
        ids = [queue_letter(runtime, clock, f"evt_{i}", f"c{i}@example.org") for i in range(3)]
        assert [send_letter(runtime.delivery(), i) for i in ids] == ["sent"] * 3
    assert script.connections == 1 and len(script.delivered) == 3


def test_a_dropped_idle_connection_is_reopened(make_runtime: Any, clock: FixedClock) -> None:
    import time

    with smtp_server() as (script, port):
        script.close_after_message = True  # the server hangs up after each message
        runtime = make_runtime(port)
        first = queue_letter(runtime, clock, "evt_1", "a@example.org")
        second = queue_letter(runtime, clock, "evt_2", "b@example.org")
        assert send_letter(runtime.delivery(), first) == "sent"
        time.sleep(0.3)
        assert send_letter(runtime.delivery(), second) == "sent"
    assert script.connections == 2 and len(script.delivered) == 2
    assert len(attempts(runtime, second)) == 1  # the reconnect is not a failed attempt


def test_auth(make_runtime: Any, clock: FixedClock) -> None:
    with smtp_server(auth=("mailer", "s3cret")) as (script, port):
        good = make_runtime(port, "mailer:s3cret@")
        assert send_letter(good.delivery(), queue_letter(good, clock)) == "sent"
    assert len(script.delivered) == 1


def test_rejected_auth_is_transient_our_configuration(make_runtime: Any, clock: FixedClock) -> None:
    with smtp_server(auth=("mailer", "s3cret")) as (script, port):
        runtime = make_runtime(port, "mailer:wrong@")
        letter_id = queue_letter(runtime, clock)
        assert send_letter(runtime.delivery(), letter_id) == "retry"
    assert script.delivered == []
    assert {(a.error_class, a.smtp_code) for a in attempts(runtime, letter_id)} == {("auth", 535)}


def test_an_address_unsubscribed_after_queueing_gets_nothing(
    make_runtime: Any, clock: FixedClock
) -> None:
    with smtp_server() as (script, port):
        runtime = make_runtime(port)
        letter_id = queue_letter(runtime, clock)
        # The address is suppressed while the send task is on its way. (An unsubscribe
        # event would also flip the queued letter itself; this checks the send-time guard.)
        with runtime.session_factory.begin() as session:
            session.add(
                Suppression(
                    email="k.mueller@example.de", reason="GDPR request", created_at=clock.now()
                )
            )
        assert send_letter(runtime.delivery(), letter_id) == "suppressed"
    assert script.delivered == [] and script.connections == 0
    with runtime.session_factory() as session:
        letter = session.get_one(Letter, letter_id)
    # The letter keeps the suppression's own reason, not a guess that it was an unsubscribe.
    assert letter.status_reason == f"suppressed by hand on {clock.now().date()}: GDPR request"


def test_a_letter_cancelled_after_queueing_is_skipped(make_runtime: Any, clock: FixedClock) -> None:
    with smtp_server() as (script, port):
        runtime = make_runtime(port)
        doc = json.loads((SAMPLES / "deal_closed.ru.json").read_text())
        [letter] = ingest_doc(runtime, doc, "evt_1")
        clock.set(letter.due_at)
        tick.tick(runtime)
        lost = {
            "type": "deal.lost",
            "timestamp": "2026-11-21T10:00:00Z",
            "data": {"deal": {"id": "d-98765"}},
        }
        ingest_doc(runtime, lost, "evt_2")
        assert send_letter(runtime.delivery(), letter.id) == "skipped"
    assert script.delivered == []
    assert all_letters(runtime)[0].status == LetterStatus.CANCELLED


def test_a_render_error_fails_without_retry_or_connection(
    make_runtime: Any, clock: FixedClock, tmp_path: Path
) -> None:
    import shutil

    from tests.conftest import TEMPLATES

    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES, templates)
    with smtp_server() as (script, port):
        runtime = make_runtime(port, templates_dir=templates)
        letter_id = queue_letter(runtime, clock)
        (templates / "feedback_logged" / "de" / "body.txt").write_text(
            "{{ feedback.txet.upper() }}"
        )
        assert send_letter(runtime.delivery(), letter_id) == "failed"
    assert script.connections == 0
    [attempt] = attempts(runtime, letter_id)
    assert attempt.error_class == "render"
    assert "feedback_logged/de/body.txt:1" in (attempt.error_text or "")


def test_a_worker_that_died_mid_send_leaves_an_unknown_letter(
    make_runtime: Any, clock: FixedClock
) -> None:
    from sqlalchemy import update

    from worker.models import Letter

    with smtp_server() as (_, port):
        runtime = make_runtime(port)
        letter_id = queue_letter(runtime, clock)
    with runtime.session_factory.begin() as session:  # as if the worker was killed mid-send
        session.execute(update(Letter).where(Letter.id == letter_id).values(status="sending"))
    clock.set(clock.now() + timedelta(seconds=runtime.settings.sending_timeout_seconds + 1))
    assert tick.tick(runtime).letters_lost == 1
    letter = all_letters(runtime)[0]
    assert letter.status == LetterStatus.UNKNOWN and "may have been sent" in (
        letter.last_error or ""
    )


def test_script_defaults_are_independent() -> None:
    assert Script().data_replies == [] and Script().delivered == []


def test_a_rendering_stored_without_its_locale_is_sent_with_the_letters_locale() -> None:
    """Renderings kept before the locale was stored must not get the English footer."""
    from typing import cast

    from worker.delivery.send import Delivery, render_letter
    from worker.events import GenericEvent

    stored = {"subject": "Danke", "text": "Hallo", "html": "<p>Hallo</p>"}
    letter = Letter(locale="de", rendered=stored, reuse_rendered=True)
    # The stored copy needs neither a runtime nor the event.
    rendered = render_letter(cast(Delivery, None), letter, cast(GenericEvent, None))
    assert (rendered.subject, rendered.locale) == ("Danke", "de")
