"""What a template sees: the event's data made fit for sentences, who "we" are, and the
letter's one next step. Documented for ops in templates/README.md.

Every section is present with every key (None when missing), so `{% if deal.title %}`
tests for a value; CRM values are cleaned here once (wording.py) so no template has to
guard against "None", "ANNA" or an email address where a name belongs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parseaddr
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from babel.dates import format_date

from worker.letters import wording
from worker.letters.address_forms import greeting, polish_forms
from worker.letters.brand import Brand
from worker.planning.rules_model import CONDITION_PATHS, FeedbackScale, Rule

# A button always says something, in the letter's language, even when ops set no label.
REPLY_LABELS = {
    "en": "Reply to this letter",
    "de": "Auf diese E-Mail antworten",
    "pl": "Odpowiedz na tę wiadomość",
    "ru": "Ответить на письмо",
}
# …and for a booking page whose label ops left out.
BOOKING_LABELS = {
    "en": "Book a time",
    "de": "Termin wählen",
    "pl": "Wybierz termin",
    "ru": "Выбрать время",
}
# A weekday and a date, written out ("Tuesday, November 24", "Dienstag, 24. November").
DAY_PATTERNS = {"en": "EEEE, MMMM d", "de": "EEEE, d. MMMM"}
_PEOPLE = {
    ("contact", "first_name"),
    ("contact", "last_name"),
    ("owner", "name"),
    ("referral", "referred_name"),
}


@dataclass(frozen=True)
class LetterSetup:
    """Everything besides the event that shapes a letter's words."""

    brand: Brand = field(default_factory=Brand)
    rule: Rule | None = None
    scale: FeedbackScale = field(default_factory=FeedbackScale)
    mail_from: str = ""
    next_step_url: str | None = None  # THANKLY_NEXT_STEP_URL: the default next step
    send_days: tuple[int, ...] = (0, 1, 2, 3, 4)  # weekdays a follow-up may fall on


def safe_url(url: str | None) -> str | None:
    """Only absolute http(s) URLs ever go into a letter's links."""
    if url and re.match(r"^https?://[^\s<>\"']+$", url, re.IGNORECASE):
        return url
    return None


