"""`thankly rules apply --reschedule`: new due times for still-scheduled letters after ops
changed delays or send windows. Only the time moves; a letter whose rule is gone or no
longer matches is reported and left for an admin to cancel. Every move is audited, so a
letter's timeline says who moved it and from when."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from worker.events import validate_event
from worker.letters.catalogue import Catalogue
from worker.models import AuditEntry, Event, Letter, LetterStatus
from worker.planning.plan import plan_rule
from worker.planning.rules_model import RuleSet


@dataclass(frozen=True)
class Change:
    letter_id: int
    rule: str
    old_due_at: datetime
    new_due_at: datetime | None
    note: str | None = None

    @property
    def moves(self) -> bool:
        return self.new_due_at is not None and self.new_due_at != self.old_due_at


def movable(now: datetime) -> Any:
    """Scheduled letters, and held-out letters whose time has not come: a holdout's due
    time is when its letter would have gone, the clock its conversions are measured on,
    so it moves with the letters it is compared with."""
    return or_(
        Letter.status == LetterStatus.SCHEDULED,
        and_(Letter.status == LetterStatus.HELD_OUT, Letter.due_at > now),
    )


def reschedule(
    session_factory: sessionmaker[Session],
    rules: RuleSet,
    catalogue: Catalogue,
    now: datetime,
    *,
    dry_run: bool,
    actor: str,
) -> list[Change]:
    changes: list[Change] = []
    with session_factory.begin() as session:
        rows = session.execute(
            select(Letter.id, Letter.rule, Letter.due_at, Event.payload)
            .join(Event, Event.id == Letter.event_id)
            .where(movable(now))
            .order_by(Letter.due_at, Letter.id)
        ).all()
        for letter_id, rule_name, old_due, payload in rows:
            rule = rules.rule(rule_name)
            if rule is None:
                changes.append(Change(letter_id, rule_name, old_due, None, "rule no longer exists"))
                continue
            planned = plan_rule(rule, validate_event(payload), rules, catalogue)
            if planned.due_at is None:
                changes.append(Change(letter_id, rule_name, old_due, None, planned.reason))
                continue
            change = Change(letter_id, rule_name, old_due, planned.due_at)
            changes.append(change)
            if change.moves and not dry_run:
                # Conditional: a letter the scheduler claimed meanwhile is left alone.
                moved = session.execute(
                    update(Letter)
                    .where(Letter.id == letter_id, movable(now), Letter.due_at == old_due)
                    .values(due_at=planned.due_at, updated_at=now)
                )
                if getattr(moved, "rowcount", 0) == 1:
                    session.add(
                        AuditEntry(
                            at=now,
                            actor=actor[:128],
                            action="reschedule",
                            letter_id=letter_id,
                            reason="rules apply --reschedule",
                            details={
                                "old_due_at": old_due.isoformat(),
                                "due_at": planned.due_at.isoformat(),
                            },
                        )
                    )
    return changes
