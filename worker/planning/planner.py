"""From a canonical event to letters in the database.

What the rules would do is `plan.py` (pure). `Planner` applies an event inside the ingest
transaction: it schedules letters, cancels them (cancel_on events), or suppresses an address, and
records on the event what each rule decided and why (`thankly events show`), logging every
"no letter" with its reason so an operator never has to guess.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, text, update
from sqlalchemy.orm import Session

from worker.crm.activities import record
from worker.delivery.message_ids import new_message_id
from worker.events import CANCEL_EVENT_TYPES, LETTER_EVENT_TYPES, GenericEvent
from worker.experiments.assignment import remember, stored_arm
from worker.logs import mask_email
from worker.metrics import LETTER_TRANSITIONS
from worker.models import PENDING_LETTER_STATUSES, Event, Letter, LetterStatus
from worker.planning.durations import format_duration
from worker.planning.plan import plan
from worker.planning.rules import RulesStore
from worker.planning.rules_model import HOLDOUT, Rule, RuleSet
from worker.suppressions import suppress, suppression_reason

log = logging.getLogger(__name__)

# Letters that count against the frequency cap: everything that went or may still go out.
COUNTED = (
    LetterStatus.SCHEDULED,
    LetterStatus.QUEUED,
    LetterStatus.SENDING,
    LetterStatus.SENT,
    LetterStatus.UNKNOWN,
)


class Outcome:
    """What one rule decided for one event (`events.decisions[].outcome`)."""

    SCHEDULED = "scheduled"  # a letter will go out at due_at
    SUPPRESSED = "suppressed"  # a letter row exists but will not go out
    CANCELLED = "cancelled"  # a letter row exists, cancelled (by this or an earlier event)
    NO_LETTER = "no letter"  # the rule did not match: no letter row
    NOTHING_TO_CANCEL = "nothing to cancel"
    ADDRESS_SUPPRESSED = "address suppressed"
    ALREADY_SUPPRESSED = "already suppressed"


def decision(
    rule: str | None, outcome: str, reason: str | None, letter_id: int | None = None
) -> dict[str, Any]:
    return {"rule": rule, "outcome": outcome, "reason": reason, "letter_id": letter_id}


def lock_contact(session: Session, email: str) -> None:
    """Serialise planning for one address until the transaction ends (PostgreSQL), so
    parallel ingests for one contact see each other's letters and the frequency cap holds.
    SQLite runs one writer at a time already."""
    if session.get_bind().dialect.name != "postgresql" or not email:
        return
    digest = hashlib.sha256(email.encode()).digest()
    key = int.from_bytes(digest[:8], "big", signed=True)  # bigint: the lock's key space
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def goes_out(
    status: str, due_at: datetime, sent_at: datetime | None, created_at: datetime, now: datetime
) -> datetime:
    """When a letter reaches (or reached) the recipient: the scheduler sends an overdue
    letter at once, so a letter due in the past goes out now, not at its due time."""
    if sent_at is not None:
        return sent_at
    if status in PENDING_LETTER_STATUSES:
        return max(due_at, now)
    return max(due_at, created_at)  # sending or unknown: went out when it fell due


def held_out_reason(rule: Rule) -> str:
    experiment = rule.experiment
    assert experiment is not None
    return f"experiment {experiment.name}: the contact is in the holdout, never sent"


class Planner:
    """Applies one event to the letters table, in the caller's transaction, and records
    on the event what each rule decided."""

    def __init__(self, rules: RulesStore, mail_domain: str) -> None:
        self.rules = rules
        self.mail_domain = mail_domain

    def __call__(
        self, session: Session, event: Event, parsed: GenericEvent, now: datetime
    ) -> list[Letter]:
        rules = self.rules.get()
        letters: list[Letter] = []
        decisions: list[dict[str, Any]] = []
        lock_contact(session, parsed.contact_email or "")
        repeat = self._repeated_close(session, event) if parsed.type == "deal.closed" else None
        if repeat is not None:
            reason = (
                f"deal {event.deal_id} was closed already (event {repeat.external_id}) "
                "and not reopened or lost since: the same win, reported again"
            )
            decisions.append(decision(None, Outcome.NO_LETTER, reason))
            log.info("no letter: %s (event %s)", reason, event.external_id)
        elif parsed.type in LETTER_EVENT_TYPES:
            letters = self._schedule(session, event, parsed, rules, now, decisions)
        elif parsed.type in CANCEL_EVENT_TYPES:
            self._cancel(session, event, rules, now, decisions)
        elif parsed.type == "contact.unsubscribed":
            self._unsubscribe(session, event, now, decisions)
        event.decisions = decisions
        return letters

    # --- letter events ---------------------------------------------------------------

    def _schedule(
        self,
        session: Session,
        event: Event,
        parsed: GenericEvent,
        rules: RuleSet,
        now: datetime,
        decisions: list[dict[str, Any]],
    ) -> list[Letter]:
        email = parsed.contact_email or ""
        where = f"event {event.external_id} to {mask_email(email)}"
        planned_letters = plan(parsed, rules, self.rules.catalogue, now, stored_arm(session))
        if not planned_letters:
            log.info("no letter: no rule listens to %s (%s)", parsed.type, where)
        letters = []
        for planned in planned_letters:
            if not planned.matched or planned.due_at is None or planned.locale is None:
                decisions.append(decision(planned.rule, Outcome.NO_LETTER, planned.reason))
                log.info("no letter: %s: %s (%s)", planned.rule, planned.reason, where)
                continue
            rule = rules.rule(planned.rule)
            assert rule is not None
            status, reason = self._verdict(session, event, rule, email, planned.due_at, rules, now)
            if planned.experiment is not None and planned.arm is not None:
                if planned.arm != planned.earlier_arm:
                    remember(
                        session, planned.experiment, email, planned.arm, now, planned.earlier_arm
                    )
                if status == LetterStatus.SCHEDULED and planned.arm == HOLDOUT:
                    # Everything else (suppression, cancel, the cap) decided as for any
                    # letter, so the arms are treated alike until the letter would go.
                    status, reason = LetterStatus.HELD_OUT, held_out_reason(rule)
            letter = Letter(
                event_id=event.id,
                rule=rule.name,
                letter=planned.letter,
                locale=planned.locale,
                contact_email=email,
                contact_id=event.contact_id,
                deal_id=event.deal_id,
                status=status,
                status_reason=reason,
                due_at=planned.due_at,
                planned_at=planned.due_at,
                experiment=planned.experiment,
                arm=planned.arm,
                message_id=new_message_id(self.mail_domain),
                attempt_count=0,
                created_at=now,
                updated_at=now,
            )
            session.add(letter)
            session.flush()  # the next rule's frequency cap must see this letter
            LETTER_TRANSITIONS.labels(status).inc()
            if status == LetterStatus.HELD_OUT:
                self._note_held_out(session, letter, rule, event, now)
            decisions.append(decision(rule.name, status, reason, letter.id))
            if status == LetterStatus.SCHEDULED:
                log.info(
                    "letter #%s (%s) scheduled, due %s (%s)",
                    letter.id,
                    rule.name,
                    planned.due_at.isoformat(timespec="seconds"),
                    where,
                )
            else:
                log.info(
                    "no letter: %s: %s: %s (letter #%s, %s)",
                    rule.name,
                    status,
                    reason,
                    letter.id,
                    where,
                )
            letters.append(letter)
        return letters

    @staticmethod
    def _note_held_out(
        session: Session, letter: Letter, rule: Rule, event: Event, now: datetime
    ) -> None:
        """With note_held_out, the CRM hears of a holdout letter when it would have gone
        (the outbox delivers nothing before an activity's time)."""
        if rule.experiment is None or not rule.experiment.note_held_out:
            return
        details = {"experiment": rule.experiment.name, "arm": HOLDOUT}
        key = f"held_out:{letter.message_id}"
        record(
            session,
            letter,
            "email.held_out",
            key,
            letter.due_at,
            details,
            source=event.source,
            recorded_at=now,
        )

    def _verdict(
        self,
        session: Session,
        event: Event,
        rule: Rule,
        email: str,
        due_at: datetime,
        rules: RuleSet,
        now: datetime,
    ) -> tuple[str, str | None]:
        suppressed = suppression_reason(session, email)
        if suppressed is not None:
            return LetterStatus.SUPPRESSED, suppressed
        canceller = self._earlier_cancel(session, event, rule)
        if canceller is not None:
            return LetterStatus.CANCELLED, (
                f"{canceller.type} of {canceller.occurred_at.isoformat()} "
                f"(event {canceller.external_id}, received before this one)"
            )
        cap = rules.defaults.frequency_cap
        if cap is not None and not rule.cap_exempt:
            capped = self._cap_conflict(
                session, email, max(due_at, now), cap.per, now, rules.cap_exempt
            )
            if len(capped) >= cap.max:
                per = format_duration(cap.per)
                other_id, when, verb = capped[0]
                return LetterStatus.SUPPRESSED, (
                    f"frequency cap: at most {cap.max} per {per} (letter #{other_id}, {verb} "
                    f"{when:%Y-%m-%d %H:%M} UTC, is within {per})"
                )
        return LetterStatus.SCHEDULED, None

    @staticmethod
    def _cap_conflict(
        session: Session,
        email: str,
        out: datetime,
        per: timedelta,
        now: datetime,
        exempt: frozenset[str],
    ) -> list[tuple[int, datetime, str]]:
        """Letters to `email` that go (or went) out within `per` of `out`, earliest first,
        as (id, when, "due" or "sent"). Counted by when they go out, not when their events
        happened: backdated events all fall due now. Letters of cap-exempt rules (an
        answer to a complaint) do not count."""
        since = out - per
        rows = session.execute(
            select(
                Letter.id, Letter.status, Letter.due_at, Letter.sent_at, Letter.created_at
            ).where(
                Letter.contact_email == email,
                Letter.status.in_(COUNTED),
                Letter.rule.not_in(sorted(exempt)),
                # A cheap superset; goes_out decides.
                or_(
                    Letter.status.in_(PENDING_LETTER_STATUSES),
                    Letter.due_at > since,
                    Letter.sent_at > since,
                    Letter.created_at > since,
                ),
            )
        ).all()
        found = []
        for letter_id, status, due, sent, created in rows:
            when = goes_out(status, due, sent, created, now)
            if abs(when - out) < per:
                found.append((when, letter_id, "sent" if sent is not None else "due"))
        return [(letter_id, when, verb) for when, letter_id, verb in sorted(found)]

    @staticmethod
    def _repeated_close(session: Session, event: Event) -> Event | None:
        """For a natively connected CRM, the earlier `deal.closed` of the same deal when no
        loss or reopen came between. Such CRMs report a deal's state, not one transition
        (Bitrix24 posts every edit of a won deal; reconciliation and a late webhook retry
        can both report one win): a win reported again is not a second win. Events of the
        generic source are the sender's to deduplicate, by event id.

        Both neighbours in time count: a report that arrives late may carry an earlier
        time than the one it repeats (a webhook retry after reconciliation)."""
        if event.source == "generic" or not event.deal_id:
            return None
        same_deal = select(Event).where(
            Event.source == event.source,
            Event.deal_id == event.deal_id,
            Event.type.in_(("deal.closed", "deal.lost", "deal.reopened")),
            Event.id != event.id,
        )
        before = session.scalars(
            same_deal.where(Event.occurred_at <= event.occurred_at)
            .order_by(Event.occurred_at.desc(), Event.id.desc())
            .limit(1)
        ).first()
        after = session.scalars(
            same_deal.where(Event.occurred_at > event.occurred_at)
            .order_by(Event.occurred_at, Event.id)
            .limit(1)
        ).first()
        for neighbour in (before, after):
            if neighbour is not None and neighbour.type == "deal.closed":
                return neighbour
        return None

    def _earlier_cancel(self, session: Session, event: Event, rule: Rule) -> Event | None:
        """A cancel_on event that happened after this event but was received before it.
        Event timestamps decide, not arrival order."""
        if not rule.cancel_on:
            return None
        same = (
            Event.deal_id == event.deal_id
            if event.deal_id
            else Event.contact_email == (event.contact_email or "")
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

    def _cancel(
        self,
        session: Session,
        event: Event,
        rules: RuleSet,
        now: datetime,
        decisions: list[dict[str, Any]],
    ) -> None:
        names = [r.name for r in rules.cancelled_by(event.type)]
        if not names:
            log.info("no letter: no rule listens to %s (event %s)", event.type, event.external_id)
            return
        if event.deal_id:
            same, scope = Letter.deal_id == event.deal_id, f"deal {event.deal_id}"
        else:
            email = event.contact_email or ""
            same, scope = Letter.contact_email == email, mask_email(email)
        found = session.execute(
            select(Letter.id, Letter.rule)
            .join(Event, Event.id == Letter.event_id)
            .where(
                Letter.status.in_(PENDING_LETTER_STATUSES),
                Letter.rule.in_(names),
                same,
                # A deal closed again after this reopen keeps its new letter.
                Event.occurred_at <= event.occurred_at,
            )
            .order_by(Letter.id)
        ).all()
        reason = f"{event.type} of {event.occurred_at.isoformat()} (event {event.external_id})"
        for name in names:
            ids = [letter_id for letter_id, rule in found if rule == name]
            decisions.extend(decision(name, Outcome.CANCELLED, reason, i) for i in ids)
            if not ids:
                why = f"no pending letter for {scope}"
                decisions.append(decision(name, Outcome.NOTHING_TO_CANCEL, why))
                log.info(
                    "%s cancels nothing: %s: %s (event %s)",
                    event.type,
                    name,
                    why,
                    event.external_id,
                )
        self._set_status(session, [i for i, _ in found], LetterStatus.CANCELLED, reason, now)

    def _unsubscribe(
        self, session: Session, event: Event, now: datetime, decisions: list[dict[str, Any]]
    ) -> None:
        email = event.contact_email or ""
        added, ids = suppress(session, email, "unsubscribed", now, event_id=event.id)
        if added:
            decisions.append(decision(None, Outcome.ADDRESS_SUPPRESSED, "unsubscribed"))
        else:
            decisions.append(
                decision(None, Outcome.ALREADY_SUPPRESSED, suppression_reason(session, email))
            )
        found = session.execute(select(Letter.id, Letter.rule).where(Letter.id.in_(ids)))
        rules_of = {letter_id: rule for letter_id, rule in found}
        decisions.extend(
            decision(rules_of.get(i), Outcome.SUPPRESSED, "unsubscribed", i) for i in ids
        )
        log.info(
            "%s %s by event %s; %d pending letter(s) suppressed",
            mask_email(email),
            "suppressed" if added else "was already suppressed",
            event.external_id,
            len(ids),
        )

    @staticmethod
    def _set_status(
        session: Session, ids: list[int], status: str, reason: str, now: datetime
    ) -> None:
        if not ids:
            return
        changed = session.execute(
            update(Letter)
            .where(Letter.id.in_(ids), Letter.status.in_(PENDING_LETTER_STATUSES))
            .values(status=status, status_reason=reason, updated_at=now)
        )
        LETTER_TRANSITIONS.labels(status).inc(getattr(changed, "rowcount", 0) or 0)
        log.info("%d pending letters %s: %s", len(ids), status, reason)
