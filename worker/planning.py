"""From a canonical event to letters.

`plan` is pure (rules and an event → when and in which language, or why not) and is what
`thankly rules explain` shows. `Planner` applies an event inside the ingest transaction:
it schedules letters, cancels them (cancel_on events), or suppresses an address.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from worker.catalogue import Catalogue
from worker.conditions import first_failure
from worker.durations import format_duration
from worker.events import CANCEL_EVENT_TYPES, LETTER_EVENT_TYPES, GenericEvent
from worker.message_ids import new_message_id
from worker.models import Event, Letter, LetterStatus, Suppression
from worker.rules import Rule, RuleSet, RulesStore
from worker.timing import due_time

log = logging.getLogger(__name__)

PENDING = (LetterStatus.SCHEDULED, LetterStatus.QUEUED)
# Letters that count against the frequency cap: everything that went or may still go out.
COUNTED = (
    LetterStatus.SCHEDULED,
    LetterStatus.QUEUED,
    LetterStatus.SENDING,
    LetterStatus.SENT,
    LetterStatus.UNKNOWN,
)


@dataclass(frozen=True)
class PlannedLetter:
    rule: str
    letter: str
    locale: str | None = None
    timezone: str | None = None
    due_at: datetime | None = None
    reason: str | None = None  # None: the rule matched and a letter is due at due_at

    @property
    def matched(self) -> bool:
        return self.reason is None


def is_suppressed(session: Session, email: str) -> bool:
    """Unsubscribed addresses get nothing: asked when planning and again when sending."""
    return session.scalar(select(Suppression.id).where(Suppression.email == email)) is not None


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
            (event.contact_email or "").lower(),
            event.type,
            event.timestamp.isoformat(),
            subject or "",
            rule.name,
        ]
    )


def plan_rule(
    rule: Rule, event: GenericEvent, rules: RuleSet, catalogue: Catalogue
) -> PlannedLetter:
    why = first_failure(rule.when, event.model_dump(mode="json")["data"])
    if why:
        return PlannedLetter(rule.name, rule.letter, reason=f"condition not met: {why}")
    contact = event.data.contact
    wanted = contact.locale if contact else None
    locale = catalogue.resolve_locale(rule.letter, wanted, rules.defaults.locale)
    zone = contact_timezone(event, rules)
    # Same contact + event + rule → same point in the delay window, on every evaluation.
    key = spread_key(event, rule)
    due = due_time(event.timestamp, rule.delay, key, rules.defaults.send_window, ZoneInfo(zone))
    return PlannedLetter(rule.name, rule.letter, locale, zone, due)


def plan(event: GenericEvent, rules: RuleSet, catalogue: Catalogue) -> list[PlannedLetter]:
    return [plan_rule(r, event, rules, catalogue) for r in rules.for_event(event.type)]


class Planner:
    """Applies one event to the letters table, in the caller's transaction."""

    def __init__(self, rules: RulesStore, mail_domain: str) -> None:
        self.rules = rules
        self.mail_domain = mail_domain

    def __call__(
        self, session: Session, event: Event, parsed: GenericEvent, now: datetime
    ) -> list[Letter]:
        rules = self.rules.get()
        if parsed.type in LETTER_EVENT_TYPES:
            return self._schedule(session, event, parsed, rules, now)
        if parsed.type in CANCEL_EVENT_TYPES:
            self._cancel(session, event, rules, now)
        elif parsed.type == "contact.unsubscribed":
            self._unsubscribe(session, event, now)
        return []

    # --- letter events ---------------------------------------------------------------

    def _schedule(
        self, session: Session, event: Event, parsed: GenericEvent, rules: RuleSet, now: datetime
    ) -> list[Letter]:
        email = (parsed.contact_email or "").lower()
        letters = []
        for planned in plan(parsed, rules, self.rules.catalogue):
            if not planned.matched or planned.due_at is None or planned.locale is None:
                continue
            rule = rules.rule(planned.rule)
            assert rule is not None
            status, reason = self._verdict(session, event, rule, email, planned.due_at, rules)
            letter = Letter(
                event_id=event.id,
                rule=rule.name,
                letter=rule.letter,
                locale=planned.locale,
                contact_email=email,
                contact_id=event.contact_id,
                deal_id=event.deal_id,
                status=status,
                status_reason=reason,
                due_at=planned.due_at,
                message_id=new_message_id(self.mail_domain),
                attempt_count=0,
                created_at=now,
                updated_at=now,
            )
            session.add(letter)
            session.flush()  # the next rule's frequency cap must see this letter
            log.info(
                "letter #%s (%s) %s, due %s",
                letter.id,
                rule.name,
                status,
                planned.due_at.isoformat(),
            )
            letters.append(letter)
        return letters

    def _verdict(
        self,
        session: Session,
        event: Event,
        rule: Rule,
        email: str,
        due_at: datetime,
        rules: RuleSet,
    ) -> tuple[str, str | None]:
        if is_suppressed(session, email):
            return LetterStatus.SUPPRESSED, "unsubscribed"
        canceller = self._earlier_cancel(session, event, rule)
        if canceller is not None:
            return LetterStatus.CANCELLED, (
                f"{canceller.type} of {canceller.occurred_at.isoformat()} "
                f"(event {canceller.external_id}, received before this one)"
            )
        cap = rules.defaults.frequency_cap
        if cap is not None:
            nearby = session.scalars(
                select(Letter.id)
                .where(
                    Letter.contact_email == email,
                    Letter.status.in_(COUNTED),
                    Letter.due_at > due_at - cap.per,
                    Letter.due_at < due_at + cap.per,
                )
                .limit(cap.max)
            ).all()
            if len(nearby) >= cap.max:
                per = format_duration(cap.per)
                return LetterStatus.SUPPRESSED, (
                    f"frequency cap: at most {cap.max} per {per} (letter #{nearby[0]} is "
                    f"within {per})"
                )
        return LetterStatus.SCHEDULED, None

    def _earlier_cancel(self, session: Session, event: Event, rule: Rule) -> Event | None:
        """A cancel_on event that happened after this event but was received before it.
        Event timestamps decide, not arrival order."""
        if not rule.cancel_on:
            return None
        same = (
            Event.deal_id == event.deal_id
            if event.deal_id
            else func.lower(Event.contact_email) == (event.contact_email or "").lower()
        )
        return session.scalars(
            select(Event)
            .where(
                Event.type.in_(rule.cancel_on),
                Event.occurred_at >= event.occurred_at,
                Event.id != event.id,
                same,
            )
            .order_by(Event.occurred_at)
            .limit(1)
        ).first()

    # --- cancelling and suppressing events -------------------------------------------

    def _cancel(self, session: Session, event: Event, rules: RuleSet, now: datetime) -> None:
        names = [r.name for r in rules.cancelled_by(event.type)]
        if not names:
            return
        same = (
            Letter.deal_id == event.deal_id
            if event.deal_id
            else Letter.contact_email == (event.contact_email or "").lower()
        )
        ids = session.scalars(
            select(Letter.id)
            .join(Event, Event.id == Letter.event_id)
            .where(
                Letter.status.in_(PENDING),
                Letter.rule.in_(names),
                same,
                # A deal closed again after this reopen keeps its new letter.
                Event.occurred_at <= event.occurred_at,
            )
        ).all()
        reason = f"{event.type} of {event.occurred_at.isoformat()} (event {event.external_id})"
        self._set_status(session, list(ids), LetterStatus.CANCELLED, reason, now)

    def _unsubscribe(self, session: Session, event: Event, now: datetime) -> None:
        email = (event.contact_email or "").lower()
        try:
            with session.begin_nested():
                session.add(
                    Suppression(
                        email=email, reason="unsubscribed", created_at=now, event_id=event.id
                    )
                )
        except IntegrityError:
            pass  # already suppressed
        ids = session.scalars(
            select(Letter.id).where(Letter.contact_email == email, Letter.status.in_(PENDING))
        ).all()
        self._set_status(session, list(ids), LetterStatus.SUPPRESSED, "unsubscribed", now)

    @staticmethod
    def _set_status(
        session: Session, ids: list[int], status: str, reason: str, now: datetime
    ) -> None:
        if not ids:
            return
        session.execute(
            update(Letter)
            .where(Letter.id.in_(ids), Letter.status.in_(PENDING))
            .values(status=status, status_reason=reason, updated_at=now)
        )
        log.info("%d pending letters %s: %s", len(ids), status, reason)
