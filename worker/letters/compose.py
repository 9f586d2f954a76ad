"""What a recipient gets: a letter rendered over its event, made into the message.

Sending and every preview go through these two functions, so a preview shows exactly
what would be sent (with tracking off when it has no letter to track).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from email.message import EmailMessage

from worker.events import GenericEvent
from worker.letters.brand import Brand
from worker.letters.context import LetterSetup, reply_address
from worker.letters.message import build_message
from worker.letters.render import Rendered, Renderer, build_context
from worker.letters.wording import person_name
from worker.planning.conditions import event_facts, first_failure
from worker.planning.rules_model import DAYS, Rule, RuleSet
from worker.settings import Settings
from worker.tracking.hits import instrument_html


def letter_setup(
    settings: Settings, brand: Brand, rules: RuleSet, rule: Rule | None
) -> LetterSetup:
    """What shapes a letter besides its event: the brand, its rule (next step, follow-up,
    variant), the rules' rating scale and working days."""
    window = rules.defaults.send_window
    days = tuple(DAYS.index(d) for d in window.days) if window else tuple(range(7))
    return LetterSetup(
        brand=brand,
        rule=rule,
        scale=rules.defaults.feedback_scale,
        mail_from=settings.mail_from,
        next_step_url=settings.next_step_url,
        send_days=days,
    )


def rule_for(rules: RuleSet, letter: str, event: GenericEvent) -> Rule | None:
    """The rule that would send `letter` for this event (for previews, which have no
    planned letter to name it): one whose conditions hold, else any naming the letter."""
    named = [r for r in rules.rules if r.letter == letter and r.on == event.type]
    facts = event_facts(event, rules.defaults.feedback_scale)
    matching = [r for r in named if first_failure(r.when, facts) is None]
    fallback = [r for r in rules.rules if r.letter == letter]
    return next(iter(matching or named or fallback), None)


def render(
    renderer: Renderer,
    setup: LetterSetup,
    letter: str,
    event: GenericEvent,
    *,
    locale: str,
    timezone: str,
    unsubscribe_url: str,
    now: datetime | None = None,
) -> Rendered:
    """Subject, text and HTML of `letter` in `locale` for this event. Raises RenderError."""
    context = build_context(
        event.model_dump(mode="json"),
        locale,
        timezone,
        setup=setup,
        unsubscribe_url=unsubscribe_url,
        now=now,
    )
    return renderer.render(letter, locale, context)


@dataclass(frozen=True)
class Tracking:
    """Open pixel and click links for one planned letter, signed with the secret key."""

    letter_id: int
    secret_key: str


def compose(
    rendered: Rendered,
    event: GenericEvent,
    settings: Settings,
    brand: Brand,
    *,
    to: str,
    message_id: str,
    date: datetime,
    unsubscribe_url: str,
    tracking: Tracking | None,
) -> EmailMessage:
    """The message as it goes out: links tracked (never the unsubscribe link, and never
    in the plain-text part), headers from the event's owner, else the brand."""
    html = rendered.html
    if tracking is not None:
        html = instrument_html(
            html, tracking.letter_id, tracking.secret_key, settings.public_url, keep=unsubscribe_url
        )
    owner = event.data.owner
    owner_name = person_name(owner.name) if owner else None
    owner_email = owner.email if owner else None
    return build_message(
        rendered=replace(rendered, html=html),
        mail_from=settings.mail_from,
        to=to,
        message_id=message_id,
        date=date,
        sender_name=owner_name or brand.sender_name,
        reply_to=reply_address(owner_email, brand, ""),
        reply_name=owner_name if owner_email else brand.sender_name or brand.company,
        unsubscribe_url=unsubscribe_url,
    )
