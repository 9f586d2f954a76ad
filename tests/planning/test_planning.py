"""Events become letters (or cancel / suppress them), on SQLite and PostgreSQL."""

from __future__ import annotations

import copy
import json
import logging
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, update

from tests.conftest import SAMPLES, make_settings
from tests.helpers import all_letters, in_monday_opening, ingest_doc
from worker.clock import FixedClock
from worker.events import LETTER_EVENT_TYPES, validate_event
from worker.letters.catalogue import Catalogue
from worker.models import Letter, LetterStatus, Suppression
from worker.planning.explain import explain
from worker.queue import RecordingDispatcher
from worker.runtime import Runtime, build_runtime

RU_DEAL: dict[str, Any] = json.loads((SAMPLES / "deal_closed.ru.json").read_text())
DE_FEEDBACK: dict[str, Any] = json.loads((SAMPLES / "feedback_logged.de.json").read_text())


def deal(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(RU_DEAL)
    for path, value in changes.items():
        target = doc
        *parents, last = path.split("__")
        for part in parents:
            target = target.setdefault(part, {})
        target[last] = value
    return doc


def cancel(event_type: str, at: str, deal_id: str | None = "d-98765") -> dict[str, Any]:
    data: dict[str, Any] = {"contact": {"email": "anna.ivanova@example.org"}}
    if deal_id:
        data["deal"] = {"id": deal_id}
    return {"type": event_type, "timestamp": at, "data": data}


def test_deal_closed_schedules_one_letter_as_explain_predicts(runtime: Runtime) -> None:
    [letter] = ingest_doc(runtime, RU_DEAL, "evt_1")
    predicted = explain(validate_event(RU_DEAL), runtime.rules.get(), runtime.rules.catalogue)
    assert letter.status == LetterStatus.SCHEDULED
    assert (letter.rule, letter.letter, letter.locale) == (
        "deal-closed-thanks",
        "deal_closed",
        "ru",
    )
    assert letter.due_at.isoformat().replace("+00:00", "Z") == predicted["due_at"]
    assert letter.contact_email == "anna.ivanova@example.org"
    assert letter.deal_id == "d-98765"
    assert re.fullmatch(r"<[0-9a-f]{32}@shop\.example>", letter.message_id)


def test_ingesting_twice_plans_once(runtime: Runtime) -> None:
    ingest_doc(runtime, RU_DEAL, "evt_1")
    from worker.intake.ingest import ingest

    assert ingest(runtime.session_factory, 1, runtime.clock, runtime.planner).outcome == "already"
    assert len(all_letters(runtime)) == 1


@pytest.mark.parametrize(
    ("wanted", "chosen"),
    [
        ("ru", "ru"),
        ("ru-RU", "ru"),
        ("ru_RU", "ru"),
        ("DE", "de"),
        ("pl-PL", "pl"),
        ("fr", "en"),
        ("pt-BR", "en"),
        (None, "en"),
    ],
)
def test_locale_falls_back_to_language_then_default(
    runtime: Runtime, wanted: str | None, chosen: str
) -> None:
    [letter] = ingest_doc(runtime, deal(data__contact__locale=wanted), "evt_1")
    assert letter.locale == chosen


def test_a_condition_that_fails_plans_nothing(runtime: Runtime) -> None:
    assert ingest_doc(runtime, deal(data__deal__amount="99.99"), "evt_1") == []
    minimal = json.loads((SAMPLES / "deal_closed.minimal.en.json").read_text())
    assert ingest_doc(runtime, minimal, "evt_2") == []


def test_cancel_event_after_the_deal_cancels_its_letter(runtime: Runtime) -> None:
    ingest_doc(runtime, RU_DEAL, "evt_1")
    ingest_doc(runtime, cancel("deal.lost", "2026-11-20T12:00:00Z"), "evt_2")
    [letter] = all_letters(runtime)
    assert letter.status == LetterStatus.CANCELLED
    assert letter.status_reason and letter.status_reason.startswith("deal.lost of 2026-11-20T12:00")


def test_a_cancel_that_arrives_before_its_deal_still_wins(runtime: Runtime) -> None:
    ingest_doc(runtime, cancel("deal.reopened", "2026-11-20T12:00:00Z"), "evt_2")
    [letter] = ingest_doc(runtime, RU_DEAL, "evt_1")  # closed at 10:00, delivered late
    assert letter.status == LetterStatus.CANCELLED
    assert "received before this one" in (letter.status_reason or "")


def test_a_deal_closed_again_after_a_reopen_keeps_its_letter(runtime: Runtime) -> None:
    ingest_doc(runtime, cancel("deal.reopened", "2026-11-19T12:00:00Z"), "evt_0")
    [letter] = ingest_doc(runtime, RU_DEAL, "evt_1")  # closed on the 20th, after the reopen
    assert letter.status == LetterStatus.SCHEDULED
    ingest_doc(runtime, cancel("deal.reopened", "2026-11-19T13:00:00Z"), "evt_late")
    assert all_letters(runtime)[0].status == LetterStatus.SCHEDULED  # an older reopen: no effect


def test_another_deal_is_not_cancelled(runtime: Runtime) -> None:
    ingest_doc(runtime, RU_DEAL, "evt_1")
    ingest_doc(runtime, cancel("deal.lost", "2026-11-20T12:00:00Z", deal_id="d-other"), "evt_2")
    assert all_letters(runtime)[0].status == LetterStatus.SCHEDULED


def test_without_a_deal_id_the_contact_decides(runtime: Runtime) -> None:
    ingest_doc(runtime, deal(data__deal__id=None), "evt_1")
    ingest_doc(runtime, cancel("deal.lost", "2026-11-20T12:00:00Z", deal_id=None), "evt_2")
    assert all_letters(runtime)[0].status == LetterStatus.CANCELLED


def test_rules_without_cancel_on_ignore_cancel_events(runtime: Runtime) -> None:
    assert len(ingest_doc(runtime, DE_FEEDBACK, "evt_1")) == 1
    lost = {
        "type": "deal.lost",
        "timestamp": "2026-11-21T10:00:00Z",
        "data": {"contact": {"email": "k.mueller@example.de"}},
    }
    ingest_doc(runtime, lost, "evt_2")
    assert all_letters(runtime)[0].status == LetterStatus.SCHEDULED


def unsubscribe(email: str, at: str = "2026-11-20T11:00:00Z") -> dict[str, Any]:
    return {"type": "contact.unsubscribed", "timestamp": at, "data": {"contact": {"email": email}}}


def test_unsubscribe_suppresses_pending_and_future_letters(runtime: Runtime) -> None:
    ingest_doc(runtime, RU_DEAL, "evt_1")
    ingest_doc(runtime, unsubscribe("Anna.Ivanova@EXAMPLE.org"), "evt_2")
    ingest_doc(runtime, unsubscribe("anna.ivanova@example.org"), "evt_3")  # again: no error
    [letter] = all_letters(runtime)
    assert (letter.status, letter.status_reason) == (LetterStatus.SUPPRESSED, "unsubscribed")
    with runtime.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Suppression)) == 1
    [later] = ingest_doc(runtime, deal(data__deal__id="d-2"), "evt_4")
    assert (later.status, later.status_reason) == (
        LetterStatus.SUPPRESSED,
        "unsubscribed on 2026-11-20",  # the day the suppression was stored (the clock's)
    )


