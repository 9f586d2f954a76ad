"""RFC 2047 encoded words in CRM data cannot end the header block, add headers or smuggle
SMTP commands, whatever the interpreter's patch level (CVE-2024-6923); the bytes of every
message are checked before any send."""

from __future__ import annotations

import base64
import copy
import json
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.conftest import NOW, SAMPLES, SECRET
from tests.helpers import count_rows, event_doc, ingest_doc, signed
from tests.smtp_server import smtp_server
from worker.clock import FixedClock
from worker.delivery.send import send_letter
from worker.delivery.senders import EmlSender, SendError
from worker.delivery.smtp import SmtpConfig, SmtpSender
from worker.delivery.wire_check import unsafe_reason
from worker.letters.message import ENCODED_WORD_BREAK
from worker.models import Attempt, Letter, LetterStatus
from worker.runtime import Runtime
from worker.scheduling import tick

DEAL: dict[str, Any] = json.loads((SAMPLES / "deal_closed.en.json").read_text())
# Its subject leaves room for a whole encoded word in the deal number (subjects are cut at 60).
DEAL_RU: dict[str, Any] = json.loads((SAMPLES / "deal_closed.ru.json").read_text())


def encoded(text: str) -> str:
    """`text` as one RFC 2047 encoded word, as an attacker would type it into the CRM."""
    return "=?utf-8?b?" + base64.b64encode(text.encode()).decode() + "?="


TAKEOVER = "=?utf-8?b?DQoNCkNhbGwgdXMh?="  # "\r\n\r\nCall us!"
SMUGGLE = encoded(
    "\n.\r\nMAIL FROM:<ceo@shop.example>\r\nRCPT TO:<victim@evil.example>\r\nDATA\r\n"
    "Subject: Pay now\r\n\r\nwire the money\r\n"
)
BCC = encoded("\r\nBcc: victim@evil.example\r\nX-Evil: 1")


def bare_line_breaks(raw: bytes) -> bool:
    return b"\r" in raw.replace(b"\r\n", b"") or b"\n" in raw.replace(b"\r\n", b"")


def header_block(raw: bytes) -> list[str]:
    """The names of the header fields before the first empty line, as a receiver reads them."""
    head = raw.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    return [line.split(":", 1)[0] for line in head.split("\r\n") if not line[:1].isspace()]


def send_event(runtime: Runtime, clock: FixedClock, doc: dict[str, Any], msg_id: str) -> Letter:
    [letter] = ingest_doc(runtime, doc, msg_id)
    clock.set(max(clock.now(), letter.due_at))
    tick.tick(runtime)
    send_letter(runtime.delivery(), letter.id)
    with runtime.session_factory() as session:
        return session.get_one(Letter, letter.id)


def with_values(base: dict[str, Any] = DEAL, **paths: str) -> dict[str, Any]:
    doc = copy.deepcopy(base)
    for path, value in paths.items():
        section, key = path.split("__")
        doc["data"].setdefault(section, {})[key] = value
    return doc


REQUIRED = {"From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type"}


@pytest.mark.parametrize(
    "doc",
    [
        with_values(contact__first_name=TAKEOVER),
        with_values(DEAL_RU, contact__first_name="", deal__number=TAKEOVER),
    ],
    ids=["first-name", "deal-number"],
)
def test_an_encoded_word_in_the_subject_cannot_take_over_the_body(
    smtp_runtimes: Any, clock: FixedClock, doc: dict[str, Any]
) -> None:
    with smtp_server() as (script, port):
        runtime = smtp_runtimes(port)
        letter = send_event(runtime, clock, doc, "evt_subject")
    assert letter.status == LetterStatus.SENT
    [raw] = script.raw
    assert not bare_line_breaks(raw)
    names = header_block(raw)
    assert set(names) >= REQUIRED and len(names) == len(set(names))
    received = message_from_bytes(raw, policy=policy.default)
    subject = str(received["Subject"])
    # The attacker's text is shown as the characters they typed, never decoded into lines.
    assert "\r" not in subject and "\n" not in subject and "Call us!" not in subject
    assert TAKEOVER in subject.replace(ENCODED_WORD_BREAK, "")
    assert b"Call us!" not in raw
    assert received.get_content_type() == "multipart/alternative"
    text = received.get_body(("plain",))
    assert text is not None and "Call us!" not in text.get_content()


