"""Stored values are printed as text: a recipient's User-Agent, a CRM's error body or an
event's contact can neither crash a command with `[/]` nor plant a terminal hyperlink."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from typing import Any

import pytest
from rich.console import Console
from sqlalchemy import update

from tests.conftest import SAMPLES
from tests.helpers import ingest_doc
from worker.models import CrmActivity, Event, Letter, Open, Suppression
from worker.runtime import Runtime

LINK = "[link=https://evil.example/login]click[/link]"
CLOSE = "[/]"
OSC8 = "\x1b]8;"  # how a terminal is told to start a hyperlink


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """Every command prints to a colour terminal wide enough not to wrap, so hyperlinks
    and styles would show up as escape sequences in what it wrote."""
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=400, highlight=False)
    for module in (
        "common",
        "letters",
        "letter_actions",
        "stats",
        "crm",
        "events",
        "suppressions",
        "rules",
    ):
        monkeypatch.setattr(f"worker.cli.{module}.out", console)
    return screen


def _letter(runtime: Runtime) -> Letter:
    doc = json.loads((SAMPLES / "feedback_logged.de.json").read_text())
    [letter] = ingest_doc(runtime, doc, "evt_markup")
    return letter


def _shows_literally(result: Any, screen: io.StringIO, *values: str) -> None:
    assert result.exit_code == 0, result.output
    printed = screen.getvalue()
    assert OSC8 not in printed
    for value in values:
        assert value in printed


def test_letters_show_prints_user_agents_as_text(
    runtime: Runtime, cli: Any, terminal: io.StringIO
) -> None:
    letter = _letter(runtime)
    now = runtime.clock.now()
    with runtime.session_factory.begin() as session:
        for n, agent in enumerate((CLOSE, LINK)):
            session.add(
                Open(
                    letter_id=letter.id,
                    at=now + timedelta(seconds=n),
                    method="GET",
                    user_agent=agent,
                    kind="human",
                )
            )
    _shows_literally(cli("letters", "show", str(letter.id)), terminal, CLOSE, LINK)


def test_crm_pending_prints_error_bodies_as_text(
    runtime: Runtime, cli: Any, terminal: io.StringIO
) -> None:
    letter = _letter(runtime)
    now = runtime.clock.now()
    with runtime.session_factory.begin() as session:
        session.add(
            CrmActivity(
                letter_id=letter.id,
                kind="email.sent",
                idempotency_key="markup-1",
                payload={},
                next_attempt_at=now,
                last_error=f"HTTP 502: {LINK} {CLOSE}",
                created_at=now,
                updated_at=now,
            )
        )
    _shows_literally(cli("crm", "pending"), terminal, LINK, CLOSE)


def test_letters_list_and_stats_print_stored_names_as_text(
    runtime: Runtime, cli: Any, terminal: io.StringIO
) -> None:
    letter = _letter(runtime)
    with runtime.session_factory.begin() as session:
        session.execute(
            update(Letter)
            .where(Letter.id == letter.id)
            .values(locale=CLOSE, contact_email=f"{LINK}@example.org")
        )
    _shows_literally(cli("letters", "list"), terminal, LINK, f"/{CLOSE}")
    _shows_literally(cli("stats"), terminal, f"/{CLOSE}")


def test_events_list_prints_contacts_as_text(
    runtime: Runtime, cli: Any, terminal: io.StringIO
) -> None:
    _letter(runtime)
    with runtime.session_factory.begin() as session:
        session.execute(update(Event).values(contact_email=f"{LINK}{CLOSE}"))
    _shows_literally(cli("events", "list"), terminal, LINK + CLOSE)


def test_suppressions_list_prints_reasons_as_text(
    runtime: Runtime, cli: Any, terminal: io.StringIO
) -> None:
    with runtime.session_factory.begin() as session:
        session.add(
            Suppression(email="x@example.org", reason=CLOSE, created_at=runtime.clock.now())
        )
        session.add(Suppression(email="y@example.org", reason=LINK, created_at=runtime.clock.now()))
    _shows_literally(cli("suppressions", "list"), terminal, CLOSE, LINK)


def test_an_error_quoting_a_typed_value_prints_it_as_text(
    runtime: Runtime, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    screen = io.StringIO()
    monkeypatch.setattr(
        "worker.cli.common.err",
        Console(file=screen, force_terminal=True, width=400, highlight=False),
    )
    result = cli("events", "show", LINK)
    assert result.exit_code == 1
    assert OSC8 not in screen.getvalue()
    assert LINK in screen.getvalue()
