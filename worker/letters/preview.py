"""Previews: a letter as the recipient would get it, without sending anything.

`preview` fills a letter from an event file (or a full example) and picks its locale and
time zone the way planning does. `stored_letter` shows a planned letter exactly as the
sender would build it, through the sender's own functions, reading the database only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

from sqlalchemy import select

from worker.clock import SystemClock
from worker.delivery.message_ids import message_id_domain, new_message_id
from worker.delivery.senders import MemorySender
from worker.events import GenericEvent, validate_event
from worker.letters.brand import BrandStore
from worker.letters.catalogue import Catalogue, normalise_locale
from worker.letters.compose import compose, letter_setup, render, rule_for
from worker.letters.render import Rendered, Renderer
from worker.models import Event, Letter
from worker.planning.plan import contact_timezone
from worker.planning.rules import RulesError, RulesStore
from worker.planning.rules_model import Defaults, RuleSet
from worker.settings import Settings

# A full example event, for previews without --event: every optional paragraph on.
EXAMPLE: dict[str, Any] = {
    "type": "deal.closed",
    "timestamp": "2026-11-20T10:00:00Z",
    "data": {
        "contact": {
            "email": "anna@example.org",
            "first_name": "Anna",
            "last_name": "Berg",
            "timezone": "Europe/Berlin",
        },
        "deal": {
            "id": "d-1",
            "number": "12345",
            "title": "Annual plan",
            "amount": "5000.00",
            "currency": "EUR",
        },
        "owner": {"name": "Ivan Petrov", "email": "ivan@seller.example"},
        "feedback": {"id": "f-1", "rating": 9, "text": "Onboarding was fast and friendly."},
        "referral": {"referred_name": "Olga Smirnova", "referred_company": "Nord LLC"},
    },
}


@dataclass(frozen=True)
class Choice:
    locale: str
    timezone: str
    notes: list[str]


def rules_or_defaults(settings: Settings) -> tuple[RuleSet, str | None]:
    """The rules in force, or built-in defaults with a note saying why (a preview of a
    letter should not need a valid rules file)."""
    try:
        return RulesStore(settings.rules_file, settings.templates_dir).get(), None
    except RulesError as exc:
        fallback = RuleSet(Defaults(), (), settings.rules_file)
        d = fallback.defaults
        return fallback, (
            f"{exc.path} has {len(exc.problems)} problem(s); using locale {d.locale} "
            f"and time zone {d.timezone}"
        )


def choose(settings: Settings, letter: str, event: GenericEvent, override: str | None) -> Choice:
    """Locale and time zone as planning picks them (contact's locale → its language → the
    rules' default, by which letter folders exist); `override` stands for the contact's."""
    rules, note = rules_or_defaults(settings)
    notes = [note] if note else []
    contact = event.data.contact
    wanted = override or (contact.locale if contact else None)
    locale = Catalogue.scan(settings.templates_dir).resolve_locale(
        letter, wanted, rules.defaults.locale
    )
    # ru-RU → ru is the normal path; only a fallback to the default is worth a note.
    if wanted and locale not in (normalise_locale(wanted), normalise_locale(wanted).split("-")[0]):
        whose = "" if override else "the contact's locale "
        notes.append(f"no {letter} in {whose}{wanted!r}; showing {locale!r}")
    return Choice(locale, contact_timezone(event, rules), notes)


def example_event() -> GenericEvent:
    return validate_event(EXAMPLE)


def preview(
    settings: Settings, renderer: Renderer, letter: str, event: GenericEvent, choice: Choice
) -> tuple[Rendered, EmailMessage]:
    """An ad-hoc rendering: a made-up Message-ID and unsubscribe link, no tracking; the
    rule that would send this letter for this event gives its next step and follow-up.
    Raises BrandError for a brand file that does not validate."""
    unsubscribe = f"{settings.public_url}/u/preview"
    rules, _ = rules_or_defaults(settings)
    brand = BrandStore(settings.brand_file).get()
    rendered = render(
        renderer,
        letter_setup(settings, brand, rules, rule_for(rules, letter, event)),
        letter,
        event,
        locale=choice.locale,
        timezone=choice.timezone,
        unsubscribe_url=unsubscribe,
    )
    message = compose(
        rendered,
        event,
        settings,
        brand,
        to=event.contact_email or "recipient@example.org",
        message_id=new_message_id(message_id_domain(settings.mail_from)),
        date=datetime.now(UTC),
        unsubscribe_url=unsubscribe,
        tracking=None,
    )
    return rendered, message


@dataclass(frozen=True)
class StoredPreview:
    letter: Letter
    rendered: Rendered
    message: EmailMessage
    reused: bool  # the stored rendering (a --reuse-rendered replay), not the template


def stored_letter(
    settings: Settings, secret_key: Callable[[], str], letter_id: int
) -> StoredPreview | None:
    """Letter `letter_id` as `send_letter` would build it now; None if there is none.
    Reads only: nothing is committed, claimed or sent. Raises RenderError. `secret_key` is
    asked only once the letter is found (its links are signed with it)."""
    from worker.db import make_engine, make_session_factory
    from worker.delivery.send import Delivery, letter_message, render_letter

    engine = make_engine(settings.effective_database_url)
    try:
        factory = make_session_factory(engine)
        with factory() as session:
            letter = session.get(Letter, letter_id)
            if letter is None:
                return None
            payload = session.scalars(
                select(Event.payload).where(Event.id == letter.event_id)
            ).one()
        brand = BrandStore(settings.brand_file)
        delivery = Delivery(
            session_factory=factory,
            clock=SystemClock(),
            renderer=Renderer(settings.templates_dir),
            sender=MemorySender(),  # never called: only the building functions are used
            settings=settings,
            secret_key=secret_key(),
            rules=lambda: rules_or_defaults(settings)[0],
            brand=brand.get,
        )
        event = GenericEvent.model_validate(payload)
        rendered = render_letter(delivery, letter, event)
        message = letter_message(delivery, letter, event, rendered, delivery.clock.now())
    finally:
        engine.dispose()
    return StoredPreview(letter, rendered, message, bool(letter.reuse_rendered and letter.rendered))
