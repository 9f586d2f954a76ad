"""Per-rule options ops use in rules.yaml: routing feedback by its rating, `cap: exempt`,
bounds per currency, `next_step`, `follow_up` and `custom.*` conditions."""

from __future__ import annotations

import copy
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import NOW, RULES_FILE, SAMPLES, TEMPLATES
from tests.helpers import ingest_doc
from worker.events import validate_event
from worker.letters.catalogue import Catalogue
from worker.models import LetterStatus
from worker.planning.plan import plan
from worker.planning.rules import RulesError, load_rules, parse_rules
from worker.runtime import Runtime

CATALOGUE = Catalogue.scan(TEMPLATES)
SHIPPED = load_rules(RULES_FILE, CATALOGUE)


def event(name: str, **changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = copy.deepcopy(json.loads((SAMPLES / name).read_text()))
    doc["timestamp"] = (NOW - timedelta(hours=1)).isoformat()
    for path, value in changes.items():
        section, key = path.split("__")
        doc["data"].setdefault(section, {})[key] = value
    return doc


def letters_planned(doc: dict[str, Any], rules: Any = SHIPPED) -> list[str]:
    return [p.letter for p in plan(validate_event(doc), rules, CATALOGUE, NOW) if p.matched]


@pytest.mark.parametrize(
    ("rating", "text", "letter"),
    [
        (2, "It broke twice.", "feedback_negative"),
        (6, None, "feedback_negative"),
        (7, None, "feedback_logged"),
        (10, "Great.", "feedback_logged"),
        (None, "No rating, just words.", "feedback_logged"),
    ],
)
def test_the_shipped_rules_route_feedback_by_its_rating(
    rating: int | None, text: str | None, letter: str
) -> None:
    doc = event("feedback_logged.en.json", feedback__rating=rating, feedback__text=text)
    assert letters_planned(doc) == [letter]


def test_a_one_to_five_scale_is_read_with_its_own_threshold() -> None:
    text = RULES_FILE.read_text().replace("{max: 10, negative: 6}", "{max: 5, negative: 2}")
    rules = parse_rules(text, Path("rules.yaml"), CATALOGUE)
    assert letters_planned(event("feedback_logged.en.json", feedback__rating=3), rules) == [
        "feedback_logged"
    ]
    assert letters_planned(event("feedback_logged.en.json", feedback__rating=2), rules) == [
        "feedback_negative"
    ]


@pytest.mark.parametrize(
    ("amount", "currency", "planned"),
    [("150", "EUR", True), ("150", "PLN", False), ("450", "PLN", True), ("500", "JPY", False)],
)
def test_the_deal_threshold_is_read_in_the_deal_s_currency(
    amount: str, currency: str, planned: bool
) -> None:
    doc = event("deal_closed.en.json", deal__amount=amount, deal__currency=currency)
    assert letters_planned(doc) == (["deal_closed"] if planned else [])
    [result] = plan(validate_event(doc), SHIPPED, CATALOGUE, NOW)
    if currency == "JPY":
        assert result.reason == (
            "condition not met: deal.currency is JPY, needs one of "
            "CHF, EUR, GBP, PLN, RUB, USD for gte"
        )


def test_a_complaint_is_answered_the_same_day_whatever_went_out_that_week(
    runtime: Runtime,
) -> None:
    deal = event("deal_closed.en.json")
    [thanks] = ingest_doc(runtime, deal, "evt_deal")
    assert thanks.status == LetterStatus.SCHEDULED
    email = deal["data"]["contact"]["email"]
    complaint = event(
        "feedback_negative.en.json", contact__email=email, contact__timezone="Europe/Berlin"
    )
    letters = ingest_doc(runtime, complaint, "evt_complaint")
    [answer] = [x for x in letters if x.rule == "feedback-complaint"]
    assert answer.status == LetterStatus.SCHEDULED  # not held back by the cap
    assert answer.due_at - complaint_time(complaint) < timedelta(hours=1)  # Friday 11:05 Berlin
    # …and it does not count: praise a day later still gets its thank-you.
    praise = event("feedback_logged.en.json", contact__email=email, feedback__rating=9)
    praise["timestamp"] = (NOW + timedelta(days=1)).isoformat()
    [later] = [x for x in ingest_doc(runtime, praise, "evt_praise") if x.rule == "feedback-thanks"]
    assert later.status == LetterStatus.SUPPRESSED  # the deal thank-you is within 7 days
    assert f"letter #{thanks.id}" in (later.status_reason or "")


def complaint_time(doc: dict[str, Any]) -> Any:
    return validate_event(doc).timestamp


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("cap: none", "cap: Input should be 'exempt'"),
        ("next_step: {url: 'javascript:alert(1)', label: Go}", "must be an http(s) or mailto"),
        ("next_step: {url: https://x.example, label: {english: Go}}", "'english' is not a locale"),
        ("when: {feedback.rating: {gte: {EUR: 5}}}", "only applies to deal.amount"),
        ("when: {deal.amount: {gte: {euro: 5}}}", "'euro' is not a currency code"),
        ("follow_up: soon", "'soon' is not a duration"),
    ],
)
def test_rule_options_that_cannot_work_are_refused(rule: str, message: str) -> None:
    text = (
        "rules:\n"
        "  - name: r\n    on: feedback.logged\n    letter: feedback_logged\n    delay: 0s\n"
        f"    {rule}\n"
    )
    with pytest.raises(RulesError) as info:
        parse_rules(text, Path("rules.yaml"), CATALOGUE)
    assert message in str(info.value)


def test_custom_crm_fields_can_be_tested_and_next_steps_picked_per_locale() -> None:
    text = """\
rules:
  - name: vip
    on: deal.closed
    letter: deal_closed
    delay: 24h
    when: {custom.tier: {eq: gold}}
    next_step:
      url: {de: "https://shop.example/de/termin", "*": "https://shop.example/book"}
      label: {de: Termin vereinbaren, en: Book your review}
"""
    rules = parse_rules(text, Path("rules.yaml"), CATALOGUE)
    gold = event("deal_closed.en.json")
    gold["data"]["custom"] = {"tier": "gold"}
    assert letters_planned(gold, rules) == ["deal_closed"]
    gold["data"]["custom"] = {"tier": "silver"}
    assert letters_planned(gold, rules) == []
    step = rules.rules[0].next_step
    assert step is not None
    assert step.pick("de-AT") == ("https://shop.example/de/termin", "Termin vereinbaren")
    assert step.pick("pl") == ("https://shop.example/book", None)
