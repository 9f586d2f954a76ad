"""A letter's story in order: planned, attempts, sent, opens, clicks, CRM deliveries."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from worker.models import Attempt, AuditEntry, Click, CrmActivity, Event, Letter, Open
from worker.tracking.hits import HITS_KEPT_PER_LETTER


def _iso(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def letter_timeline(factory: sessionmaker[Session], letter_id: int) -> dict[str, Any] | None:
    with factory() as session:
        letter = session.get(Letter, letter_id)
        if letter is None:
            return None
        event = session.get_one(Event, letter.event_id)
        attempts = session.scalars(select(Attempt).where(Attempt.letter_id == letter_id)).all()
        opens = session.scalars(select(Open).where(Open.letter_id == letter_id)).all()
        clicks = session.scalars(select(Click).where(Click.letter_id == letter_id)).all()
        activities = session.scalars(
            select(CrmActivity).where(CrmActivity.letter_id == letter_id)
        ).all()
        audit = session.scalars(select(AuditEntry).where(AuditEntry.letter_id == letter_id)).all()

    entries: list[dict[str, Any]] = [
        {
            "at": _iso(letter.created_at),
            "what": "planned",
            # The first planned time: send-now, replay and reschedule move due_at later.
            "detail": f"{letter.rule} from {event.type} {event.external_id}, "
            f"due {_iso(letter.planned_at or letter.due_at)}",
        }
    ]
    for a in attempts:
        code = f" {a.smtp_code}" if a.smtp_code else ""
        text = f" ({a.error_class}{code}: {a.error_text})" if a.error_class else ""
        entries.append(
            {"at": _iso(a.started_at), "what": f"attempt {a.outcome}", "detail": text.strip()}
        )
    if letter.sent_at is not None:
        entries.append({"at": _iso(letter.sent_at), "what": "sent", "detail": letter.message_id})
    for o in opens:
        reason = f" ({o.reason})" if o.reason else ""
        entries.append(
            {
                "at": _iso(o.at),
                "what": f"open {o.kind}",
                "detail": f"{o.method} {o.user_agent or '-'}{reason}",
            }
        )
    for c in clicks:
        entries.append({"at": _iso(c.at), "what": "click", "detail": c.url})
    # Hits past the rows kept per letter are only counted; say so after the last kept one.
    for noun, extra, kept in (
        ("open", letter.extra_opens, opens),
        ("click", letter.extra_clicks, clicks),
    ):
        if extra:
            entries.append(
                {
                    "at": _iso(max(hit.at for hit in kept)) if kept else None,
                    "what": f"{noun}s not kept",
                    "detail": f"{extra} counted, beyond the first {HITS_KEPT_PER_LETTER} kept",
                }
            )
    for act in activities:
        when = act.delivered_at or act.updated_at
        error = f" (last error: {act.last_error})" if act.last_error else ""
        entries.append(
            {
                "at": _iso(when),
                "what": f"crm {act.kind}",
                "detail": f"{act.status} after {act.attempts} attempt(s){error}",
            }
        )
    for entry in audit:
        why = f": {entry.reason}" if entry.reason else ""
        moved = entry.details or {}
        if moved.get("old_due_at") and moved.get("due_at"):
            why += f" (due {moved['old_due_at']} → {moved['due_at']})"
        entries.append(
            {
                "at": _iso(entry.at),
                # A recipient's own unsubscribe is audited too, but it is not an admin's act.
                "what": entry.action
                if entry.actor.startswith("recipient")
                else f"admin {entry.action}",
                "detail": f"by {entry.actor}{why}",
            }
        )
    entries.sort(key=lambda e: e["at"] or "")
    return {
        "id": letter.id,
        "status": letter.status,
        "status_reason": letter.status_reason,
        "letter": letter.letter,
        "locale": letter.locale,
        "rule": letter.rule,
        "experiment": letter.experiment,
        "arm": letter.arm,
        "contact": letter.contact_email,
        "deal_id": letter.deal_id,
        "planned_at": _iso(letter.planned_at),
        "due_at": _iso(letter.due_at),
        "sent_at": _iso(letter.sent_at),
        "message_id": letter.message_id,
        "subject": (letter.rendered or {}).get("subject"),
        "attempts": letter.attempt_count,
        "last_error": letter.last_error,
        "opens": {
            "human": sum(o.kind == "human" for o in opens),
            "machine": sum(o.kind == "machine" for o in opens),
        },
        "clicks": len(clicks),
        "extra_opens": letter.extra_opens,
        "extra_clicks": letter.extra_clicks,
        "timeline": entries,
    }


def pending_activities(factory: sessionmaker[Session]) -> list[dict[str, Any]]:
    with factory() as session:
        rows = session.scalars(
            select(CrmActivity).where(CrmActivity.status != "delivered").order_by(CrmActivity.id)
        ).all()
        return [
            {
                "id": a.id,
                "kind": a.kind,
                "letter_id": a.letter_id,
                "status": a.status,
                "attempts": a.attempts,
                "next_attempt_at": _iso(a.next_attempt_at),
                "last_error": a.last_error,
                "idempotency_key": a.idempotency_key,
            }
            for a in rows
        ]
