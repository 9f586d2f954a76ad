"""`thankly preview --event` picks locale and time zone as planning does; `thankly letters
preview ID` shows exactly what the sender will send, and changes nothing."""

from __future__ import annotations

import email
import json
from collections.abc import Iterator
from dataclasses import replace
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select, update
from typer.testing import CliRunner

from tests.conftest import RULES_FILE, TEMPLATES, make_settings
from tests.helpers import all_letters, ingest_doc
from worker.cli.main import app
from worker.clock import FixedClock
from worker.delivery.send import send_letter, unsubscribe_url
from worker.delivery.senders import MemorySender
from worker.models import Attempt, CrmActivity, Letter, LetterStatus
from worker.queue import RecordingDispatcher
from worker.runtime import Runtime, build_runtime
from worker.tracking.hits import open_token

runner = CliRunner()


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), prog_name="thankly")
    return result.exit_code, result.stdout, result.stderr


def feedback(contact: dict[str, Any], at: str = "2026-11-20T23:30:00Z") -> dict[str, Any]:
    return {
        "type": "feedback.logged",
        "timestamp": at,
        "data": {
            "contact": {"email": "jo@example.org", "first_name": "Jo", **contact},
            "feedback": {"id": "f-9", "rating": 9, "text": "Quick and kind."},
            "owner": {"name": "Mia Sommer", "email": "mia@seller.example"},
        },
    }


# --- thankly preview LETTER --event FILE -------------------------------------------------


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("THANKLY_RULES_FILE", str(RULES_FILE))  # default locale en, Berlin
    monkeypatch.setenv("THANKLY_TEMPLATES_DIR", str(TEMPLATES))
    monkeypatch.setenv("THANKLY_VAR_DIR", str(tmp_path / "var"))
    return tmp_path


def preview_event(folder: Path, doc: dict[str, Any], *args: str) -> tuple[int, str, str]:
    path = folder / "event.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return invoke("preview", "feedback_logged", "--event", str(path), *args)


def test_the_contacts_locale_picks_the_letter_as_planning_does(files: Path) -> None:
    code, out, err = preview_event(files, feedback({"locale": "de-AT"}))
    assert code == 0 and err == ""  # de-AT → de, no fallback to mention
    assert out.startswith("Subject: Vielen Dank für Ihre Rückmeldung\n")


def test_a_contact_locale_without_a_letter_falls_back_and_says_so(files: Path) -> None:
    code, out, err = preview_event(files, feedback({"locale": "fr-CA"}))
    assert code == 0
    assert "no feedback_logged in the contact's locale 'fr-CA'; showing 'en'" in err
    assert out.startswith("Subject: Jo, thank you for your feedback")


def test_locale_option_overrides_the_contact(files: Path) -> None:
    code, out, err = preview_event(files, feedback({"locale": "de"}), "--locale", "pl")
    assert code == 0 and err == ""
    assert out.splitlines()[0] == "Subject: Dziękujemy za opinię" and "Rückmeldung" not in out


@pytest.mark.parametrize(
    ("contact", "date"),
    [
        ({}, "November 21, 2026"),  # the rules' default zone: 00:30 in Berlin
        ({"timezone": "America/New_York"}, "November 20, 2026"),  # 18:30 in New York
    ],
)
def test_dates_are_in_the_zone_planning_would_use(
    files: Path, contact: dict[str, Any], date: str
) -> None:
    code, out, _ = preview_event(files, feedback(contact))
    assert code == 0
    assert f"On {date} you wrote:" in out


# --- thankly letters preview ID ----------------------------------------------------------


# Long enough for the settings' minimum length (the shared fixtures use a short one).
KEY = "letters-preview-test-key-0123456789abcdef"


@pytest.fixture
def runtime(
    tmp_path: Path, db_url: str, clock: FixedClock, dispatcher: RecordingDispatcher
) -> Iterator[Runtime]:
    settings = make_settings(tmp_path, db_url, secret_key=SecretStr(KEY))
    rt = build_runtime(settings, clock=clock, dispatcher=dispatcher)
    yield rt
    rt.engine.dispose()


