"""An address is normalised once, at intake: every table stores it lower-case, and every
lookup compares the indexed column itself (no `lower()` that an index cannot serve)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from alembic import command
from sqlalchemy import create_engine, insert, select, text

from tests.conftest import NOW, SAMPLES
from tests.helpers import ingest_doc, recorded_statements
from worker import suppressions
from worker.admin.event_log import EventFilter, list_events
from worker.clock import FixedClock
from worker.migrate import alembic_config, upgrade
from worker.models import AuditEntry, Event, InboxItem, Letter, LetterStatus, Suppression
from worker.runtime import Runtime


def _deal(email: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((SAMPLES / "deal_closed.en.json").read_text())
    doc["data"]["contact"]["email"] = email
    return doc


def test_an_address_in_any_case_is_one_contact(runtime: Runtime, clock: FixedClock) -> None:
    [letter] = ingest_doc(runtime, _deal("Anna@Example.ORG"), "evt_1")
    assert letter.contact_email == "anna@example.org"
    with runtime.session_factory() as session:
        assert session.scalars(select(Event.contact_email)).one() == "anna@example.org"
    suppressions.add(runtime.session_factory, "ANNA@example.org", "asked", NOW, actor="ops")
    with runtime.session_factory() as session:
        assert session.get_one(Letter, letter.id).status == LetterStatus.SUPPRESSED
    page = list_events(runtime.session_factory, EventFilter(contact="aNNa@example.org"), 10, 1)
    assert [row["contact"] for row in page.rows] == ["anna@example.org"]


def test_no_lookup_by_address_wraps_the_column_in_lower(
    runtime: Runtime, clock: FixedClock
) -> None:
    with recorded_statements(runtime) as seen:
        ingest_doc(runtime, _deal("Olga@Example.org"), "evt_1")
        lost = json.loads((SAMPLES / "deal_lost.json").read_text())
        lost["data"]["contact"] = {"email": "OLGA@example.org"}
        ingest_doc(runtime, lost, "evt_2")
        suppressions.add(runtime.session_factory, "Olga@Example.org", "asked", NOW, actor="ops")
        list_events(runtime.session_factory, EventFilter(contact="OLGA@example.org"), 10, 1)
    assert any("contact_email" in s for s in seen)  # the lookups did run
    assert [s for s in seen if "lower(" in s.lower()] == []


def test_the_migration_lower_cases_addresses_stored_before(db_url: str) -> None:
    config = alembic_config(db_url)
    command.downgrade(config, "0006")
    engine = create_engine(db_url)
    with engine.begin() as conn:
        inbox = conn.execute(
            insert(InboxItem).returning(InboxItem.id),
            [
                {
                    "source": "generic",
                    "event_id": "e1",
                    "received_at": NOW,
                    "body": "{}",
                    "body_sha256": "x",
                    "status": "processed",
                    "enqueue_count": 1,
                }
            ],
        ).scalar_one()
        event_id = conn.execute(
            insert(Event).returning(Event.id),
            [
                {
                    "inbox_id": inbox,
                    "source": "generic",
                    "external_id": "e1",
                    "type": "deal.closed",
                    "occurred_at": NOW,
                    "contact_email": "Anna@Example.ORG",
                    "payload": {},
                    "created_at": NOW,
                }
            ],
        ).scalar_one()
        conn.execute(
            insert(Suppression),
            [
                {"email": "Bob@Example.org", "reason": "first", "created_at": NOW},
                {"email": "bob@example.org", "reason": "later", "created_at": NOW + timedelta(1)},
                {"email": "Carl@Example.org", "reason": "only", "created_at": NOW},
            ],
        )
        conn.execute(
            insert(AuditEntry),
            [
                {
                    "at": NOW,
                    "actor": "ops",
                    "action": "suppress",
                    "email": "Bob@Example.org",
                    "details": {},
                }
            ],
        )
    upgrade(db_url)
    with engine.connect() as conn:
        assert conn.scalar(select(Event.contact_email).where(Event.id == event_id)) == (
            "anna@example.org"
        )
        kept = conn.execute(select(Suppression.email, Suppression.reason)).all()
        assert sorted(kept) == [("bob@example.org", "first"), ("carl@example.org", "only")]
        assert conn.scalar(text("SELECT email FROM audit_log")) == "bob@example.org"
    engine.dispose()
