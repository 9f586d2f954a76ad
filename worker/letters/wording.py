# ruff: noqa: RUF001, RUF002
"""CRM values made fit to stand inside a sentence, in each letter language.

CRMs send names in capitals, "None" typed into a field, an email address where the name
should be, titles that carry their own quotation marks. Each function here turns one such
value into what a careful writer would put in the letter, or None when it would be wrong
to print it at all.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from babel.core import Locale, UnknownLocaleError
from babel.numbers import format_currency, format_decimal

# What people type into a CRM field that means "nothing".
_PLACEHOLDERS = frozenset({"none", "null", "nil", "undefined", "n/a", "na", "-", "--", "?", "."})
_NAME_PART = re.compile(r"([\w]+)", re.UNICODE)

# Quotation marks per language: (outer open, outer close, inner open, inner close).
QUOTES = {
    "en": ("\u201c", "\u201d", "\u2018", "\u2019"),
    "de": ("\u201e", "\u201c", "\u201a", "\u2018"),
    "pl": ("\u201e", "\u201d", "\u00ab", "\u00bb"),
    "ru": ("\u00ab", "\u00bb", "\u201e", "\u201c"),
}
_ANY_QUOTE = "\"'\u00ab\u00bb\u201c\u201d\u201e\u201a\u2018\u2019"
_SENTENCE_END = re.compile(r"[.!?\u2026](?:[\"'\u00bb\u201c\u201d)]*)(?=\s|$)")


def babel_locale(locale: str) -> Locale:
    try:
        return Locale.parse(locale.replace("-", "_"))
    except (UnknownLocaleError, ValueError):
        return Locale.parse("en")


def language(locale: str) -> str:
    return locale.replace("_", "-").split("-", 1)[0].lower()


def present(value: Any) -> str | None:
    """The value as text, or None for what only looks like a value ("None", "null", "")."""
    if value is None:
        return None
    text = " ".join(str(value).split())
    if not text or text.lower() in _PLACEHOLDERS:
        return None
    return text


# Legal forms a line break must not split ("Sp. z" | "o.o." reads as two things).
_LEGAL_FORMS = ("Sp. z o.o.", "Sp. j.", "Sp. k.", "S.A.", "GmbH & Co. KG", "e. K.", "e. V.")


def keep_together(value: Any) -> str | None:
    """A company name with non-breaking spaces inside its legal form, and between the
    form and the name ("ООО «Север»", "Kowalski Sp. z o.o.")."""
    text = present(value)
    if text is None:
        return None
    for form in _LEGAL_FORMS:
        if form in text:
            text = text.replace(f" {form}", f"\u00a0{form}").replace(
                form, form.replace(" ", "\u00a0")
            )
    return re.sub(r"\b(ООО|АО|ПАО|ЗАО|ИП) (?=[\"«\w])", "\\1\u00a0", text)


def person_name(value: Any) -> str | None:
    """A name as a letter may print it: "ANNA" and "anna" become "Anna", an email address
    or a placeholder is no name; mixed case ("McDonald", "van der Berg") stays as written."""
    text = present(value)
    if text is None or "@" in text or not any(ch.isalpha() for ch in text):
        return None
    if text.isupper() or text.islower():
        text = _NAME_PART.sub(lambda m: m.group(1)[:1].upper() + m.group(1)[1:].lower(), text)
    return text


def quoted(value: Any, locale: str) -> str | None:
    """A title in the language's quotation marks, so no language needs an article before
    it. A title that is already quoted stays as it is; quotation marks inside it become
    the inner pair (never «…«…»…»)."""
    text = present(value)
    if text is None:
        return None
    outer_open, outer_close, inner_open, inner_close = QUOTES.get(language(locale), QUOTES["en"])
    if len(text) > 1 and text[0] in _ANY_QUOTE and text[-1] in _ANY_QUOTE:
        return text
    if any(ch in _ANY_QUOTE for ch in text if ch != "'"):
        text = re.sub(r"[\"\u00ab\u201c\u201e\u201a\u2018](?=\w)", inner_open, text)
        text = re.sub(r"(?<=[\w.!?])[\"\u00bb\u201d\u201c\u2019\u2018]", inner_close, text)
    return f"{outer_open}{text}{outer_close}"


def format_amount(amount: Any, currency: str | None, locale: str) -> str | None:
    """`€5,000`, `PLN 12,300`, `5.000,50 €`: no ",00" when whole, and no amount without
    its currency (a bare number in a thank-you could be anything)."""
    if amount in (None, "") or not currency:
        return None
    try:
        value = Decimal(str(amount))
    except InvalidOperation:
        return None
    where = babel_locale(locale)
    code = currency.upper()
    if value == value.to_integral_value():
        pattern = where.currency_formats["standard"].pattern.split(";")[0]
        text = format_currency(
            value,
            code,
            locale=where,
            format=re.sub(r"0[.,]0+", "0", pattern),
            currency_digits=False,
        )
    else:
        text = format_currency(value, code, locale=where)
    # A code written against the digits ("PLN12,300") gets the space English puts there.
    text = re.sub(r"([A-Za-z]{2,})(\d)", "\\1\u00a0\\2", str(text))
    return re.sub(r"(\d)([A-Za-z]{2,})", "\\1\u00a0\\2", text)


def format_number(value: Any, locale: str) -> str | None:
    try:
        return str(format_decimal(Decimal(str(value)), locale=babel_locale(locale)))
    except (InvalidOperation, ValueError):
        return None


def excerpt(value: Any, limit: int = 240) -> str | None:
    """Feedback to quote: whole sentences up to `limit` characters. A first sentence that
    is longer is cut at a word and marked with an ellipsis; never mid-word."""
    text = present(value)
    if text is None:
        return None
    if len(text) <= limit:
        return text
    cut = None
    for end in _SENTENCE_END.finditer(text):
        if end.end() > limit:
            break
        cut = end.end()
    if cut:
        return text[:cut].strip()
    words = text[: limit - 1].rsplit(" ", 1)[0]
    return words.rstrip(",;:-\u2013 ") + "\u2026"


def shorten_subject(subject: str, limit: int) -> str:
    """At most `limit` characters, cut at a word and never inside a parenthesis: an
    unfinished "(Order" reads as a mistake, so the whole parenthesis goes first."""
    if len(subject) <= limit:
        return subject
    without = re.sub(r"\s*\([^()]*\)", "", subject).strip()
    if len(without) <= limit:
        return without
    cut = without[: limit - 1].rsplit(" ", 1)[0]
    open_at = cut.rfind("(")
    if open_at > cut.rfind(")"):
        cut = cut[:open_at]
    return cut.rstrip(",;:-\u2013 (") + "\u2026"