@pytest.fixture
def planned(runtime: Runtime, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Letter:
    """One scheduled letter in the database the CLI reads, with the runtime's settings."""
    settings = runtime.settings
    for name, value in {
        "DATABASE_URL": db_url,
        "SECRET_KEY": KEY,
        "MAIL_FROM": settings.mail_from,
        "RULES_FILE": str(settings.rules_file),
        "TEMPLATES_DIR": str(settings.templates_dir),
        "VAR_DIR": str(settings.var_dir),
    }.items():
        monkeypatch.setenv(f"THANKLY_{name}", value)
    (letter,) = ingest_doc(runtime, feedback({"locale": "ru", "timezone": "Asia/Tokyo"}), "e1")
    return letter


def snapshot(runtime: Runtime) -> list[Any]:
    with runtime.session_factory() as session:
        counts = [
            session.scalar(select(func.count()).select_from(table))
            for table in (Attempt, CrmActivity)
        ]
    rows = [
        (x.status, x.attempt_count, x.updated_at, x.rendered, x.reuse_rendered, x.due_at)
        for x in all_letters(runtime)
    ]
    return [counts, rows]


def parse(raw: str) -> EmailMessage:
    message = email.message_from_string(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_the_preview_is_the_message_the_sender_sends(runtime: Runtime, planned: Letter) -> None:
    code, out, _ = invoke("letters", "preview", str(planned.id), "--format", "eml")
    assert code == 0
    shown = parse(out)

    with runtime.session_factory.begin() as session:
        session.execute(
            update(Letter).where(Letter.id == planned.id).values(status=LetterStatus.QUEUED)
        )
    sender = MemorySender()
    assert send_letter(replace(runtime.delivery(), sender=sender), planned.id) == "sent"
    (sent,) = sender.sent

    # Only the Date (the moment of sending) and the MIME boundary (random) may differ.
    assert [(k, v) for k, v in shown.items() if k not in ("Date", "Content-Type")] == [
        (k, v) for k, v in sent.items() if k not in ("Date", "Content-Type")
    ]
    assert shown.get_content_type() == sent.get_content_type() == "multipart/alternative"
    for subtype in ("plain", "html"):
        preview_part, sent_part = shown.get_body((subtype,)), sent.get_body((subtype,))
        assert preview_part is not None and sent_part is not None
        assert preview_part.get_content() == sent_part.get_content()
    # What "the same" means here: the letter's own Message-ID, link and tracking pixel.
    assert shown["Message-ID"] == planned.message_id
    unsubscribe = unsubscribe_url(runtime.settings, KEY, planned.id)
    assert shown["List-Unsubscribe"] == f"<{unsubscribe}>"
    html_part = shown.get_body(("html",))
    assert html_part is not None and open_token(KEY, planned.id) in html_part.get_content()


def test_text_shows_the_headers_and_the_plain_part_as_sent(
    runtime: Runtime, planned: Letter
) -> None:
    code, out, err = invoke("letters", "preview", str(planned.id))
    assert code == 0 and err == ""
    head, _, body = out.partition("\n\n")
    unsubscribe = unsubscribe_url(runtime.settings, KEY, planned.id)
    assert head.splitlines() == [
        "From: Mia Sommer <thanks@shop.example>",
        "To: jo@example.org",
        "Reply-To: Mia Sommer <mia@seller.example>",
        "Subject: Jo, спасибо за Ваш отзыв",
        f"Message-ID: {planned.message_id}",
        f"List-Unsubscribe: <{unsubscribe}>",
    ]
    assert "21 ноября 2026" in body  # 08:30 in Tokyo, the contact's zone
    assert body.rstrip().endswith(unsubscribe)


def test_previewing_changes_nothing(runtime: Runtime, planned: Letter) -> None:
    before = snapshot(runtime)
    for fmt in ("text", "html", "eml"):
        code, _, _ = invoke("letters", "preview", str(planned.id), "--format", fmt)
        assert code == 0
    assert snapshot(runtime) == before
    assert not runtime.settings.outbox_dir.exists()  # nothing was "sent" to .eml either


def test_html_is_written_to_a_file_that_cannot_record_an_open(
    runtime: Runtime, planned: Letter
) -> None:
    code, out, _ = invoke("letters", "preview", str(planned.id), "--format", "html")
    assert code == 0
    path = Path(out.split("wrote ", 1)[1].split(" (open", 1)[0])
    assert path == (runtime.settings.var_dir / "preview" / f"letter-{planned.id}.html").resolve()
    html = path.read_text(encoding="utf-8")
    assert f"/t/o/{open_token(KEY, planned.id)}.gif" in html  # as sent…
    assert 'content="img-src data:"' in html.split("</head>", 1)[0]  # …but not loaded


def test_a_reuse_rendered_replay_shows_the_stored_rendering(
    runtime: Runtime, planned: Letter
) -> None:
    stored = {"subject": "Stored subject", "text": "Stored text\n", "html": "<p>Stored</p>"}
    with runtime.session_factory.begin() as session:
        session.execute(
            update(Letter)
            .where(Letter.id == planned.id)
            .values(status=LetterStatus.SENT, rendered=stored, reuse_rendered=True)
        )
    code, out, err = invoke("letters", "preview", str(planned.id))
    assert code == 0
    assert "Subject: Stored subject" in out and "\n\nStored text\n" in out
    assert f"letter #{planned.id} is sent; this is what a replay would send" in err
    assert "the rendering stored for a --reuse-rendered replay" in err


def test_an_unknown_letter_is_one_line_and_exit_1(
    planned: Letter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("THANKLY_SECRET_KEY")  # not needed to find out there is no letter
    code, out, err = invoke("letters", "preview", "9999")
    assert (code, out) == (1, "")
    assert err == "error: no letter #9999\n"


def test_a_wrong_format_lists_the_valid_ones(planned: Letter) -> None:
    code, _, err = invoke("letters", "preview", str(planned.id), "--format", "pdf")
    assert code == 2 and "--format 'pdf' is not one of: text, html, eml" in err