def test_frequency_cap_suppresses_the_second_letter_in_a_week(runtime: Runtime) -> None:
    [first] = ingest_doc(runtime, DE_FEEDBACK, "evt_1")
    again = copy.deepcopy(DE_FEEDBACK)
    again["timestamp"] = "2026-11-23T09:00:00Z"
    [second] = ingest_doc(runtime, again, "evt_2")
    assert first.status == LetterStatus.SCHEDULED
    assert second.status == LetterStatus.SUPPRESSED
    assert second.status_reason == (
        f"frequency cap: at most 1 per 7d (letter #{first.id}, due "
        f"{first.due_at:%Y-%m-%d %H:%M} UTC, is within 7d)"
    )
    later = copy.deepcopy(DE_FEEDBACK)
    later["timestamp"] = "2026-12-02T09:00:00Z"
    [third] = ingest_doc(runtime, later, "evt_3")
    assert third.status == LetterStatus.SCHEDULED  # outside the week


def test_cancelled_letters_do_not_count_against_the_cap(runtime: Runtime) -> None:
    ingest_doc(runtime, RU_DEAL, "evt_1")
    ingest_doc(runtime, cancel("deal.lost", "2026-11-20T12:00:00Z"), "evt_2")
    [letter] = ingest_doc(
        runtime, deal(data__deal__id="d-2", timestamp="2026-11-21T10:00:00Z"), "evt_3"
    )
    assert letter.status == LetterStatus.SCHEDULED


