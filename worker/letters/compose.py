"""What a recipient gets: a letter rendered over its event, made into the message.

Sending and every preview go through these two functions, so a preview shows exactly
what would be sent (with tracking off when it has no letter to track).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from email.message import EmailMessage

from worker.events import GenericEvent
from worker.letters.message import build_message
from worker.letters.render import Rendered, Renderer, build_context
from worker.settings import Settings
from worker.tracking.hits import instrument_html


def render(
    renderer: Renderer,
    settings: Settings,
    letter: str,
    event: GenericEvent,
    *,
    locale: str,
    timezone: str,
    unsubscribe_url: str,
) -> Rendered:
    """Subject, text and HTML of `letter` in `locale` for this event. Raises RenderError."""
    context = build_context(
        event.model_dump(mode="json"),
        locale,
        timezone,
        next_step_url=settings.next_step_url,
        unsubscribe_url=unsubscribe_url,
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
    *,
    to: str,
    message_id: str,
    date: datetime,
    unsubscribe_url: str,
    tracking: Tracking | None,
) -> EmailMessage:
    """The message as it goes out: links tracked (never the unsubscribe link, and never
    in the plain-text part), headers from the event's owner."""
    html = rendered.html
    if tracking is not None:
        html = instrument_html(
            html, tracking.letter_id, tracking.secret_key, settings.public_url, keep=unsubscribe_url
        )
    owner = event.data.owner
    return build_message(
        rendered=replace(rendered, html=html),
        mail_from=settings.mail_from,
        to=to,
        message_id=message_id,
        date=date,
        owner_name=owner.name if owner else None,
        owner_email=owner.email if owner else None,
        unsubscribe_url=unsubscribe_url,
    )
