"""CRM values made fit for sentences: names, titles, amounts, quotes, subjects."""

from __future__ import annotations

import pytest

from worker.letters.address_forms import gender_of, greeting, polish_forms
from worker.letters.wording import excerpt, format_amount, person_name, quoted, shorten_subject


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("Anna", "Anna"),
        ("ANNA", "Anna"),
        ("anna-maria", "Anna-Maria"),
        ("MÜLLER-LÜDENSCHEIDT", "Müller-Lüdenscheidt"),
        ("McDonald", "McDonald"),
        ("van der Berg", "van der Berg"),
        ("  Jan   Kowalski ", "Jan Kowalski"),
        ("None", None),
        ("null", None),
        ("", None),
        ("-", None),
        ("anna@example.org", None),
        ("123", None),
        (None, None),
    ],
)
def test_names_are_normalised_or_treated_as_missing(raw: str | None, name: str | None) -> None:
    assert person_name(raw) == name


@pytest.mark.parametrize(
    ("title", "locale", "shown"),
    [
        ("Annual plan", "en", "\u201cAnnual plan\u201d"),
        ("Jahresplan", "de", "\u201eJahresplan\u201c"),
        ("Plan roczny", "pl", "\u201ePlan roczny\u201d"),
        ("Годовой план", "ru", "\u00abГодовой план\u00bb"),
        # A company name that already carries «»: inner quotes, never «…«…»…».
        ("Поставка для ООО «Ромашка»", "ru", "\u00abПоставка для ООО \u201eРомашка\u201c\u00bb"),
        ("«Годовой план»", "ru", "\u00abГодовой план\u00bb"),
        ('Setup for "Nord" GmbH', "de", "\u201eSetup for \u201aNord\u2018 GmbH\u201c"),
        ("None", "en", None),
    ],
)
def test_titles_are_quoted_so_no_language_needs_an_article(
    title: str, locale: str, shown: str | None
) -> None:
    assert quoted(title, locale) == shown


@pytest.mark.parametrize(
    ("amount", "currency", "locale", "shown"),
    [
        ("5000.00", "EUR", "en", "€5,000"),
        ("12300", "PLN", "en", "PLN\u00a012,300"),
        ("12300", "PLN", "pl", "12\u00a0300\u00a0zł"),
        ("5000.50", "EUR", "de", "5.000,50\u00a0€"),
        ("5000", "EUR", "de", "5.000\u00a0€"),
        ("90000", "RUB", "ru", "90\u00a0000\u00a0₽"),
        ("5000", None, "en", None),  # never an amount without its currency
        (None, "EUR", "en", None),
    ],
)
def test_amounts_are_written_as_each_locale_writes_them(
    amount: str | None, currency: str | None, locale: str, shown: str | None
) -> None:
    assert format_amount(amount, currency, locale) == shown


def test_feedback_is_quoted_to_a_sentence_end() -> None:
    text = "Fast onboarding. " + "The export is missing and we need it weekly. " * 10
    cut = excerpt(text, limit=100)
    assert cut is not None and len(cut) <= 100 and cut.endswith(".")
    assert cut.startswith("Fast onboarding. The export is missing")
    # One sentence longer than the limit: cut at a word, with an ellipsis.
    long = excerpt("word " * 100, limit=50)
    assert long is not None and long.endswith("\u2026") and len(long) <= 50
    assert excerpt("Short and sweet.") == "Short and sweet."


@pytest.mark.parametrize(
    ("subject", "shown"),
    [
        (
            "Anna, thank you for your order (no. 12345)",
            "Anna, thank you for your order (no. 12345)",
        ),
        (
            "Maximiliane-Charlotte, thank you for your order (no. 1234567890)",
            "Maximiliane-Charlotte, thank you for your order",
        ),
        ("Word " * 20, "Word Word Word Word Word Word Word Word Word Word Word\u2026"),
    ],
)
def test_a_long_subject_loses_its_parenthesis_before_being_cut(subject: str, shown: str) -> None:
    assert shorten_subject(subject.strip(), 60) == shown
    assert len(shorten_subject(subject.strip(), 60)) <= 60


@pytest.mark.parametrize(
    ("lang", "first", "last", "salutation", "line"),
    [
        ("de", "Katrin", "Müller", "Frau", "Guten Tag Frau Müller,"),
        ("de", "Jonas", "Becker", "Herr", "Guten Tag Herr Becker,"),
        ("de", "Katrin", "Müller", None, "Guten Tag Katrin Müller,"),
        ("de", "Katrin", None, "Frau", "Guten Tag,"),
        ("pl", "Katarzyna", None, None, "Dzień dobry, Pani Katarzyno!"),
        ("pl", "Paweł", None, None, "Dzień dobry, Panie Pawle!"),
        ("pl", "Anna", None, "Pan", "Dzień dobry!"),  # table and salutation disagree
        ("pl", None, None, None, "Dzień dobry!"),
        ("ru", "Ольга", None, None, "Здравствуйте, Ольга!"),
        ("en", None, None, None, "Hello,"),
    ],
)
def test_greetings(
    lang: str, first: str | None, last: str | None, salutation: str | None, line: str
) -> None:
    assert greeting(lang, first, last, salutation) == line


def test_polish_courtesy_forms_follow_the_salutation_then_the_name() -> None:
    assert polish_forms("Anna", None)["dat"] == "Pani"
    assert polish_forms("Piotr", None)["dat"] == "Panu"
    assert polish_forms("Xavier", "Pan")["gen"] == "Pana"
    assert polish_forms("Xavier", None)["dat"] == "Państwu"
    assert polish_forms(None, None)["past"] == "li"
    assert gender_of("Mrs.") == "female" and gender_of("Dr.") is None
