"""Admin operations on letters: replay, cancel, send now, each audited.

Plain functions used by both `thankly letters …` and the `/admin` API, so the rules,
refusals and audit log are the same whichever way an admin works.

A replay never talks to the broker: it puts the same letter row back to `scheduled`
with due times spaced by THANKLY_REPLAY_RATE, and the scheduler sends it like any other.
So a bulk replay is paced, durable (a crash halfway loses nothing) and keeps the
letter's Message-ID.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from worker.admin.find import LetterFilter, find_letters
from worker.models import (
    PENDING_LETTER_STATUSES,
    AuditEntry,
    Event,
    Letter,
    LetterStatus,
)
from worker.planning.rules_model import SendWindow
from worker.planning.timing import next_opening

REPLAYABLE = (LetterStatus.FAILED,)
REFUSAL: dict[str, str] = {
    LetterStatus.SENT: "already sent",
    LetterStatus.CANCELLED: "cancelled",
    LetterStatus.SUPPRESSED: "suppressed (unsubscribed or frequency cap)",
    LetterStatus.SCHEDULED: "still pending: it will be sent anyway",
    LetterStatus.QUEUED: "still pending: it will be sent anyway",
    LetterStatus.SENDING: "being sent right now",
    LetterStatus.UNKNOWN: "outcome unknown: the recipient may already have it (use --force)",
}


def held_out(letter: Letter) -> str:
    """Why a holdout letter is refused by every action that could send it (no --force):
    sending it would spoil the comparison the holdout exists for."""
    return (
        f"held out by experiment {letter.experiment}: a holdout letter is never sent "
        "(the contact is the comparison group)"
    )


@dataclass
class Outcome:
    """What an operation did: the letters it changed and, for the rest, why not."""

    done: list[int] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)
    when: dict[int, datetime] = field(default_factory=dict)

    def refused_by_reason(self) -> dict[str, int]:
        return dict(Counter(self.refused.values()))

    def as_dict(self) -> dict[str, Any]:
        return {
            "done": self.done,
            "refused": {str(k): v for k, v in self.refused.items()},
            "refused_by_reason": self.refused_by_reason(),
            "when": {str(k): v.isoformat() for k, v in self.when.items()},
        }


def _audit(
    session: Session,
    at: datetime,
    actor: str,
    action: str,
    letter: Letter,
    reason: str | None,
    details: dict[str, Any],
) -> None:
    session.add(
        AuditEntry(
            at=at,
            actor=actor[:128],
            action=action,
            letter_id=letter.id,
            reason=reason,
            details=details,
        )
    )


def replay(
    factory: sessionmaker[Session],
    flt: LetterFilter,
    now: datetime,
    *,
    actor: str,
    reason: str | None,
    rate_per_second: float,
    force: bool = False,
    reuse_rendered: bool = False,
    dry_run: bool = False,
    progress: Any = None,
) -> Outcome:
    """Failed letters (and unknown ones with force) go out again: same row, same
    Message-ID, a fresh attempt budget, spaced 1/rate seconds apart."""
    outcome = Outcome()
    gap = timedelta(seconds=1 / rate_per_second)
    allowed = REPLAYABLE + ((LetterStatus.UNKNOWN,) if force else ())
    for letter in find_letters(factory, flt):
        if letter.status == LetterStatus.HELD_OUT:
            outcome.refused[letter.id] = held_out(letter)
            continue
        if letter.status not in allowed:
            outcome.refused[letter.id] = REFUSAL.get(letter.status, f"status {letter.status}")
            continue
        due = now + gap * len(outcome.done)
        if dry_run:
            outcome.done.append(letter.id)
            outcome.when[letter.id] = due
            continue
        with factory.begin() as session:
            changed = session.execute(
                update(Letter)
                .where(Letter.id == letter.id, Letter.status == letter.status)
                .values(
                    status=LetterStatus.SCHEDULED,
                    due_at=due,
                    attempt_count=0,
                    status_reason=f"replayed by {actor}",
                    reuse_rendered=reuse_rendered,
                    updated_at=now,
                )
            )
            if getattr(changed, "rowcount", 0) != 1:
                outcome.refused[letter.id] = "changed while replaying"
                continue
            _audit(
                session,
                now,
                actor,
                "replay",
                letter,
                reason,
                {
                    "from": letter.status,
                    "due_at": due.isoformat(),
                    "force": force,
                    "reuse_rendered": reuse_rendered,
                },
            )
        outcome.done.append(letter.id)
        outcome.when[letter.id] = due
        if progress is not None:
            progress()
    return outcome


def cancel(
    factory: sessionmaker[Session],
    ids: list[int],
    now: datetime,
    *,
    actor: str,
    reason: str | None,
    dry_run: bool = False,
) -> Outcome:
    outcome = Outcome()
    for letter in find_letters(factory, LetterFilter(ids=ids)):
        if letter.status not in PENDING_LETTER_STATUSES:
            outcome.refused[letter.id] = f"{letter.status}: only scheduled or queued letters"
            continue
        if dry_run:
            outcome.done.append(letter.id)
            continue
        with factory.begin() as session:
            changed = session.execute(
                update(Letter)
                .where(Letter.id == letter.id, Letter.status.in_(PENDING_LETTER_STATUSES))
                .values(
                    status=LetterStatus.CANCELLED,
                    status_reason=f"cancelled by {actor}",
                    updated_at=now,
                )
            )
            if getattr(changed, "rowcount", 0) != 1:
                outcome.refused[letter.id] = "changed meanwhile"
                continue
            _audit(session, now, actor, "cancel", letter, reason, {"from": letter.status})
        outcome.done.append(letter.id)
    _missing(outcome, ids)
    return outcome


def send_now(
    factory: sessionmaker[Session],
    ids: list[int],
    now: datetime,
    *,
    actor: str,
    reason: str | None,
    window: SendWindow | None,
    default_timezone: str,
    ignore_window: bool = False,
    dry_run: bool = False,
) -> Outcome:
    """Skip the wait; the recipient's send window still applies unless ignored."""
    outcome = Outcome()
    for letter in find_letters(factory, LetterFilter(ids=ids)):
        if letter.status == LetterStatus.HELD_OUT:
            outcome.refused[letter.id] = held_out(letter)
            continue
        if letter.status != LetterStatus.SCHEDULED:
            outcome.refused[letter.id] = f"{letter.status}: only scheduled letters"
            continue
        if dry_run:
            outcome.done.append(letter.id)
            continue
        with factory() as session:
            payload = session.scalars(
                select(Event.payload).where(Event.id == letter.event_id)
            ).one()
        zone = ((payload.get("data") or {}).get("contact") or {}).get(
            "timezone"
        ) or default_timezone
        due = now if ignore_window else next_opening(now, window, ZoneInfo(zone))
        with factory.begin() as session:
            changed = session.execute(
                update(Letter)
                .where(Letter.id == letter.id, Letter.status == LetterStatus.SCHEDULED)
                .values(due_at=due, updated_at=now)
            )
            if getattr(changed, "rowcount", 0) != 1:
                outcome.refused[letter.id] = "changed meanwhile"
                continue
            _audit(
                session,
                now,
                actor,
                "send-now",
                letter,
                reason,
                {
                    "old_due_at": letter.due_at.isoformat(),
                    "due_at": due.isoformat(),
                    "ignore_window": ignore_window,
                },
            )
        outcome.done.append(letter.id)
        outcome.when[letter.id] = due
    _missing(outcome, ids)
    return outcome


def _missing(outcome: Outcome, ids: list[int]) -> None:
    for letter_id in ids:
        if letter_id not in outcome.done and letter_id not in outcome.refused:
            outcome.refused[letter_id] = "no such letter"
