"""What arrived and what was decided: the queries behind `thankly events list/show`.

An event's `decisions` were written at ingest (worker/planning/planner.py); here they are joined
with the letters they planned, whose status and due time may have moved on since.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, sessionmaker

from worker.events import CANCEL_EVENT_TYPES, LETTER_EVENT_TYPES
from worker.models import Event, InboxItem, InboxStatus, Letter
from worker.planning.planner import Outcome


@dataclass(frozen=True)
class EventFilter:
    event_type: str | None = None
    contact: str | None = None
    since: datetime | None = None  # received at or after

    def apply(self, query: Select[Any]) -> Select[Any]:
        if self.event_type:
            query = query.where(Event.type == self.event_type)
        if self.contact:
            query = query.where(Event.contact_email == self.contact.strip().lower())
        if self.since:
            query = query.where(Event.created_at >= self.since)
        return query


@dataclass(frozen=True)
class EventPage:
    rows: list[dict[str, Any]]
    total: int
    page: int
    pages: int
    # Webhooks stored but not (yet) events: {"pending": n, "failed": m}. An event arrives
    # in the inbox first; one stuck there is still something that arrived.
    inbox: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "page": self.page,
            "pages": self.pages,
            "events": self.rows,
            "not_ingested": self.inbox,
        }


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def outcome_summary(event_type: str, decisions: list[dict[str, Any]] | None) -> str:
    """A few words for an 80-column list: `1 letter`, `no letter`, `suppressed`,
    `cancelled 2`, `nothing pending`, `unsubscribed`. `events show` has the reasons."""
    if decisions is None:
        return "not recorded"
    counts: dict[str, int] = {}
    for d in decisions:
        counts[d["outcome"]] = counts.get(d["outcome"], 0) + 1
    if event_type in LETTER_EVENT_TYPES:
        held = [
            f"{counts[o]} {o}" for o in (Outcome.SUPPRESSED, Outcome.CANCELLED) if counts.get(o)
        ]
        if counts.get(Outcome.SCHEDULED):
            # Several rules can listen to one event; some may plan while others are held.
            extra = f" +{', '.join(held)}" if held else ""
            return _plural(counts[Outcome.SCHEDULED], "letter") + extra
        if len(held) == 1:
            return held[0].split(" ", 1)[1]  # the one reason there is no letter
        return "no letter"
    if event_type in CANCEL_EVENT_TYPES:
        cancelled = counts.get(Outcome.CANCELLED, 0)
        return f"cancelled {cancelled}" if cancelled else "nothing pending"
    suppressed = counts.get(Outcome.SUPPRESSED, 0)
    return f"unsubscribed, {suppressed} held" if suppressed else "unsubscribed"


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _row(event: Event) -> dict[str, Any]:
    return {
        "id": event.id,
        "source": event.source,
        "external_id": event.external_id,
        "type": event.type,
        "occurred_at": _iso(event.occurred_at),
        "received_at": _iso(event.created_at),
        "contact": event.contact_email,
        "deal_id": event.deal_id,
        "outcome": outcome_summary(event.type, event.decisions),
    }


def list_events(
    factory: sessionmaker[Session], flt: EventFilter, limit: int, page: int
) -> EventPage:
    """Newest first (by arrival), one page of `limit` rows, with the total."""
    with factory() as session:
        total = session.scalar(flt.apply(select(func.count()).select_from(Event))) or 0
        events = session.scalars(
            flt.apply(select(Event))
            .order_by(Event.id.desc())
            .limit(limit)
            .offset((page - 1) * limit)
        ).all()
        rows = [_row(e) for e in events]
        inbox: dict[str, int] = dict.fromkeys((InboxStatus.PENDING, InboxStatus.FAILED), 0)
        for status, count in session.execute(
            select(InboxItem.status, func.count())
            .where(InboxItem.status.in_(list(inbox)))
            .group_by(InboxItem.status)
        ):
            inbox[status] = count
    return EventPage(rows, total, page, max(1, -(-total // limit)), inbox)


def find_event(session: Session, ref: str) -> Event | None:
    """By Thankly's number (`42`, `#42`) or by the sender's webhook-id (`evt_demo`); a
    webhook-id reused by two sources gives the newest."""
    number = ref.removeprefix("#")
    if number.isdigit():
        event = session.get(Event, int(number))
        if event is not None:
            return event
    return session.scalars(
        select(Event).where(Event.external_id == ref).order_by(Event.id.desc()).limit(1)
    ).first()


def _letter_state(letter: Letter | None) -> dict[str, Any]:
    if letter is None:
        return {"letter_status": None, "due_at": None, "status_reason": None}
    return {
        "letter_status": letter.status,
        "due_at": _iso(letter.due_at),
        "status_reason": letter.status_reason,
    }


def event_story(factory: sessionmaker[Session], ref: str) -> dict[str, Any] | None:
    """The event, who and what it was about, and each decision with its letter's status
    now. `decisions` is None for events ingested before decisions were recorded; their
    letters are listed under `letters` either way."""
    with factory() as session:
        event = find_event(session, ref)
        if event is None:
            return None
        letters = {
            x.id: x
            for x in session.scalars(
                select(Letter).where(Letter.event_id == event.id).order_by(Letter.id)
            )
        }
        decided = event.decisions
        wanted = {d["letter_id"] for d in decided or [] if d.get("letter_id")} - set(letters)
        if wanted:  # letters cancelled or suppressed by this event belong to other events
            letters.update(
                (x.id, x) for x in session.scalars(select(Letter).where(Letter.id.in_(wanted)))
            )
        data = event.payload.get("data") or {}
        story = _row(event)
        story.update(
            {
                "contact_details": data.get("contact") or {},
                "deal": data.get("deal"),
                "owner": data.get("owner"),
                "feedback": data.get("feedback"),
                "referral": data.get("referral"),
                "decisions": None
                if decided is None
                else [
                    {**d, **_letter_state(letters.get(d.get("letter_id") or 0))} for d in decided
                ],
                "letters": [
                    {"letter_id": x.id, "rule": x.rule, **_letter_state(x)}
                    for x in letters.values()
                    if x.event_id == event.id
                ],
            }
        )
        return story