@pytest.mark.parametrize("path", sorted(SAMPLES.glob("*.json")), ids=lambda p: p.name)
def test_every_sample_is_explained_sensibly(path: Any) -> None:
    from tests.conftest import RULES_FILE, TEMPLATES
    from worker.planning.rules import load_rules

    catalogue = Catalogue.scan(TEMPLATES)
    event = validate_event(json.loads(path.read_text()))
    result = explain(event, load_rules(RULES_FILE, catalogue), catalogue)
    assert {"rule", "letter", "locale", "due_at", "reason"} <= set(result)
    if "minimal" in path.name:
        assert result["letter"] is None
        assert result["reason"] == "deal-closed-thanks: condition not met: deal.amount is missing"
        return
    if event.type not in LETTER_EVENT_TYPES:
        # Cancelling and suppressing events plan nothing, and say what they do instead.
        assert result["letter"] is None and result["due_at"] is None
        assert result["reason"].startswith(f"{event.type} sends no letter; it ")
        return
    contact = event.data.contact
    assert contact is not None and contact.locale
    # Every shipped sample's language has letters; a region (en-US) falls back to it.
    assert result["locale"] == contact.locale.split("-")[0]
    due = datetime.fromisoformat(result["due_at"].replace("Z", "+00:00"))
    assert result["due_at"].endswith("Z")
    if result["rule"] == "feedback-complaint":
        # A complaint is answered the same day, in working hours (16:10 in London: today).
        assert result["letter"] == "feedback_negative"
        assert timedelta(0) <= due - event.timestamp < timedelta(hours=18)
    else:
        assert due - event.timestamp >= timedelta(hours=24)
    local = due.astimezone(ZoneInfo(result["timezone"]))
    assert local.weekday() < 5 and 9 <= local.hour < 18


def test_a_contact_without_a_time_zone_gets_the_default_one(runtime: Runtime) -> None:
    doc = copy.deepcopy(DE_FEEDBACK)
    del doc["data"]["contact"]["timezone"]
    doc["timestamp"] = "2026-11-17T06:00:00Z"  # Tue 07:00 Berlin (the default) +24h = 07:00
    [letter] = ingest_doc(runtime, doc, "evt_1")
    # Moved to the window's opening in Berlin, spread over the two hours after it.
    local = letter.due_at.astimezone(ZoneInfo("Europe/Berlin"))
    assert local.date().isoformat() == "2026-11-18" and local.utcoffset() == timedelta(hours=1)
    assert (9, 0) <= (local.hour, local.minute) <= (11, 0)


# --- what each rule decided, and the log saying why no letter ---------------------------


def decisions_of(runtime: Runtime, external_id: str) -> list[dict[str, Any]] | None:
    from worker.models import Event

    with runtime.session_factory() as session:
        event = session.scalars(select(Event).where(Event.external_id == external_id)).one()
        return event.decisions


