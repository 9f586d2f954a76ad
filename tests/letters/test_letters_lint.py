"""Template lint: every letter in every locale, with every sample and a minimal event."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SAMPLES, TEMPLATES
from tests.helpers import write_letter
from worker.letters.catalogue import Catalogue
from worker.letters.render import Renderer, build_context

CATALOGUE = Catalogue.scan(TEMPLATES)
RENDERER = Renderer(TEMPLATES)
MINIMAL: dict[str, Any] = {
    "type": "deal.closed",
    "timestamp": "2026-11-20T10:00:00Z",
    "data": {"contact": {"email": "sam@example.com"}},
}
EVENTS = {p.name: json.loads(p.read_text()) for p in sorted(SAMPLES.glob("*.json"))}
EVENTS["minimal"] = MINIMAL
CASES = [
    (letter, locale, name)
    for letter in sorted(CATALOGUE.letters)
    for locale in sorted(CATALOGUE.letters[letter])
    for name in EVENTS
]
LEFTOVERS = re.compile(r"\{\{|\}\}|\{%|%\}|\bNone\b|\bUndefined\b")


def render(letter: str, locale: str, event: dict[str, Any], url: str | None = None) -> Any:
    context = build_context(
        event,
        locale,
        "Europe/Berlin",
        next_step_url=url,
        unsubscribe_url="https://thankly.example/u/tok",
    )
    return RENDERER.render(letter, locale, context)


@pytest.mark.parametrize(("letter", "locale", "event"), CASES)
def test_letter_renders_within_the_rules_of_a_good_letter(
    letter: str, locale: str, event: str
) -> None:
    for url in (None, "https://shop.example/book"):
        out = render(letter, locale, EVENTS[event], url)
        words = len(out.text.split())
        assert 120 <= words <= 250, f"{words} words"
        assert 0 < len(out.subject) <= 60 and "\n" not in out.subject
        for part in (out.subject, out.text, out.html):
            assert not LEFTOVERS.search(part), LEFTOVERS.search(part)
        assert "\n\n\n" not in out.text
        assert 'style="max-width: 600px' in out.html  # single column, CSS inlined
        assert "<style" not in out.html
        assert ("https://shop.example/book" in out.html) == (url is not None)
        data = EVENTS[event]["data"]
        first_name = (data.get("contact") or {}).get("first_name")
        if first_name:
            assert first_name in out.text.splitlines()[0]  # greeted by name
        owner = (data.get("owner") or {}).get("name")
        if owner:
            assert out.text.rstrip().endswith(owner)  # signed by the deal owner


def test_every_letter_exists_in_every_shipped_locale() -> None:
    assert CATALOGUE.letters == {
        name: {"en", "ru", "de", "pl"}
        for name in ("deal_closed", "feedback_logged", "referral_made")
    }


@pytest.mark.parametrize(
    ("locale", "formatted"),
    [
        ("en", "€5,000.00"),
        ("de", "5.000,00\xa0€"),
        ("ru", "5\xa0000,00\xa0€"),
        ("pl", "5\xa0000,00\xa0€"),
    ],
)
def test_amounts_are_formatted_for_the_locale(locale: str, formatted: str) -> None:
    out = render("deal_closed", locale, EVENTS["deal_closed.ru.json"])
    assert formatted in out.text


def test_the_specific_thing_is_named() -> None:
    feedback = render("feedback_logged", "de", EVENTS["feedback_logged.de.json"]).text
    assert "„Die Einrichtung ging schnell, aber der Export nach CSV fehlt uns noch.“" in feedback
    referral = render("referral_made", "pl", EVENTS["referral_made.pl.json"]).text
    assert "Agnieszka Kowalska" in referral and "Kowalska Design" in referral
    deal = render("deal_closed", "ru", EVENTS["deal_closed.ru.json"]).text
    assert "«Годовая подписка»" in deal and "98765" in deal


def test_without_a_name_the_greeting_is_neutral() -> None:
    for locale, greeting in (
        ("en", "Hello,"),
        ("de", "Guten Tag,"),
        ("ru", "Здравствуйте!"),
        ("pl", "Dzień dobry!"),
    ):
        out = render("deal_closed", locale, MINIMAL)
        assert out.text.splitlines()[0] == greeting


def test_a_missing_variable_is_an_error_not_an_empty_string(tmp_path: Path) -> None:
    from worker.letters.render import RenderError

    write_letter(tmp_path, "oops", "Hi {{ contact.frist_name }}")
    with pytest.raises(RenderError, match=r"oops/en/subject.txt:1: UndefinedError"):
        Renderer(tmp_path).render("oops", "en", build_context(MINIMAL, "en", "UTC"))


def test_the_long_feedback_is_quoted_briefly() -> None:
    event = copy.deepcopy(EVENTS["feedback_logged.de.json"])
    event["data"]["feedback"]["text"] = "sehr gut " * 200
    out = render("feedback_logged", "de", event)
    assert len(out.text.split()) <= 250


@pytest.mark.parametrize(
    ("locale", "line"),
    [
        ("en", "On November 20, 2026 you wrote:"),
        ("de", "Am 20. November 2026 schrieben Sie:"),
        ("ru", "20 ноября 2026\u202fг. вы написали:"),
        ("pl", "Oto, co otrzymaliśmy 20 listopada 2026:"),
    ],
)
def test_dates_are_formatted_for_the_locale(locale: str, line: str) -> None:
    out = render("feedback_logged", locale, EVENTS["feedback_logged.de.json"])
    assert line in out.text.splitlines()
