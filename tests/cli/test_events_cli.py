"""`thankly event send` builds an event the shipped rules turn into a letter, and
`thankly events list/show` say what arrived and what each rule decided (both databases)."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import time_machine
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from typer.testing import Result

from tests.conftest import NOW, SAMPLES, SECRET
from tests.helpers import all_letters, ingest_doc
from worker.clock import FixedClock
from worker.intake.ingest import ingest
from worker.models import Event, InboxItem, InboxStatus, LetterStatus
from worker.runtime import Runtime

RU_DEAL: dict[str, Any] = json.loads((SAMPLES / "deal_closed.ru.json").read_text())
TYPES = (
    "deal.closed, feedback.logged, referral.made, deal.reopened, deal.lost, contact.unsubscribed"
)


@pytest.fixture
def send(cli: Any, client: TestClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> Any:
    """`thankly event send …` posting to the test app (signed with the real secret, at the
    test clock's time), then ingesting what it accepted, as the worker would."""
    monkeypatch.setenv("THANKLY_WEBHOOK_SECRETS", SECRET)

    def post(url: str, content: bytes, headers: dict[str, str], timeout: float) -> httpx.Response:
        answer: httpx.Response = client.post(urlsplit(url).path, content=content, headers=headers)
        return answer

    monkeypatch.setattr(httpx, "post", post)

    def run(*args: str) -> Result:
        with time_machine.travel(NOW, tick=False):
            result: Result = cli("event", "send", *args)
        with runtime.session_factory() as session:
            pending = session.scalars(
                select(InboxItem.id).where(InboxItem.status == InboxStatus.PENDING)
            ).all()
        for inbox_id in pending:
            ingest(runtime.session_factory, inbox_id, runtime.clock, runtime.planner)
        return result

    return run


def present(part: dict[str, Any]) -> dict[str, Any]:
    """A stored payload section without the fields the model filled with None."""
    return {k: v for k, v in part.items() if v is not None}


def stored_events(runtime: Runtime) -> list[Event]:
    with runtime.session_factory() as session:
        return list(session.scalars(select(Event).order_by(Event.id)))


# --- event send ----------------------------------------------------------------------


def test_the_readme_event_yields_a_letter_under_the_default_rules(
    send: Any, runtime: Runtime
) -> None:
    result = send("--type", "deal.closed", "--email", "anna@example.org")
    assert result.exit_code == 0, result.stderr
    assert re.fullmatch(r"202 accepted evt_[0-9a-f]{32}\n", result.stdout)
    said = re.fullmatch(
        r"event: deal\.closed for anna@example\.org, deal (d-[0-9a-f]{8}) \(generated\), "
        r"amount 1000 EUR \(default\)\n",
        result.stderr,
    )
    assert said, result.stderr
    [event] = stored_events(runtime)
    assert present(event.payload["data"]["deal"]) == {
        "id": said.group(1),
        "amount": "1000",
        "currency": "EUR",
    }
    [letter] = all_letters(runtime)
    assert (letter.status, letter.rule, letter.contact_email, letter.deal_id) == (
        LetterStatus.SCHEDULED,
        "deal-closed-thanks",
        "anna@example.org",
        said.group(1),
    )


def test_options_build_a_realistic_deal(send: Any, runtime: Runtime) -> None:
    result = send(
        "--type", "deal.closed", "--email", "anna.ivanova@example.org",
        "--name", "Anna Maria Ivanova", "--locale", "ru-RU", "--timezone", "Europe/Moscow",
        "--amount", "250.50", "--currency", "usd", "--deal", "d-7",
        "--owner-name", "Ivan Petrov", "--owner-email", "ivan@seller.example",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert result.stderr == (
        "event: deal.closed for anna.ivanova@example.org, name Anna Maria Ivanova, locale "
        "ru-RU, timezone Europe/Moscow, deal d-7, amount 250.50 USD, owner Ivan Petrov "
        "ivan@seller.example\n"
    )
    [event] = stored_events(runtime)
    data = event.payload["data"]
    assert present(data["contact"]) == {
        "email": "anna.ivanova@example.org",
        "first_name": "Anna",
        "last_name": "Maria Ivanova",
        "locale": "ru-RU",
        "timezone": "Europe/Moscow",
    }
    assert present(data["deal"]) == {"id": "d-7", "amount": "250.50", "currency": "USD"}
    assert present(data["owner"]) == {"name": "Ivan Petrov", "email": "ivan@seller.example"}
    [letter] = all_letters(runtime)
    assert (letter.locale, letter.deal_id) == ("ru", "d-7")


def test_feedback_and_referral_options_land_in_their_sections(send: Any, runtime: Runtime) -> None:
    feedback = send(
        "--type", "feedback.logged", "--email", "k@example.de", "--rating", "90", "--text", "Top"
    )
    referral = send(
        "--type", "referral.made", "--email", "p@example.pl", "--referred-name", "Jan Nowak"
    )
    assert feedback.exit_code == referral.exit_code == 0, feedback.stderr + referral.stderr
    first, second = (e.payload["data"] for e in stored_events(runtime))
    assert present(first["feedback"]) == {"rating": 90, "text": "Top"}
    assert present(second["referral"]) == {"referred_name": "Jan Nowak"}
    assert first["deal"] is None and second["deal"] is None  # no made-up deal for them


def test_an_amount_below_the_condition_is_sent_and_explained(send: Any, cli: Any) -> None:
    result = send("--type", "deal.closed", "--email", "sam@example.com", "--amount", "50")
    assert result.exit_code == 0 and "amount 50 EUR," not in result.stderr
    shown = cli("events", "show", "1")
    assert "deal-closed-thanks: no letter: condition not met: deal.amount is 50, needs gte 100" in (
        shown.stdout
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--type", "deal.close", "--email", "a@b.org"],
         f"--type 'deal.close' is not one of: {TYPES}"),
        (["--type", "deal.closd"], f"--type 'deal.closd' is not one of: {TYPES}"),
        (["--type", "deal.closed", "--email", "a@b.org", "--rating", "5"],
         "--rating applies to feedback.logged only"),
        (["--type", "feedback.logged", "--email", "a@b.org", "--amount", "5"],
         "--amount applies to deal.closed only"),
        (["--type", "deal.closed", "--email", "a@b.org", "--amount", "12,5"],
         "--amount '12,5' is not a number such as 1250 or 99.90"),
        ([str(SAMPLES / "deal_closed.ru.json"), "--name", "Anna"],
         "give either an event FILE or --type/--email and their options, not both"),
    ],
)  # fmt: skip
def test_usage_errors_are_one_line_and_exit_2(
    send: Any, runtime: Runtime, args: list[str], message: str
) -> None:
    result = send(*args)
    assert result.exit_code == 2
    assert result.stderr == f"error: {message}\n"
    assert stored_events(runtime) == []


