"""The audit log as admins read it: who did what to a letter or an address, and why."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from worker.models import (
    AuditEntry,
)


def audit_log(
    factory: sessionmaker[Session], letter_id: int | None = None, email: str | None = None
) -> list[dict[str, Any]]:
    """Audit entries, oldest first; about one letter, or one address (suppressions)."""
    with factory() as session:
        q = select(AuditEntry).order_by(AuditEntry.id)
        if letter_id is not None:
            q = q.where(AuditEntry.letter_id == letter_id)
        if email is not None:
            q = q.where(AuditEntry.email == email.strip().lower())
        return [
            {
                "at": e.at.isoformat(),
                "actor": e.actor,
                "action": e.action,
                "letter_id": e.letter_id,
                "email": e.email,
                "reason": e.reason,
                "details": e.details,
            }
            for e in session.scalars(q)
        ]
