"""What the unsubscribe page and a letter's plain-text footer say, per locale.

The recipient clicked a link in a letter written in their language; the page that answers
must speak it too. Locales are matched like letter folders (`de-AT` → `de`), else English.
"""

# Cyrillic here is Russian text, not Latin look-alikes.
# ruff: noqa: RUF001

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class UnsubscribeTexts:
    lang: str  # the page's <html lang>
    confirm_title: str
    confirm_question: str
    button: str
    done_title: str
    done_body: str
    invalid_title: str
    invalid_body: str
    text_footer: str  # the plain-text part's last line; {url} is the /u/ link


TEXTS: dict[str, UnsubscribeTexts] = {
    "en": UnsubscribeTexts(
        lang="en",
        confirm_title="Unsubscribe",
        confirm_question="Stop receiving thank-you letters at this address?",
        button="Unsubscribe",
        done_title="You are unsubscribed",
        done_body="You will not receive these letters any more.",
        invalid_title="Link not valid",
        invalid_body="This unsubscribe link is not valid.",
        text_footer="Prefer not to receive letters like this? Unsubscribe: {url}",
    ),
    "ru": UnsubscribeTexts(
        lang="ru",
        confirm_title="Отписка от писем",
        confirm_question="Больше не присылать благодарственные письма на этот адрес?",
        button="Отписаться",
        done_title="Вы отписались",
        done_body="Мы больше не будем присылать вам такие письма.",
        invalid_title="Ссылка недействительна",
        invalid_body="Эта ссылка для отписки недействительна.",
        text_footer="Не хотите получать такие письма? Отписаться: {url}",
    ),
    "de": UnsubscribeTexts(
        lang="de",
        confirm_title="Abmelden",
        confirm_question="Möchten Sie an diese Adresse keine Dankesschreiben mehr erhalten?",
        button="Abmelden",
        done_title="Sie sind abgemeldet",
        done_body="Sie erhalten diese E-Mails ab sofort nicht mehr.",
        invalid_title="Link ungültig",
        invalid_body="Dieser Abmeldelink ist nicht gültig.",
        text_footer="Sie möchten solche E-Mails nicht mehr erhalten? Hier abmelden: {url}",
    ),
    "pl": UnsubscribeTexts(
        lang="pl",
        confirm_title="Rezygnacja z wiadomości",
        confirm_question="Czy na pewno nie chcesz już otrzymywać podziękowań na ten adres?",
        button="Wypisz się",
        done_title="Adres został wypisany",
        done_body="Nie będziesz już otrzymywać od nas takich wiadomości.",
        invalid_title="Nieprawidłowy link",
        invalid_body="Ten link do rezygnacji z wiadomości jest nieprawidłowy.",
        text_footer="Nie chcesz otrzymywać takich wiadomości? Wypisz się: {url}",
    ),
}
DEFAULT = TEXTS["en"]


def texts_for(locale: str | None) -> UnsubscribeTexts:
    """The texts for `ru-RU`, `ru_RU` or `ru`; English when the language is not known."""
    if not locale:
        return DEFAULT
    tag = locale.replace("_", "-").lower()
    return TEXTS.get(tag) or TEXTS.get(tag.split("-")[0]) or DEFAULT


def text_footer(locale: str | None, url: str) -> str:
    return texts_for(locale).text_footer.format(url=url)