# --- events list ---------------------------------------------------------------------


@pytest.fixture
def history(runtime: Runtime, clock: FixedClock) -> list[str]:
    """Four events an hour apart: a deal (letter), a small deal (none), its loss, feedback."""
    small = json.loads(json.dumps(RU_DEAL))
    small["data"]["deal"].update(id="d-2", amount="20")
    small["data"]["contact"]["email"] = "Olga@Example.org"
    lost = {
        "type": "deal.lost",
        "timestamp": "2026-11-20T12:00:00Z",
        "data": {"deal": {"id": "d-98765"}},
    }
    feedback = json.loads((SAMPLES / "feedback_logged.de.json").read_text())
    ids = []
    for number, doc in enumerate([RU_DEAL, small, lost, feedback], start=1):
        ingest_doc(runtime, doc, f"evt_{number}")
        ids.append(f"evt_{number}")
        clock.set(clock.now() + timedelta(hours=1))
    return ids


def test_list_is_newest_first_with_outcomes_and_fits_80_columns(
    cli: Any, history: list[str]
) -> None:
    result = cli("events", "list")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), result.stdout
    rows = [line.split() for line in lines if re.match(r"\s*\d+ +\d\d-\d\d ", line)]
    assert [(r[0], r[4]) for r in rows] == [
        ("4", "feedback.logged"),
        ("3", "deal.lost"),
        ("2", "deal.closed"),
        ("1", "deal.closed"),
    ]
    assert "11-20 13:05" in lines[1] and "11-20 10:05" in lines[-2]
    assert "1 letter" in lines[1] and "cancelled 1" in lines[2] and "no letter" in lines[3]
    assert lines[0].split()[:3] == ["id", "received", "(UTC)"]
    assert lines[-1] == "4 event(s), page 1 of 1"


