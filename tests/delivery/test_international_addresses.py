"""International addresses: IDN domains go out in ASCII, non-ASCII local parts need
SMTPUTF8, and no failure inside an SMTP transaction spoils the next letter."""

from __future__ import annotations

import json
import smtplib
from email import message_from_string
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import SAMPLES
from tests.helpers import ingest_doc
from tests.smtp_server import smtp_server
from worker.clock import FixedClock
from worker.delivery.send import send_letter
from worker.delivery.senders import EmlSender
from worker.models import Attempt, Letter, LetterStatus
from worker.runtime import Runtime
from worker.scheduling import tick

FEEDBACK: dict[str, Any] = json.loads((SAMPLES / "feedback_logged.de.json").read_text())


def plan(runtime: Runtime, email: str, msg_id: str, owner_email: str | None = None) -> int:
    doc = json.loads(json.dumps(FEEDBACK))
    doc["data"]["contact"]["email"] = email
    if owner_email:
        doc["data"]["owner"]["email"] = owner_email
    [letter] = ingest_doc(runtime, doc, msg_id)
    return letter.id


def queue_all(runtime: Runtime, clock: FixedClock) -> None:
    with runtime.session_factory() as session:
        latest = max(session.scalars(select(Letter.due_at)))
    clock.set(max(clock.now(), latest))
    tick.tick(runtime)


def letter(runtime: Runtime, letter_id: int) -> Letter:
    with runtime.session_factory() as session:
        return session.get_one(Letter, letter_id)


def attempts(runtime: Runtime, letter_id: int) -> list[Attempt]:
    with runtime.session_factory() as session:
        return list(session.scalars(select(Attempt).where(Attempt.letter_id == letter_id)))


def header_lines(raw: bytes, name: str) -> list[bytes]:
    return [line for line in raw.split(b"\r\n") if line.startswith(name.encode() + b":")]


def test_an_idn_domain_is_sent_in_its_ascii_form(smtp_runtimes: Any, clock: FixedClock) -> None:
    with smtp_server() as (script, port):
        runtime = smtp_runtimes(port)
        letter_id = plan(
            runtime, "anna@exämple.org", "evt_1", owner_email="jonas@verkäufer.example"
        )
        queue_all(runtime, clock)
        assert send_letter(runtime.delivery(), letter_id) == "sent"
    [(_, recipients, options)] = script.envelopes
    assert recipients == ["anna@xn--exmple-cua.org"]
    assert "SMTPUTF8" not in options  # an ASCII envelope needs nothing special
    raw = script.raw[0]
    assert header_lines(raw, "To") == [b"To: anna@xn--exmple-cua.org"]
    assert header_lines(raw, "Reply-To") == [
        b"Reply-To: Jonas Weber <jonas@xn--verkufer-3za.example>"
    ]
    assert letter(runtime, letter_id).status == LetterStatus.SENT


def test_a_non_ascii_local_part_goes_out_with_smtputf8_when_offered(
    smtp_runtimes: Any, clock: FixedClock
) -> None:
    with smtp_server(smtputf8=True) as (script, port):
        runtime = smtp_runtimes(port)
        letter_id = plan(runtime, "müller@exämple.de", "evt_1")
        queue_all(runtime, clock)
        assert send_letter(runtime.delivery(), letter_id) == "sent"
    [(_, recipients, options)] = script.envelopes
    assert recipients == ["müller@xn--exmple-cua.de"] and "SMTPUTF8" in options
    # RFC 6532: the header carries the address in UTF-8, not an (invalid) encoded word.
    assert header_lines(script.raw[0], "To") == ["To: müller@xn--exmple-cua.de".encode()]


def test_without_smtputf8_a_non_ascii_local_part_fails_clearly_and_the_next_letter_goes(
    smtp_runtimes: Any, clock: FixedClock
) -> None:
    with smtp_server() as (script, port):
        runtime = smtp_runtimes(port)
        umlaut = plan(runtime, "müller@example.de", "evt_1")
        plain = plan(runtime, "anna@example.org", "evt_2")
        queue_all(runtime, clock)
        assert send_letter(runtime.delivery(), umlaut) == "failed"
        assert send_letter(runtime.delivery(), plain) == "sent"
    failed = letter(runtime, umlaut)
    assert failed.status == LetterStatus.FAILED
    assert "SMTPUTF8" in (failed.last_error or "")
    [attempt] = attempts(runtime, umlaut)
    assert (attempt.outcome, attempt.error_class) == ("permanent", "rcpt")
    assert script.delivered == [letter(runtime, plain).message_id]


def test_an_exception_inside_a_transaction_does_not_spoil_the_next_letter(
    smtp_runtimes: Any, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After MAIL FROM the server holds an open transaction: a client-side exception there
    must reset or drop the connection, or the next MAIL gets `503 nested MAIL`."""
    real_rcpt = smtplib.SMTP.rcpt
    calls: list[str] = []

    def rcpt_failing_once(self: smtplib.SMTP, recip: str, options: Any = ()) -> Any:
        calls.append(recip)
        if len(calls) == 1:
            raise UnicodeEncodeError("ascii", recip, 0, 1, "injected")
        return real_rcpt(self, recip, options)

    monkeypatch.setattr(smtplib.SMTP, "rcpt", rcpt_failing_once)
    with smtp_server() as (script, port):
        runtime = smtp_runtimes(port)
        first = plan(runtime, "anna@example.org", "evt_1")
        second = plan(runtime, "bob@example.org", "evt_2")
        queue_all(runtime, clock)
        assert send_letter(runtime.delivery(), first) == "failed"
        assert send_letter(runtime.delivery(), second) == "sent"
    assert letter(runtime, first).status == LetterStatus.FAILED  # never left in `sending`
    assert "injected" in (letter(runtime, first).last_error or "")
    assert script.delivered == [letter(runtime, second).message_id]


def _message(to_user: str, to_domain: str) -> EmailMessage:
    from email.headerregistry import Address

    msg = EmailMessage()
    msg["From"] = Address("Thankly", "thanks", "shop.example")
    msg["To"] = Address(username=to_user, domain=to_domain)
    msg["Subject"] = "Danke"
    msg["Message-ID"] = f"<{to_user}.1@shop.example>"
    msg.set_content("Hallo")
    return msg


@pytest.mark.parametrize(
    ("user", "domain", "expected"),
    [
        ("anna", "exämple.org", b"To: anna@xn--exmple-cua.org"),
        ("müller", "example.de", "To: müller@example.de".encode()),
    ],
)
def test_the_eml_sender_writes_a_valid_to(
    tmp_path: Path, user: str, domain: str, expected: bytes
) -> None:
    EmlSender(tmp_path).send(_message(user, domain), "thanks@shop.example", f"{user}@{domain}")
    [path] = tmp_path.glob("*.eml")
    raw = path.read_bytes()
    assert header_lines(raw, "To") == [expected]
    [address] = message_from_string(raw.decode(), policy=default)["To"].addresses
    assert address.username == user and "=?" not in raw.decode()
