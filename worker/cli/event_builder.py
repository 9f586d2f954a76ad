"""A realistic event built from `thankly event send` options, for trying Thankly out.

What the user leaves out is filled in so that the shipped rules plan a letter (a
deal.closed gets a deal id and an amount over the default rules' `gte: 100`), and the
summary line names every value that was made up, so nothing is hidden.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, get_args

from worker.events import CANCEL_EVENT_TYPES, EventType

EVENT_TYPES: tuple[str, ...] = get_args(EventType)
DEFAULT_AMOUNT = "1000"
DEFAULT_CURRENCY = "EUR"


class OptionError(ValueError):
    """An option that cannot make an event; the message is the one line to show."""


@dataclass(frozen=True)
class EventOptions:
    event_type: str
    email: str
    name: str | None = None
    locale: str | None = None
    timezone: str | None = None
    amount: str | None = None
    currency: str | None = None
    deal: str | None = None
    owner_name: str | None = None
    owner_email: str | None = None
    rating: int | None = None
    text: str | None = None
    referred_name: str | None = None


# Options that describe only one kind of event; given with another they would be dropped.
_ONLY_FOR = {
    "--amount": ("amount", ("deal.closed",)),
    "--currency": ("currency", ("deal.closed",)),
    "--deal": ("deal", ("deal.closed", *sorted(CANCEL_EVENT_TYPES))),
    "--rating": ("rating", ("feedback.logged",)),
    "--text": ("text", ("feedback.logged",)),
    "--referred-name": ("referred_name", ("referral.made",)),
}


def check_type(event_type: str) -> str:
    if event_type not in EVENT_TYPES:
        raise OptionError(f"--type {event_type!r} is not one of: {', '.join(EVENT_TYPES)}")
    return event_type


def _check_applicable(opts: EventOptions) -> None:
    for option, (field, types) in _ONLY_FOR.items():
        if getattr(opts, field) is not None and opts.event_type not in types:
            raise OptionError(f"{option} applies to {' and '.join(types)} only")


def _amount(text: str) -> str:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise OptionError(f"--amount {text!r} is not a number such as 1250 or 99.90") from None
    if not value.is_finite():
        raise OptionError(f"--amount {text!r} is not a number such as 1250 or 99.90")
    return text  # sent as a string, as the samples do: no float rounding on the way


def build_event(opts: EventOptions, now: datetime) -> tuple[dict[str, Any], str]:
    """The event document and one line saying what it holds (made-up values marked)."""
    check_type(opts.event_type)
    _check_applicable(opts)
    said = [f"{opts.event_type} for {opts.email}"]
    contact: dict[str, Any] = {"email": opts.email}
    if opts.name:
        first, _, last = opts.name.strip().partition(" ")
        contact["first_name"] = first
        if last.strip():
            contact["last_name"] = last.strip()
        said.append(f"name {opts.name.strip()}")
    for key, value in (("locale", opts.locale), ("timezone", opts.timezone)):
        if value:
            contact[key] = value
            said.append(f"{key} {value}")
    data: dict[str, Any] = {"contact": contact}

    if opts.event_type == "deal.closed":
        deal_id = opts.deal or f"d-{uuid.uuid4().hex[:8]}"
        amount = _amount(opts.amount) if opts.amount is not None else DEFAULT_AMOUNT
        currency = (opts.currency or DEFAULT_CURRENCY).upper()
        data["deal"] = {"id": deal_id, "amount": amount, "currency": currency}
        said.append(f"deal {deal_id}" + ("" if opts.deal else " (generated)"))
        said.append(f"amount {amount} {currency}" + ("" if opts.amount else " (default)"))
    elif opts.deal:
        data["deal"] = {"id": opts.deal}
        said.append(f"deal {opts.deal}")
    if opts.event_type == "feedback.logged" and (opts.rating is not None or opts.text):
        data["feedback"] = {
            k: v for k, v in (("rating", opts.rating), ("text", opts.text)) if v is not None
        }
        said.append(", ".join(f"{k} {v!r}" for k, v in data["feedback"].items()))
    if opts.referred_name:
        data["referral"] = {"referred_name": opts.referred_name}
        said.append(f"referred {opts.referred_name}")
    owner = {k: v for k, v in (("name", opts.owner_name), ("email", opts.owner_email)) if v}
    if owner:
        data["owner"] = owner
        said.append(f"owner {' '.join(owner.values())}")

    document = {
        "type": opts.event_type,
        "timestamp": now.replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "data": data,
    }
    return document, "event: " + ", ".join(said)