def test_owner_name_cannot_inject_into_from_or_reply_to(
    smtp_runtimes: Any, clock: FixedClock
) -> None:
    doc = with_values(owner__name=f"Ivan {BCC}", contact__first_name=f"Anna {TAKEOVER}")
    with smtp_server() as (script, port):
        runtime = smtp_runtimes(port)
        letter = send_event(runtime, clock, doc, "evt_owner")
    assert letter.status == LetterStatus.SENT
    [raw] = script.raw
    assert not bare_line_breaks(raw)
    names = header_block(raw)
    assert "Bcc" not in names and "X-Evil" not in names
    assert set(names) >= REQUIRED and len(names) == len(set(names))
    received = message_from_bytes(raw, policy=policy.default)
    [sender] = received["From"].addresses
    [reply_to] = received["Reply-To"].addresses
    assert sender.addr_spec == "thanks@shop.example"
    assert reply_to.addr_spec == DEAL["data"]["owner"]["email"]
    for name in (sender.display_name, reply_to.display_name):
        assert name.startswith("Ivan ") and "\n" not in name and "Bcc:" not in name


def test_owner_name_cannot_smuggle_a_second_smtp_message(
    smtp_runtimes: Any, clock: FixedClock
) -> None:
    with smtp_server() as (script, port):
        runtime = smtp_runtimes(port)
        letter = send_event(runtime, clock, with_values(owner__name=SMUGGLE), "evt_smuggle")
    assert letter.status == LetterStatus.SENT
    [raw] = script.raw  # one message, as one DATA
    # A relay that takes a bare LF before "." as end of data would otherwise run our
    # "MAIL FROM" line as a command: no bare line break, no line that is a command or a dot.
    assert not bare_line_breaks(raw)
    lines = raw.split(b"\r\n")
    assert b"." not in lines
    assert not any(line.upper().startswith((b"MAIL FROM", b"RCPT TO", b"DATA")) for line in lines)


@pytest.mark.parametrize(
    "email",
    [f"{TAKEOVER}@example.org", "anna=?x@example.org", "an\x7fna@example.org"],
    ids=["encoded-word", "eq-question", "control"],
)
@pytest.mark.parametrize("field", ["contact", "owner"])
def test_an_address_whose_local_part_could_decode_is_refused_at_intake(
    client: TestClient, runtime: Runtime, email: str, field: str
) -> None:
    doc = event_doc()
    doc["data"][field] = {**doc["data"].get(field, {}), "email": email}
    body, headers = signed(doc, SECRET, NOW)
    response = client.post("/webhooks/generic", content=body, headers=headers)
    assert response.status_code == 422
    assert f"data.{field}.email" in {p["field"] for p in response.json()["problems"]}
    assert count_rows(runtime.session_factory) == (0, 0)


def test_ordinary_addresses_are_still_accepted(client: TestClient) -> None:
    doc = event_doc(email="anna.o'neil+thanks=1@example.org")
    body, headers = signed(doc, SECRET, NOW)
    assert client.post("/webhooks/generic", content=body, headers=headers).status_code == 202


# --- the check of the final bytes ------------------------------------------------------


GOOD_HEAD = b"From: a@shop.example\r\nTo: b@example.org\r\nSubject: Hi\r\n\r\n"
NAMES = ["From", "To", "Subject"]


@pytest.mark.parametrize(
    ("data", "stuffed", "why"),
    [
        (GOOD_HEAD + b"one\ntwo\r\n", False, "bare LF"),
        (GOOD_HEAD + b"one\rtwo\r\n", False, "bare CR"),
        (GOOD_HEAD + b"one\r\n.\r\nMAIL FROM:<x@y>\r\n.\r\n", True, "lone"),
        (GOOD_HEAD + b"one\r\n.x\r\n.\r\n", True, "lone"),
        (GOOD_HEAD + b"no end\r\n", True, "end"),
        (
            b"From: a@shop.example\r\n\r\nTo: b@example.org\r\nSubject: Hi\r\n\r\nx\r\n",
            False,
            "header",
        ),
        (b"From: a@shop.example\r\nTo: b@example.org\r\nwire money\r\n\r\nx\r\n", False, "header"),
        (
            b"From: a@shop.example\r\nTo: b@example.org\r\nSubject: "
            + TAKEOVER.encode()
            + b"\r\n\r\nx\r\n",
            False,
            "Subject",
        ),
    ],
    ids=[
        "bare-lf",
        "bare-cr",
        "lone-dot",
        "unstuffed-dot",
        "no-terminator",
        "early-end",
        "not-a-header",
        "encoded-line-break",
    ],
)
def test_the_wire_check_refuses_unsafe_bytes(data: bytes, stuffed: bool, why: str) -> None:
    reason = unsafe_reason(data, NAMES, dot_stuffed=stuffed)
    assert reason is not None and why in reason


