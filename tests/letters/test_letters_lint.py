"""The shipped letters as recipients get them: each example event rendered with the letter
the shipped rules pick for it, in every locale, with the brand unset and set."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RULES_FILE, SAMPLES, TEMPLATES
from tests.helpers import write_letter
from worker.events import validate_event
from worker.letters.brand import Brand
from worker.letters.catalogue import Catalogue
from worker.letters.compose import letter_setup, rule_for
from worker.letters.render import Rendered, Renderer, build_context
from worker.letters.template_check import FULL_BRAND
from worker.planning.conditions import event_facts, first_failure
from worker.planning.rules import RulesStore
from worker.settings import Settings

CATALOGUE = Catalogue.scan(TEMPLATES)
RENDERER = Renderer(TEMPLATES)
RULES = RulesStore(RULES_FILE, TEMPLATES).get()
SETTINGS = Settings(mail_from="Nordlicht <thanks@nordlicht.example>")
EVENTS = {p.name: json.loads(p.read_text()) for p in sorted(SAMPLES.glob("*.json"))}
LOCALES = ("en", "de", "pl", "ru")


def render(letter: str, locale: str, event: dict[str, Any], brand: Brand | None = None) -> Rendered:
    parsed = validate_event(event)
    setup = letter_setup(SETTINGS, brand or Brand(), RULES, rule_for(RULES, letter, parsed))
    context = build_context(
        parsed.model_dump(mode="json"),
        locale,
        "Europe/Berlin",
        setup=setup,
        unsubscribe_url="https://thankly.example/u/tok",
    )
    return RENDERER.render(letter, locale, context)


def letter_for(event: dict[str, Any]) -> str:
    parsed = validate_event(event)
    facts = event_facts(parsed, RULES.defaults.feedback_scale)
    rules = RULES.for_event(parsed.type)
    return next(r.letter for r in rules if first_failure(r.when, facts) is None)


def test_every_letter_exists_in_every_shipped_locale() -> None:
    assert CATALOGUE.letters == {
        name: set(LOCALES)
        for name in ("deal_closed", "feedback_logged", "feedback_negative", "referral_made")
    }


def test_a_complaint_gets_the_apology_and_praise_gets_the_thank_you() -> None:
    assert letter_for(EVENTS["feedback_negative.de.json"]) == "feedback_negative"
    assert letter_for(EVENTS["feedback_rating_only.de.json"]) == "feedback_logged"
    assert letter_for(EVENTS["feedback_logged.pl.json"]) == "feedback_logged"


@pytest.mark.parametrize("locale", LOCALES)
def test_the_complaint_letter_names_the_problem_first_and_who_takes_it_over(locale: str) -> None:
    event = EVENTS[f"feedback_negative.{locale}.json"]
    text = render("feedback_negative", locale, event).text
    quote = event["data"]["feedback"]["text"]
    body = text.split("\n\n", 1)[1]
    # The customer's own words come right after the greeting, before any apology.
    assert quote.split(".")[0] in body.split("\n\n")[0] + body.split("\n\n")[1]
    owner = (event["data"].get("owner") or {}).get("name")
    if owner:
        assert owner in text
    # follow_up: 1d in the shipped rules: the letter names the day, on a working day.
    assert any(ch.isdigit() for ch in body.split("\n\n")[2] + body.split("\n\n")[3])


@pytest.mark.parametrize("locale", LOCALES)
def test_a_rating_without_text_never_mentions_comments(locale: str) -> None:
    text = render("feedback_logged", locale, EVENTS[f"feedback_rating_only.{locale}.json"]).text
    words = {"en": "comment", "de": "Kommentar", "pl": "komentarz", "ru": "коммент"}[locale]
    assert words not in text.lower()
    rating = str(EVENTS[f"feedback_rating_only.{locale}.json"]["data"]["feedback"]["rating"])
    assert rating in text


@pytest.mark.parametrize(
    ("locale", "formatted"),
    [("en", "€5,000"), ("de", "5.000\xa0€"), ("ru", "5\xa0000\xa0€"), ("pl", "5\xa0000\xa0€")],
)
def test_whole_amounts_are_written_without_cents(locale: str, formatted: str) -> None:
    text = render("deal_closed", locale, EVENTS["deal_closed.ru.json"]).text
    assert formatted in text and not re.search(r"\d[.,]00(?!\d)", text)


def test_titles_are_quoted_the_way_each_language_quotes() -> None:
    assert "«Годовая подписка»" in render("deal_closed", "ru", EVENTS["deal_closed.ru.json"]).text
    event = copy.deepcopy(EVENTS["deal_closed.ru.json"])
    event["data"]["deal"]["title"] = "Поставка для ООО «Ромашка»"
    text = render("deal_closed", "ru", event).text
    assert "«Поставка для ООО „Ромашка“»" in text and "««" not in text and "»»" not in text


@pytest.mark.parametrize(
    ("locale", "data", "greeting"),
    [
        (
            "de",
            {"first_name": "Katrin", "last_name": "Müller", "salutation": "Frau"},
            "Guten Tag Frau Müller,",
        ),
        ("de", {"first_name": "Katrin", "last_name": "Müller"}, "Guten Tag Katrin Müller,"),
        ("de", {"first_name": "Katrin"}, "Guten Tag,"),
        ("pl", {"first_name": "Anna"}, "Dzień dobry, Pani Anno!"),
        ("pl", {"first_name": "PIOTR"}, "Dzień dobry, Panie Piotrze!"),
        ("pl", {"first_name": "Xavier"}, "Dzień dobry!"),
        ("ru", {"first_name": "Анна"}, "Здравствуйте, Анна!"),
        ("en", {"first_name": "None"}, "Hello,"),
        ("en", {"first_name": "anna@example.org"}, "Hello,"),
        ("en", {"first_name": "ANNA"}, "Dear Anna,"),
    ],
)
def test_each_language_greets_as_its_speakers_do(
    locale: str, data: dict[str, str], greeting: str
) -> None:
    event = copy.deepcopy(EVENTS["deal_closed.ru.json"])
    event["data"]["contact"] = {"email": "x@example.org", **data}
    for letter in ("deal_closed", "referral_made"):
        assert render(letter, locale, event).text.splitlines()[0] == greeting


def test_polish_text_addresses_the_reader_in_the_right_form() -> None:
    event = copy.deepcopy(EVENTS["feedback_rating_only.pl.json"])
    she = render("feedback_logged", "pl", event).text
    event["data"]["contact"]["first_name"] = "Piotr"
    he = render("feedback_logged", "pl", event).text
    event["data"]["contact"]["first_name"] = "Xavier"
    unknown = render("feedback_logged", "pl", event).text
    assert "Pani" in she and "Panu" not in she
    assert ("Pan" in he) and ("Pani " not in he)
    assert "Państw" in unknown


@pytest.mark.parametrize("locale", LOCALES)
def test_without_an_owner_the_brand_signer_signs(locale: str) -> None:
    event = copy.deepcopy(EVENTS["deal_closed.ru.json"])
    del event["data"]["owner"]
    text = render("deal_closed", locale, event, FULL_BRAND).text
    letter = text.split("\n-- \n")[0].rstrip()
    assert letter.splitlines()[-4:] == [
        "Katrin Weber",
        "Customer Success",
        "Nordlicht Software GmbH",
        "+49 40 123456",
    ]
    # German business mail: the company's address and register lines under the delimiter.
    footer = text.split("\n-- \n")[1]
    assert "Hafenstraße 12" in footer and "Amtsgericht Hamburg HRB 123456" in footer


@pytest.mark.parametrize("locale", LOCALES)
def test_promises_appear_only_when_the_business_makes_them(locale: str) -> None:
    event = EVENTS[f"referral_made.{locale}.json"]
    reward = "REWARD-PHRASE"
    plain = render("referral_made", locale, event).text
    brand = Brand(referral_reward={locale: reward})
    assert reward not in plain
    assert reward in render("referral_made", locale, event, brand).text
    onboarding = FULL_BRAND.onboarding.name or ""
    assert onboarding not in render("deal_closed", locale, EVENTS["deal_closed.ru.json"]).text
    assert (
        onboarding in render("deal_closed", locale, EVENTS["deal_closed.ru.json"], FULL_BRAND).text
    )


def test_a_missing_variable_is_an_error_not_an_empty_string(tmp_path: Path) -> None:
    from worker.letters.render import RenderError

    minimal = {
        "type": "deal.closed",
        "timestamp": "2026-11-20T10:00:00Z",
        "data": {"contact": {"email": "sam@example.com"}},
    }
    write_letter(tmp_path, "oops", "Hi {{ contact.frist_name }}")
    with pytest.raises(RenderError, match=r"oops/en/subject.txt:1: UndefinedError"):
        Renderer(tmp_path).render("oops", "en", build_context(minimal, "en", "UTC"))


def test_a_long_feedback_is_quoted_to_a_sentence_end() -> None:
    event = copy.deepcopy(EVENTS["feedback_logged.de.json"])
    event["data"]["feedback"]["text"] = "Der Export fehlt uns noch. " * 40
    out = render("feedback_logged", "de", event)
    assert len(out.text.split()) <= 250
    assert "Der Export fehlt uns noch. Der Export" in out.text
    assert "\u2026" not in out.text  # cut after a sentence, not inside one


def test_the_brand_names_the_business_and_a_short_variant_drops_a_paragraph() -> None:
    event = EVENTS["deal_closed.de.json"]
    full = render("deal_closed", "de", event, FULL_BRAND).text
    assert "für Nordlicht Software GmbH entschieden" in full
    rule = RULES.rule("deal-closed-thanks")
    assert rule is not None
    short_rule = rule.model_copy(update={"variant": "short"})
    parsed = validate_event(event)
    setup = letter_setup(SETTINGS, FULL_BRAND, RULES, short_rule)
    context = build_context(parsed.model_dump(mode="json"), "de", "Europe/Berlin", setup=setup)
    short = RENDERER.render("deal_closed", "de", context).text
    assert "Standardliste" in full and "Standardliste" not in short
    assert len(short.split()) < len(full.split())


def test_custom_crm_fields_reach_templates_as_plain_values(tmp_path: Path) -> None:
    event = copy.deepcopy(EVENTS["deal_closed.en.json"])
    event["data"]["custom"] = {"plan_tier": "<b>Gold</b>", "seats": 25, "empty": "null"}
    write_letter(
        tmp_path,
        "custom",
        "Tier {{ custom.plan_tier }}",
        html="<p>{{ custom.plan_tier }} for {{ custom.seats }}</p>{{ custom.empty is defined }}",
    )
    parsed = validate_event(event)
    context = build_context(parsed.model_dump(mode="json"), "en", "UTC")
    out = Renderer(tmp_path).render("custom", "en", context)
    assert out.subject == "Tier <b>Gold</b>"  # the subject is text
    assert "&lt;b&gt;Gold&lt;/b&gt; for 25" in out.html and "False" in out.html
