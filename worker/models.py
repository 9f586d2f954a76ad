"""Tables. The inbox keeps every accepted webhook verbatim; events are their canonical form;
letters and attempts are what the scheduler and the sender work on."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from worker.db import UTCDateTime

# Integer on SQLite so the primary key is the rowid (autoincrement); BIGINT elsewhere.
BigId = BigInteger().with_variant(Integer(), "sqlite")
JsonDoc = JSON().with_variant(JSONB(), "postgresql")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class InboxStatus(StrEnum):
    PENDING = "pending"
    PROCESSED = "processed"
    FAILED = "failed"


class InboxItem(Base):
    """A webhook exactly as it arrived. Unique per (source, event id): redeliveries stop here."""

    __tablename__ = "inbox"
    __table_args__ = (
        UniqueConstraint("source", "event_id"),
        # The sweeper looks for pending rows whose last enqueue is old.
        Index("ix_inbox_status_enqueued_at", "status", "enqueued_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    source: Mapped[str] = mapped_column(String(32))
    event_id: Mapped[str] = mapped_column(String(255))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    body: Mapped[str] = mapped_column(Text)
    body_sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=InboxStatus.PENDING)
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    enqueue_count: Mapped[int] = mapped_column(Integer, default=0)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    error: Mapped[str | None] = mapped_column(Text)


class Event(Base):
    """The canonical, validated form of one inbox row (at most one per row)."""

    __tablename__ = "events"
    __table_args__ = (
        # A contact's events by type and time: cancel_on lookups, and an experiment's
        # conversions (a later deal.closed of the same contact).
        Index("ix_events_contact_email_type_occurred_at", "contact_email", "type", "occurred_at"),
        Index("ix_events_deal_id", "deal_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    inbox_id: Mapped[int] = mapped_column(ForeignKey("inbox.id"), unique=True)
    source: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    contact_email: Mapped[str | None] = mapped_column(String(320))
    contact_id: Mapped[str | None] = mapped_column(String(255))
    deal_id: Mapped[str | None] = mapped_column(String(255))
    payload: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # What each rule listening to this event decided, in rule order, written at ingest:
    # [{"rule", "outcome", "reason", "letter_id"}]. None for events from before 0005.
    decisions: Mapped[list[dict[str, Any]] | None] = mapped_column(JsonDoc)


class LetterStatus(StrEnum):
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    UNKNOWN = "unknown"
    CANCELLED = "cancelled"
    SUPPRESSED = "suppressed"
    # An experiment's holdout: planned like any letter (its due_at is when it would have
    # gone, the clock its conversions are measured on) and never sent by any path.
    HELD_OUT = "held_out"


# Planned and not yet handed to a sender: what cancelling, suppressing and rescheduling act
# on. (`sending` is not pending: a worker holds it, and only its outcome may move it.)
PENDING_LETTER_STATUSES = (LetterStatus.SCHEDULED, LetterStatus.QUEUED)


class Letter(Base):
    """One thank-you letter for one event and rule. `due_at` is the only timer (no ETA tasks)."""

    __tablename__ = "letters"
    __table_args__ = (
        UniqueConstraint("event_id", "rule"),
        # The scheduler tick reads "scheduled and due": cost follows due rows, not pending ones.
        Index("ix_letters_status_due_at", "status", "due_at"),
        Index("ix_letters_contact_email", "contact_email"),
        Index("ix_letters_deal_id", "deal_id"),
        Index("ix_letters_experiment_arm", "experiment", "arm"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id"))
    rule: Mapped[str] = mapped_column(String(128))
    letter: Mapped[str] = mapped_column(String(128))
    locale: Mapped[str] = mapped_column(String(35))
    contact_email: Mapped[str] = mapped_column(String(320))
    contact_id: Mapped[str | None] = mapped_column(String(255))
    deal_id: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default=LetterStatus.SCHEDULED)
    status_reason: Mapped[str | None] = mapped_column(Text)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Fixed before the first attempt and reused by retries and replays.
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # What was last rendered (subject, text, html): shown by `letters show`, and sent
    # again as is by `letters replay --reuse-rendered`.
    rendered: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc)
    reuse_rendered: Mapped[bool] = mapped_column(Boolean, default=False)
    # The due time first planned; send-now, replay and reschedule move only due_at.
    # None only for rows written by code that does not set it yet (0006 backfilled the rest).
    planned_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Enqueues since the letter was last claimed (a claim sets 1): the queued-letter
    # sweeper backs off by it.
    enqueue_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Tracking hits past the per-letter cap are counted, not stored one row each.
    extra_opens: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    extra_clicks: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The experiment the letter was planned under and its arm (a variant's name or
    # `holdout`); both None outside experiments. A closed experiment's later letters keep
    # the winner's arm (its variant shapes them) and no experiment.
    experiment: Mapped[str | None] = mapped_column(String(128))
    arm: Mapped[str | None] = mapped_column(String(64))


class ExperimentAssignment(Base):
    """Which arm a contact is in, fixed the first time the contact meets the experiment:
    later events, restarts and changed weights keep it (see worker/experiments)."""

    __tablename__ = "experiment_assignments"
    __table_args__ = (UniqueConstraint("experiment", "contact_email"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    experiment: Mapped[str] = mapped_column(String(128))
    contact_email: Mapped[str] = mapped_column(String(320))
    arm: Mapped[str] = mapped_column(String(64))
    assigned_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Attempt(Base):
    """One try at delivering a letter, with what happened."""

    __tablename__ = "attempts"
    __table_args__ = (Index("ix_attempts_letter_id", "letter_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    letter_id: Mapped[int] = mapped_column(ForeignKey("letters.id"))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    outcome: Mapped[str] = mapped_column(String(16))  # sent | transient | permanent | unknown
    error_class: Mapped[str | None] = mapped_column(String(64))
    smtp_code: Mapped[int | None] = mapped_column(Integer)
    error_text: Mapped[str | None] = mapped_column(Text)


class Suppression(Base):
    """An address that must get no letters (unsubscribed). Checked when a letter is
    planned and again when it is sent."""

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)  # lowercased
    reason: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    event_id: Mapped[int | None] = mapped_column(ForeignKey("events.id"))


class Open(Base):
    """Every load of a letter's open pixel, classified (most opens are machines today)."""

    __tablename__ = "opens"
    __table_args__ = (Index("ix_opens_letter_id", "letter_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    letter_id: Mapped[int] = mapped_column(ForeignKey("letters.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    method: Mapped[str] = mapped_column(String(8))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    ip: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(8))  # human | machine
    reason: Mapped[str | None] = mapped_column(String(128))


class Click(Base):
    __tablename__ = "clicks"
    __table_args__ = (Index("ix_clicks_letter_id", "letter_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    letter_id: Mapped[int] = mapped_column(ForeignKey("letters.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    url: Mapped[str] = mapped_column(Text)
    user_agent: Mapped[str | None] = mapped_column(String(512))
    ip: Mapped[str | None] = mapped_column(String(64))


class ActivityStatus(StrEnum):
    PENDING = "pending"
    DELIVERING = "delivering"
    DELIVERED = "delivered"
    FAILED = "failed"


class CrmActivity(Base):
    """What the CRM must learn, written in the same transaction as the change that caused
    it and delivered afterwards, however long the CRM is down (transactional outbox)."""

    __tablename__ = "crm_activities"
    __table_args__ = (Index("ix_crm_activities_status_next", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    letter_id: Mapped[int | None] = mapped_column(ForeignKey("letters.id"))
    kind: Mapped[str] = mapped_column(String(32))
    # Sent as Idempotency-Key and webhook-id: a redelivery never makes a second CRM entry.
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JsonDoc)
    status: Mapped[str] = mapped_column(String(16), default=ActivityStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AuditEntry(Base):
    """Who did what to which letter or address, when and why (replay, cancel, send-now,
    suppressing and lifting a suppression)."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_letter_id", "letter_id"),
        Index("ix_audit_log_email", "email"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(32))
    letter_id: Mapped[int | None] = mapped_column(ForeignKey("letters.id"))
    email: Mapped[str | None] = mapped_column(String(320))  # for entries about an address
    reason: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JsonDoc)


class CrmSync(Base):
    """Reconciliation's state per natively connected CRM: how far it has looked, and when
    the scheduler next runs it (claimed by conditional update: one run at a time)."""

    __tablename__ = "crm_sync"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    source: Mapped[str] = mapped_column(String(32), unique=True)
    # Deals won before this were looked at (minus the settle time, see worker.crm.reconcile).
    reconciled_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    next_run_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_report: Mapped[dict[str, Any] | None] = mapped_column(JsonDoc)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
