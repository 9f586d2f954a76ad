"""What the rules would do with an event: pure, no database, the same answer every time.

`plan` (rules and an event → when and in which language, or why not) is what
`thankly rules explain` shows and what the planner applies inside the ingest transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from worker.events import GenericEvent
from worker.experiments.assignment import StoredArm, choose_arm
from worker.letters.catalogue import Catalogue
from worker.planning.conditions import event_facts, first_failure
from worker.planning.durations import format_duration
from worker.planning.rules_model import Rule, RuleSet
from worker.planning.timing import due_time


@dataclass(frozen=True)
class PlannedLetter:
    rule: str
    letter: str
    locale: str | None = None
    timezone: str | None = None
    due_at: datetime | None = None
    reason: str | None = None  # None: the rule matched and a letter is due at due_at
    # Under a running experiment: its name and the contact's arm (`letter` is the arm's).
    experiment: str | None = None
    arm: str | None = None
    # The arm stored for the contact before this letter (None: new to the experiment), so
    # the planner writes an assignment only when there is something new to keep.
    earlier_arm: str | None = None

    @property
    def matched(self) -> bool:
        return self.reason is None


def contact_timezone(event: GenericEvent, rules: RuleSet) -> str:
    contact = event.data.contact
    return contact.timezone if contact and contact.timezone else rules.defaults.timezone


def spread_key(event: GenericEvent, rule: Rule) -> str:
    """What the delay spread depends on: the event's own identity (not the webhook id,
    which `rules explain` cannot know), so explain and ingest agree to the second."""
    data = event.data
    subject = (data.deal.id if data.deal else None) or (data.feedback.id if data.feedback else None)
    return "|".join(
        [
            event.contact_email or "",
            event.type,
            event.timestamp.isoformat(),
            subject or "",
            rule.name,
        ]
    )


def _age(delta: timedelta) -> str:
    """`20d`, `5h`: how old an event is, to the unit that matters."""
    if delta >= timedelta(days=1):
        return f"{delta.days}d"
    return f"{int(delta.total_seconds() // 3600)}h"


def too_old(event: GenericEvent, rules: RuleSet, now: datetime) -> str | None:
    """Why an event is too old for a letter (`defaults.max_event_age`), or None."""
    age = now - event.timestamp
    limit = rules.defaults.max_event_age
    if age <= limit:
        return None
    return f"event is {_age(age)} old, over max_event_age {format_duration(limit)}"


def plan_rule(
    rule: Rule,
    event: GenericEvent,
    rules: RuleSet,
    catalogue: Catalogue,
    now: datetime | None = None,
    stored: StoredArm | None = None,
) -> PlannedLetter:
    """What `rule` does with `event`. With `now`, an event older than max_event_age plans
    nothing (without it, e.g. when rescheduling letters that exist, age does not matter).
    `stored` looks up arms contacts already have in experiments (None: by hash alone)."""
    old = too_old(event, rules, now) if now is not None else None
    if old:
        return PlannedLetter(rule.name, rule.letter, reason=old)
    why = first_failure(rule.when, event_facts(event, rules.defaults.feedback_scale))
    if why:
        return PlannedLetter(rule.name, rule.letter, reason=f"condition not met: {why}")
    contact_email = event.contact_email or ""
    experiment = rule.experiment
    earlier = stored(experiment.name, contact_email) if stored is not None and experiment else None
    name, arm, letter = arm_and_letter(rule, contact_email, earlier)
    contact = event.data.contact
    wanted = contact.locale if contact else None
    locale = catalogue.resolve_locale(letter, wanted, rules.defaults.locale)
    zone = contact_timezone(event, rules)
    # Same contact + event + rule → same point in the delay window, on every evaluation.
    key = spread_key(event, rule)
    due = due_time(event.timestamp, rule.delay, key, rules.defaults.send_window, ZoneInfo(zone))
    return PlannedLetter(
        rule.name, letter, locale, zone, due, experiment=name, arm=arm, earlier_arm=earlier
    )


def arm_and_letter(
    rule: Rule, contact: str, earlier: str | None = None
) -> tuple[str | None, str | None, str]:
    """(experiment, arm, letter folder) for a letter of `rule` to `contact`. A closed
    experiment's letters are the winner's arm (whose `variant` shapes them) outside the
    experiment: its report keeps only the letters planned while it ran. The holdout's
    letter is the rule's own: it is planned like any other, then held out. `earlier`: the
    arm stored for the contact, if any."""
    experiment = rule.experiment
    if experiment is None:
        return None, None, rule.letter
    arm = choose_arm(experiment, contact, earlier)
    chosen = experiment.variants.get(arm)
    letter = chosen.letter if chosen is not None else rule.letter
    if experiment.closed:
        return None, arm, letter
    return experiment.name, arm, letter


def plan(
    event: GenericEvent,
    rules: RuleSet,
    catalogue: Catalogue,
    now: datetime | None = None,
    stored: StoredArm | None = None,
) -> list[PlannedLetter]:
    return [plan_rule(r, event, rules, catalogue, now, stored) for r in rules.for_event(event.type)]
