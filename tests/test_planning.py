"""Events become letters (or cancel / suppress them), on SQLite and PostgreSQL."""

from __future__ import annotations

import copy
import json
import re
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from tests.conftest import SAMPLES
from tests.helpers import all_letters, ingest_doc
from worker.catalogue import Catalogue
from worker.events import LETTER_EVENT_TYPES, validate_event
from worker.explain import explain
from worker.models import LetterStatus, Suppression
from worker.runtime import Runtime

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
    from worker.intake import ingest

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
    assert (later.status, later.status_reason) == (LetterStatus.SUPPRESSED, "unsubscribed")


def test_frequency_cap_suppresses_the_second_letter_in_a_week(runtime: Runtime) -> None:
    [first] = ingest_doc(runtime, DE_FEEDBACK, "evt_1")
    again = copy.deepcopy(DE_FEEDBACK)
    again["timestamp"] = "2026-11-23T09:00:00Z"
    [second] = ingest_doc(runtime, again, "evt_2")
    assert first.status == LetterStatus.SCHEDULED
    assert second.status == LetterStatus.SUPPRESSED
    assert (
        second.status_reason == f"frequency cap: at most 1 per 7d (letter #{first.id} is within 7d)"
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
    from worker.rules import load_rules

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
    assert due - event.timestamp >= timedelta(hours=24)
    local = due.astimezone(ZoneInfo(result["timezone"]))
    assert local.weekday() < 5 and 9 <= local.hour < 18


def test_a_contact_without_a_time_zone_gets_the_default_one(runtime: Runtime) -> None:
    doc = copy.deepcopy(DE_FEEDBACK)
    del doc["data"]["contact"]["timezone"]
    doc["timestamp"] = "2026-11-17T06:00:00Z"  # Tue 07:00 Berlin (the default) +24h = 07:00
    [letter] = ingest_doc(runtime, doc, "evt_1")
    assert letter.due_at.astimezone(ZoneInfo("Europe/Berlin")).isoformat() == (
        "2026-11-18T09:00:00+01:00"  # moved to the window's opening
    )