def test_list_filters_and_pages(cli: Any, history: list[str]) -> None:
    def ids(*args: str) -> list[int]:
        result = cli("events", "list", "--json", *args)
        assert result.exit_code == 0, result.stderr
        return [row["id"] for row in json.loads(result.stdout)["events"]]

    assert ids("--type", "deal.closed") == [2, 1]
    assert ids("--contact", "olga@EXAMPLE.org") == [2]
    assert ids("--since", "2026-11-20T12:05:00Z") == [4, 3]
    page = json.loads(cli("events", "list", "--json", "--limit", "3", "--page", "2").stdout)
    assert (page["total"], page["page"], page["pages"]) == (4, 2, 2)
    assert [(r["id"], r["external_id"], r["outcome"]) for r in page["events"]] == [
        (1, "evt_1", "1 letter")
    ]
    text = cli("events", "list", "--limit", "3", "--page", "2").stdout
    assert text.splitlines()[-1] == "4 event(s), page 2 of 2"


def test_list_refuses_an_unknown_type(cli: Any, runtime: Runtime) -> None:
    result = cli("events", "list", "--type", "deal.won")
    assert result.exit_code == 2
    assert result.stderr == f"error: --type 'deal.won' is not one of: {TYPES}\n"


# --- events show ---------------------------------------------------------------------


def test_show_tells_the_event_and_each_decision_with_its_letter(
    cli: Any, runtime: Runtime, history: list[str]
) -> None:
    [first, *_] = all_letters(runtime)
    by_id = cli("events", "show", "evt_1")
    assert by_id.exit_code == 0, by_id.stderr
    text = by_id.stdout
    assert text.startswith("event #1  deal.closed  from generic, id evt_1\n")
    assert "  happened  2026-11-20 10:00 UTC\n  received  2026-11-20 10:05 UTC\n" in text
    assert "  contact   anna.ivanova@example.org (Анна Иванова, ru, Europe/Moscow)" in text
    assert "  deal      d-98765, Годовая подписка, 5000.00 EUR\n" in text
    assert "  owner     Иван Петров, ivan.petrov@seller.example\n" in text
    feedback = cli("events", "show", "evt_4").stdout
    assert "\n  feedback  9, Die Einrichtung ging schnell, aber der Export nach CSV" in feedback
    # Decided "scheduled"; the deal was lost since, so the letter is cancelled now.
    assert (
        f"  deal-closed-thanks: scheduled — letter #{first.id}, now cancelled, due "
        f"{first.due_at:%Y-%m-%d %H:%M} UTC"
    ) in text
    lost = cli("events", "show", "3").stdout
    assert "deal-closed-thanks: cancelled: deal.lost of 2026-11-20T12:00:00+00:00" in lost
    assert f"— letter #{first.id}, now cancelled" in lost


def test_show_json_has_decisions_with_letter_status(
    cli: Any, runtime: Runtime, history: list[str]
) -> None:
    story = json.loads(cli("events", "show", "#2", "--json").stdout)
    assert (story["id"], story["external_id"], story["contact"]) == (
        2,
        "evt_2",
        "olga@example.org",
    )  # stored lower-case
    assert story["deal"]["amount"] == "20"
    assert story["decisions"] == [
        {
            "rule": "deal-closed-thanks",
            "outcome": "no letter",
            "reason": "condition not met: deal.amount is 20, needs gte 100",
            "letter_id": None,
            "letter_status": None,
            "due_at": None,
            "status_reason": None,
        }
    ]
    assert story["letters"] == []


