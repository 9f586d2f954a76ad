"""`thankly rules explain`: what the rules would do with one event, and why."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from worker.events import CANCEL_EVENT_TYPES, GenericEvent
from worker.experiments.assignment import StoredArm
from worker.letters.catalogue import Catalogue
from worker.planning.plan import PlannedLetter, contact_timezone, plan
from worker.planning.rules_model import HOLDOUT, RuleSet


def _entry(planned: PlannedLetter | None, zone: str) -> dict[str, Any]:
    if planned is None:
        return {
            "rule": None,
            "letter": None,
            "locale": None,
            "due_at": None,
            "experiment": None,
            "arm": None,
            "held_out": False,
        }
    due = planned.due_at
    return {
        "rule": planned.rule,
        "letter": planned.letter if planned.matched else None,
        "locale": planned.locale,
        "due_at": due.isoformat().replace("+00:00", "Z") if due else None,
        "due_local": due.astimezone(ZoneInfo(zone)).isoformat() if due else None,
        "reason": planned.reason,
        "experiment": planned.experiment,
        "arm": planned.arm,
        # A holdout letter is planned (its due time starts the conversion clock), never sent.
        "held_out": planned.arm == HOLDOUT,
    }


def explain(
    event: GenericEvent,
    rules: RuleSet,
    catalogue: Catalogue,
    now: datetime | None = None,
    stored: StoredArm | None = None,
) -> dict[str, Any]:
    """Keys `rule`, `letter`, `locale`, `due_at` (UTC), `reason` describe the outcome (the
    first matching rule, or why nothing is sent); `rules` lists every rule considered.
    With `now`, the event is judged as if it arrived then, so one older than
    max_event_age is explained as planning nothing, the way ingest treats it; without,
    age is left out and the result depends on the event alone. `stored` looks up the arms
    contacts already have in experiments; without it, arms are the hash's alone."""
    zone = contact_timezone(event, rules)
    planned = plan(event, rules, catalogue, now, stored)
    first = next((p for p in planned if p.matched), None)
    result = _entry(first, zone)
    result.update(
        event_type=event.type,
        contact=event.contact_email,
        timezone=zone,
        wanted_locale=event.data.contact.locale if event.data.contact else None,
        rules=[_entry(p, zone) for p in planned],
    )
    if first is not None:
        result["reason"] = None
    elif event.type in CANCEL_EVENT_TYPES:
        names = [r.name for r in rules.cancelled_by(event.type)]
        target = f"deal {event.deal_id}" if event.deal_id else f"contact {event.contact_email}"
        result["reason"] = (
            f"{event.type} sends no letter; it cancels pending letters of "
            f"{', '.join(names) or 'no rule (no rule lists it in cancel_on)'} for {target}"
        )
    elif event.type == "contact.unsubscribed":
        result["reason"] = (
            "contact.unsubscribed sends no letter; "
            "it suppresses the address and its pending letters"
        )
    elif not planned:
        result["reason"] = f"no rule has on: {event.type}"
    else:
        result["reason"] = "; ".join(f"{p.rule}: {p.reason}" for p in planned)
    return result
