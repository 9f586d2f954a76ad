"""`thankly preview`: a letter as the recipient would get it, without sending anything."""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

from worker.events import GenericEvent
from worker.letters import Rendered, Renderer, build_context
from worker.mail.message import build_message
from worker.message_ids import message_id_domain, new_message_id
from worker.settings import Settings

# A full example event per letter, for previews without --event.
EXAMPLE: dict[str, Any] = {
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


def preview(
    settings: Settings,
    renderer: Renderer,
    letter: str,
    locale: str,
    event: GenericEvent | None,
    default_timezone: str,
) -> tuple[Rendered, EmailMessage]:
    payload = event.model_dump(mode="json") if event else EXAMPLE
    contact = payload["data"].get("contact") or {}
    owner = payload["data"].get("owner") or {}
    unsubscribe = f"{settings.public_url}/u/preview"
    context = build_context(
        payload,
        locale,
        contact.get("timezone") or default_timezone,
        next_step_url=settings.next_step_url,
        unsubscribe_url=unsubscribe,
    )
    rendered = renderer.render(letter, locale, context)
    message = build_message(
        rendered=rendered,
        mail_from=settings.mail_from,
        to=contact.get("email") or "recipient@example.org",
        message_id=new_message_id(message_id_domain(settings.mail_from)),
        date=datetime.now(UTC),
        owner_name=owner.get("name"),
        owner_email=owner.get("email"),
        unsubscribe_url=unsubscribe,
    )
    return rendered, message