@pytest.mark.parametrize(
    ("amount", "why"),
    [
        (None, "condition not met: deal.amount is missing"),
        ("50", "condition not met: deal.amount is 50, needs gte 100"),
    ],
)
def test_a_deal_below_the_condition_logs_and_records_why_there_is_no_letter(
    runtime: Runtime, caplog: pytest.LogCaptureFixture, amount: str | None, why: str
) -> None:
    doc = deal(data__deal__amount=amount)
    if amount is None:
        del doc["data"]["deal"]["amount"]
    with caplog.at_level(logging.INFO, logger="worker.planning.planner"):
        assert ingest_doc(runtime, doc, "evt_small") == []
    assert decisions_of(runtime, "evt_small") == [
        {"rule": "deal-closed-thanks", "outcome": "no letter", "reason": why, "letter_id": None}
    ]
    [line] = [r for r in caplog.records if r.getMessage().startswith("no letter:")]
    assert line.levelno == logging.INFO
    assert line.getMessage() == (
        f"no letter: deal-closed-thanks: {why} (event evt_small to …@example.org)"
    )
    assert "anna.ivanova@example.org" not in caplog.text


def test_a_scheduled_letter_is_recorded_with_its_id(runtime: Runtime) -> None:
    [letter] = ingest_doc(runtime, RU_DEAL, "evt_1")
    assert decisions_of(runtime, "evt_1") == [
        {
            "rule": "deal-closed-thanks",
            "outcome": "scheduled",
            "reason": None,
            "letter_id": letter.id,
        }
    ]


