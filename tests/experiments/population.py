"""Rows for report tests, written straight to the tables: a population of letters in an
experiment's arms and the events that may convert them, with every truth known."""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from worker.models import Event, InboxItem, Letter, LetterStatus

_ids = itertools.count(1)


@dataclass
class Population:
    """What is to be written: events (type, contact, deal, when, source) and letters (arm,
    status, contact, deal, planned time) that point at the event of their deal."""

    experiment: str = "deal-thanks-q1"
    events: list[dict[str, Any]] = field(default_factory=list)
    letters: list[dict[str, Any]] = field(default_factory=list)

    def event(
        self,
        kind: str,
        email: str,
        deal_id: str | None,
        at: datetime,
        source: str = "generic",
    ) -> int:
        n = next(_ids)
        self.events.append(
            {"id": n, "type": kind, "email": email, "deal": deal_id, "at": at, "source": source}
        )
        return n

    def letter(
        self,
        arm: str,
        email: str,
        deal_id: str,
        planned: datetime,
        status: str = LetterStatus.SENT,
        experiment: str | None = None,
    ) -> None:
        event_id = self.event("deal.closed", email, deal_id, planned)  # the thanked-for deal
        self.letters.append(
            {
                "event": event_id,
                "arm": arm,
                "email": email,
                "deal": deal_id,
                "planned": planned,
                "status": status,
                "experiment": experiment or self.experiment,
            }
        )

    def write(self, factory: sessionmaker[Session]) -> None:
        with factory.begin() as session:
            session.execute(
                insert(InboxItem),
                [
                    {
                        "id": e["id"],
                        "source": e["source"],
                        "event_id": f"evt-{e['id']}",
                        "received_at": e["at"],
                        "body": "{}",
                        "body_sha256": hashlib.sha256(b"{}").hexdigest(),
                        "status": "processed",
                        "enqueue_count": 1,
                    }
                    for e in self.events
                ],
            )
            session.execute(
                insert(Event),
                [
                    {
                        "id": e["id"],
                        "inbox_id": e["id"],
                        "source": e["source"],
                        "external_id": f"evt-{e['id']}",
                        "type": e["type"],
                        "occurred_at": e["at"],
                        "contact_email": e["email"],
                        "deal_id": e["deal"],
                        "payload": {},
                        "created_at": e["at"],
                    }
                    for e in self.events
                ],
            )
            session.execute(
                insert(Letter),
                [
                    {
                        "event_id": x["event"],
                        "rule": "deal-closed-thanks",
                        "letter": "deal_closed",
                        "locale": "en",
                        "contact_email": x["email"],
                        "deal_id": x["deal"],
                        "status": x["status"],
                        "due_at": x["planned"],
                        "planned_at": x["planned"],
                        "message_id": f"<{x['event']}@test>",
                        "attempt_count": 1,
                        "created_at": x["planned"],
                        "updated_at": x["planned"],
                        "sent_at": x["planned"] if x["status"] == LetterStatus.SENT else None,
                        "experiment": x["experiment"],
                        "arm": x["arm"],
                    }
                    for x in self.letters
                ],
            )
        self.events.clear()
        self.letters.clear()