def _sections(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    sections: dict[str, dict[str, Any]] = {}
    for section, keys in CONDITION_PATHS.items():
        given = data.get(section) or {}
        values = {}
        for key in keys:
            clean = wording.person_name if (section, key) in _PEOPLE else wording.present
            raw = given.get(key)
            values[key] = raw if isinstance(raw, int | float) else clean(raw)
        sections[section] = values
    return sections


def reply_address(owner_email: str | None, brand: Brand, mail_from: str) -> str | None:
    """Where a reply reaches a person: the owner, else the configured reply address,
    else the signer, else the sender (never the placeholder localhost address)."""
    sender = parseaddr(mail_from)[1]
    for address in (owner_email, brand.reply_to, brand.signer.email, sender):
        if address and not address.endswith("@localhost"):
            return address
    return None


def _signer(owner: dict[str, Any], brand: Brand, mail_from: str) -> dict[str, Any]:
    """The owner signs when known; otherwise the brand's signer; a person, not "the team"."""
    if owner["name"]:
        return {"name": owner["name"], "role": None, "phone": None, "email": owner["email"]}
    person = brand.signer
    name = person.name or brand.sender_name or parseaddr(mail_from)[0] or None
    return {
        "name": name,
        "role": person.role if person.name else None,
        "phone": person.phone,
        "email": person.email,
    }


def _next_step(setup: LetterSetup, locale: str, reply_to: str | None) -> dict[str, Any]:
    """One clickable next step: the rule's, else THANKLY_NEXT_STEP_URL, else a mailto: to
    the person who replies. `booking` is False for the mailto fallback."""
    url = label = None
    if setup.rule is not None and setup.rule.next_step is not None:
        url, label = setup.rule.next_step.pick(locale)
    if url is None and safe_url(setup.next_step_url):
        url = setup.next_step_url
    lang = wording.language(locale)
    if url is not None and url.startswith("http"):
        return {
            "url": url,
            "label": label or BOOKING_LABELS.get(lang, BOOKING_LABELS["en"]),
            "booking": True,
        }
    if url is not None:  # a mailto: the rule chose
        return {
            "url": url,
            "label": label or REPLY_LABELS.get(lang, REPLY_LABELS["en"]),
            "booking": False,
        }
    if reply_to:
        return {
            "url": f"mailto:{quote(reply_to, safe='@.+-_')}",
            "label": label or REPLY_LABELS.get(lang, REPLY_LABELS["en"]),
            "booking": False,
        }
    return {"url": None, "label": None, "booking": False}


def _follow_up_by(setup: LetterSetup, now: datetime, zone: ZoneInfo, locale: str) -> str | None:
    """The day the complaint's owner gets back by: the rule's follow_up after sending,
    moved to the next working day."""
    if setup.rule is None or setup.rule.follow_up is None:
        return None
    day = (now.astimezone(zone) + setup.rule.follow_up).date()
    for _ in range(7):
        if day.weekday() in setup.send_days:
            break
        day += timedelta(days=1)
    pattern = DAY_PATTERNS.get(wording.language(locale), "EEEE, d MMMM")
    return str(format_date(day, pattern, locale=wording.babel_locale(locale)))


def _event_date(occurred: datetime, zone: ZoneInfo, locale: str) -> str:
    """The long date; Russian without its year mark (the abbreviation of "year" with its
    full stop), so a sentence can end after the date."""
    text = str(
        format_date(occurred.astimezone(zone).date(), "long", locale=wording.babel_locale(locale))
    )
    return text.removesuffix("\u202f\u0433.").removesuffix(" \u0433.")  # the year mark


def build_context(
    payload: dict[str, Any],
    locale: str,
    timezone: str,
    *,
    setup: LetterSetup | None = None,
    unsubscribe_url: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    setup = setup or LetterSetup()
    data = payload.get("data") or {}
    context: dict[str, Any] = _sections(data)
    contact, deal, owner, feedback = (
        context["contact"],
        context["deal"],
        context["owner"],
        context["feedback"],
    )
    feedback["sentiment"] = setup.scale.sentiment(feedback["rating"])
    lang = wording.language(locale)
    zone = ZoneInfo(timezone)
    occurred = datetime.fromisoformat(str(payload["timestamp"]).replace("Z", "+00:00"))
    brand = setup.brand
    referral = context["referral"]
    referral["referred_company"] = wording.keep_together(referral["referred_company"])
    reply_to = reply_address(owner["email"], brand, setup.mail_from)
    custom = data.get("custom") or {}
    context.update(
        amount=wording.format_amount(deal["amount"], deal["currency"], locale),
        deal_title=wording.quoted(deal["title"], locale),
        quote=wording.excerpt(feedback["text"]),
        rating_scale=setup.scale.max,
        event_date=_event_date(occurred, zone, locale),
        greeting=greeting(lang, contact["first_name"], contact["last_name"], contact["salutation"]),
        you=polish_forms(contact["first_name"], contact["salutation"]),
        custom={str(k): v for k, v in custom.items() if wording.present(v) is not None},
        brand=brand.model_dump()
        | {
            "referral_reward": brand.reward(locale),
            "company": wording.keep_together(brand.company),
        },
        signer=_signer(owner, brand, setup.mail_from),
        reply_to=reply_to,
        # The From address is the last resort (only the embedded mode, which production
        # refuses, still has the localhost placeholder there).
        next_step=_next_step(setup, locale, reply_to or parseaddr(setup.mail_from)[1] or None),
        follow_up_by=_follow_up_by(setup, now or occurred, zone, locale),
        variant=setup.rule.variant if setup.rule else None,
        unsubscribe_url=safe_url(unsubscribe_url),
        locale=locale,
    )
    # Older templates test `next_step_url` (a booking page, or None).
    step = context["next_step"]
    context["next_step_url"] = step["url"] if step["booking"] else None
    return context