def test_a_letter_suppressed_at_planning_names_the_reason(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    ingest_doc(runtime, unsubscribe("anna.ivanova@example.org"), "evt_unsub")
    with caplog.at_level(logging.INFO, logger="worker.planning.planner"):
        [letter] = ingest_doc(runtime, RU_DEAL, "evt_deal")
    assert decisions_of(runtime, "evt_deal") == [
        {
            "rule": "deal-closed-thanks",
            "outcome": "suppressed",
            "reason": "unsubscribed on 2026-11-20",
            "letter_id": letter.id,
        }
    ]
    assert (
        f"no letter: deal-closed-thanks: suppressed: unsubscribed on 2026-11-20 "
        f"(letter #{letter.id}, event evt_deal to …@example.org)"
    ) in caplog.messages
    assert "anna.ivanova@example.org" not in caplog.text


def test_the_frequency_cap_names_the_letter_it_protects(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    [first] = ingest_doc(runtime, DE_FEEDBACK, "evt_1")
    again = copy.deepcopy(DE_FEEDBACK)
    again["timestamp"] = "2026-11-21T09:00:00Z"
    with caplog.at_level(logging.INFO, logger="worker.planning.planner"):
        [second] = ingest_doc(runtime, again, "evt_2")
    [decided] = [d for d in decisions_of(runtime, "evt_2") or [] if d["rule"] == "feedback-thanks"]
    assert decided["outcome"] == "suppressed" and decided["letter_id"] == second.id
    assert f"(letter #{first.id}, due {first.due_at:%Y-%m-%d %H:%M} UTC" in decided["reason"]
    [line] = [m for m in caplog.messages if m.startswith("no letter: feedback-thanks")]
    assert line.startswith("no letter: feedback-thanks: suppressed: frequency cap: at most 1")


def test_cancel_events_record_each_cancelled_letter_or_that_nothing_was_pending(
    runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    [letter] = ingest_doc(runtime, RU_DEAL, "evt_1")
    ingest_doc(runtime, cancel("deal.lost", "2026-11-20T12:00:00Z"), "evt_lost")
    [decided] = decisions_of(runtime, "evt_lost") or []
    assert (decided["rule"], decided["outcome"], decided["letter_id"]) == (
        "deal-closed-thanks",
        "cancelled",
        letter.id,
    )
    with caplog.at_level(logging.INFO, logger="worker.planning.planner"):
        ingest_doc(runtime, cancel("deal.reopened", "2026-11-20T13:00:00Z"), "evt_again")
    assert decisions_of(runtime, "evt_again") == [
        {
            "rule": "deal-closed-thanks",
            "outcome": "nothing to cancel",
            "reason": "no pending letter for deal d-98765",
            "letter_id": None,
        }
    ]
    assert (
        "deal.reopened cancels nothing: deal-closed-thanks: no pending letter for deal d-98765 "
        "(event evt_again)"
    ) in caplog.messages


def test_an_unsubscribe_records_the_address_and_each_letter_it_suppressed(
    runtime: Runtime,
) -> None:
    [letter] = ingest_doc(runtime, RU_DEAL, "evt_1")
    ingest_doc(runtime, unsubscribe("anna.ivanova@example.org"), "evt_2")
    ingest_doc(runtime, unsubscribe("anna.ivanova@example.org"), "evt_3")
    assert decisions_of(runtime, "evt_2") == [
        {
            "rule": None,
            "outcome": "address suppressed",
            "reason": "unsubscribed",
            "letter_id": None,
        },
        {
            "rule": "deal-closed-thanks",
            "outcome": "suppressed",
            "reason": "unsubscribed",
            "letter_id": letter.id,
        },
    ]
    assert decisions_of(runtime, "evt_3") == [
        {
            "rule": None,
            "outcome": "already suppressed",
            "reason": "unsubscribed on 2026-11-20",
            "letter_id": None,
        }
    ]


def test_an_event_no_rule_listens_to_says_so(
    tmp_path: Path,
    db_url: str,
    clock: FixedClock,
    dispatcher: RecordingDispatcher,
    caplog: pytest.LogCaptureFixture,
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "defaults: {timezone: Europe/Berlin, locale: en}\n"
        "rules:\n  - {name: feedback-thanks, on: feedback.logged, letter: feedback_logged, "
        "delay: 24h}\n"
    )
    settings = make_settings(tmp_path, db_url, rules_file=rules)
    rt = build_runtime(settings, clock=clock, dispatcher=dispatcher)
    try:
        with caplog.at_level(logging.INFO, logger="worker.planning.planner"):
            assert ingest_doc(rt, RU_DEAL, "evt_deal") == []
            ingest_doc(rt, cancel("deal.lost", "2026-11-20T12:00:00Z"), "evt_lost")
        assert decisions_of(rt, "evt_deal") == [] and decisions_of(rt, "evt_lost") == []
    finally:
        rt.engine.dispose()
    assert (
        "no letter: no rule listens to deal.closed (event evt_deal to …@example.org)"
        in caplog.messages
    )
    assert "no letter: no rule listens to deal.lost (event evt_lost)" in caplog.messages


def test_a_letter_suppressed_at_send_time_logs_the_reason_not_the_address(
    runtime: Runtime, clock: FixedClock, caplog: pytest.LogCaptureFixture
) -> None:
    from tests.helpers import run_worker
    from worker.suppressions import add

    [letter] = ingest_doc(runtime, RU_DEAL, "evt_1")
    clock.set(letter.due_at - timedelta(minutes=1))
    add(
        runtime.session_factory,
        "anna.ivanova@example.org",
        "asked by phone",
        clock.now(),
        actor="ops",
    )
    # add() suppresses pending letters at once; re-open this one to reach the send-time check.
    with runtime.session_factory.begin() as session:
        session.execute(
            update(Letter).where(Letter.id == letter.id).values(status=LetterStatus.SCHEDULED)
        )
    clock.set(letter.due_at)
    with caplog.at_level(logging.INFO, logger="worker.delivery.send"):
        run_worker(runtime, clock, rounds=1)
    [stored] = all_letters(runtime)
    assert stored.status == LetterStatus.SUPPRESSED
    day = (letter.due_at - timedelta(minutes=1)).date().isoformat()
    assert (
        f"letter #{letter.id} not sent: suppressed: suppressed by hand on {day}: asked by phone "
        "(…@example.org)"
    ) in caplog.messages
    assert "anna.ivanova@example.org" not in caplog.text


def test_a_friday_batch_is_spread_over_mondays_opening_not_sent_in_one_minute(
    runtime: Runtime,
) -> None:
    """The shipped rules spread letters that land at the window's opening (`spread: 2h`)."""
    dues = []
    for n in range(30):
        doc = copy.deepcopy(DE_FEEDBACK)
        doc["data"]["contact"]["email"] = f"kunde{n}@example.de"
        doc["timestamp"] = "2026-11-20T15:30:00Z"  # Friday afternoon + 24h: Saturday
        [letter] = ingest_doc(runtime, doc, f"evt_batch_{n}")
        dues.append(letter.due_at)
    assert all(in_monday_opening(due) for due in dues)
    assert len(set(dues)) >= 25  # not one shared minute