def test_the_wire_check_passes_a_real_letter_both_ways() -> None:
    from worker.delivery.smtp import _dot_stuff

    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@shop.example", "b@x.example", "Hi"
    message.set_content(".\nlines\r\n.. with dots\rand a lone CR\n.\n")
    data = message.as_bytes(policy=policy.SMTP)
    assert unsafe_reason(data, message.keys(), dot_stuffed=False) is None
    assert unsafe_reason(_dot_stuff(data), message.keys(), dot_stuffed=True) is None


def smuggling_message() -> EmailMessage:
    """A message whose serialized header block holds SMTP commands, as an unpatched
    library writes one (set_raw skips the header checks, like CVE-2024-6923)."""
    message = EmailMessage()
    message["From"], message["To"] = "thanks@shop.example", "anna@example.org"
    message["Message-ID"] = "<evil@shop.example>"
    message.set_raw("Subject", "Hi\n.\r\nMAIL FROM:<ceo@shop.example>\r\nDATA")
    message.set_content("hello\n")
    return message


def test_the_smtp_sender_refuses_unsafe_bytes_before_the_transaction() -> None:
    good = EmailMessage()
    good["From"], good["To"], good["Message-ID"] = "t@shop.example", "a@x.example", "<ok@x>"
    good["Subject"] = "Hi"
    good.set_content("hello\n")
    with smtp_server() as (script, port):
        sender = SmtpSender(SmtpConfig.from_url(f"smtp://127.0.0.1:{port}", timeout=5))
        try:
            with pytest.raises(SendError) as refused:
                sender.send(smuggling_message(), "thanks@shop.example", "anna@example.org")
            sender.send(good, "t@shop.example", "a@x.example")  # the connection is fine
        finally:
            sender.close()
    assert refused.value.kind == "permanent" and refused.value.error_class == "wire-check"
    assert script.delivered == ["<ok@x>"]


def test_the_eml_sender_writes_no_unsafe_file(tmp_path: Path) -> None:
    with pytest.raises(SendError) as refused:
        EmlSender(tmp_path).send(smuggling_message(), "thanks@shop.example", "anna@example.org")
    assert refused.value.kind == "permanent"
    assert not list(tmp_path.iterdir())


def test_a_letter_with_unsafe_bytes_fails_permanently_and_is_not_sent(
    smtp_runtimes: Any, clock: FixedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should header neutralising ever miss a path, the check of the final bytes still
    stops the letter, with a reason, instead of sending it or leaving it in doubt."""
    import worker.letters.message as message_module

    monkeypatch.setattr(message_module, "header_text", lambda value: value, raising=False)
    with smtp_server() as (script, port):
        runtime = smtp_runtimes(port)
        letter = send_event(runtime, clock, with_values(owner__name=SMUGGLE), "evt_wire")
    assert script.delivered == []
    assert letter.status == LetterStatus.FAILED
    assert letter.last_error is not None and "wire-check" in letter.last_error
    with runtime.session_factory() as session:
        [attempt] = session.scalars(select(Attempt).where(Attempt.letter_id == letter.id))
    assert attempt.outcome == "permanent" and attempt.error_class == "wire-check"


def test_a_stored_address_that_could_decode_fails_the_letter_without_sending(
    smtp_runtimes: Any, clock: FixedClock
) -> None:
    """Events accepted before intake refused such local parts still reach no header."""
    from sqlalchemy import update

    with smtp_server() as (script, port):
        runtime = smtp_runtimes(port)
        [letter] = ingest_doc(runtime, copy.deepcopy(DEAL), "evt_stored")
        with runtime.session_factory.begin() as session:
            session.execute(
                update(Letter)
                .where(Letter.id == letter.id)
                .values(contact_email=f"{TAKEOVER}@example.org")
            )
        clock.set(max(clock.now(), letter.due_at))
        tick.tick(runtime)
        send_letter(runtime.delivery(), letter.id)
    assert script.delivered == []
    with runtime.session_factory() as session:
        stored = session.get_one(Letter, letter.id)
    assert stored.status == LetterStatus.FAILED
    assert stored.last_error is not None and "'=?'" in stored.last_error