def test_show_says_when_decisions_were_not_recorded(
    cli: Any, runtime: Runtime, history: list[str]
) -> None:
    with runtime.session_factory.begin() as session:  # as an event from before 0005
        session.execute(update(Event).where(Event.id == 4).values(decisions=None))
    [*_, letter] = all_letters(runtime)
    text = cli("events", "show", "4").stdout
    assert "decisions: not recorded" in text
    assert f"  letter #{letter.id} (feedback-thanks): scheduled, due" in text
    listed = json.loads(cli("events", "list", "--json", "--limit", "1").stdout)["events"]
    assert listed[0]["outcome"] == "not recorded"


def test_show_an_unknown_event_fails(cli: Any, runtime: Runtime) -> None:
    result = cli("events", "show", "evt_nope")
    assert result.exit_code == 1
    assert "no event evt_nope" in result.stderr


def test_list_mentions_webhooks_that_are_no_event_yet(
    cli: Any, runtime: Runtime, history: list[str]
) -> None:
    from worker.intake.inbox import accept
    from worker.intake.ingest import mark_failed

    now = runtime.clock.now()
    accept(runtime.session_factory, "generic", "evt_waiting", json.dumps(RU_DEAL).encode(), now)
    parked = accept(runtime.session_factory, "generic", "evt_bad", b'{"type": "x"}', now)
    mark_failed(runtime.session_factory, parked.inbox_id, "not a valid event", runtime.clock)
    result = cli("events", "list")
    assert result.stdout.splitlines()[-1] == "4 event(s), page 1 of 1"
    assert result.stderr == (
        "webhooks not in this list: 1 waiting to be ingested; 1 could not be ingested "
        "(the log says why)\n"
    )
    listed = json.loads(cli("events", "list", "--json").stdout)
    assert listed["not_ingested"] == {"pending": 1, "failed": 1}


@pytest.mark.parametrize(
    ("event_type", "outcomes", "summary"),
    [
        ("deal.closed", ["scheduled"], "1 letter"),
        ("feedback.logged", ["scheduled", "scheduled", "suppressed"], "2 letters +1 suppressed"),
        ("deal.closed", ["suppressed"], "suppressed"),
        ("deal.closed", ["cancelled"], "cancelled"),
        ("deal.closed", ["no letter"], "no letter"),
        ("referral.made", [], "no letter"),
        ("deal.lost", ["cancelled", "cancelled"], "cancelled 2"),
        ("deal.reopened", ["nothing to cancel"], "nothing pending"),
        ("contact.unsubscribed", ["address suppressed", "suppressed"], "unsubscribed, 1 held"),
        ("contact.unsubscribed", ["already suppressed"], "unsubscribed"),
    ],
)
def test_outcome_summaries(event_type: str, outcomes: list[str], summary: str) -> None:
    from worker.admin.event_log import outcome_summary

    decisions = [{"rule": "r", "outcome": o, "reason": None, "letter_id": 1} for o in outcomes]
    assert outcome_summary(event_type, decisions) == summary
    assert outcome_summary(event_type, None) == "not recorded"


def test_now_sends_an_old_sample_as_a_fresh_event(
    send: Any, runtime: Runtime, tmp_path: Path
) -> None:
    """A sample file dated long ago plans nothing (max_event_age); --now restamps it."""
    old = dict(RU_DEAL, timestamp="2026-01-05T10:00:00Z")
    sample = tmp_path / "old.json"
    sample.write_text(json.dumps(old))
    assert send(str(sample), "--id", "evt_old").exit_code == 0
    assert all_letters(runtime) == []  # over max_event_age: no letter

    result = send(str(sample), "--now", "--id", "evt_now")
    assert result.exit_code == 0, result.stderr
    assert "timestamp set to now, 2026-11-20T10:05:00Z (was 2026-01-05T10:00:00Z)" in result.stderr
    fresh = stored_events(runtime)[-1]
    assert fresh.occurred_at == NOW
    [letter] = all_letters(runtime)
    assert letter.rule == "deal-closed-thanks"
