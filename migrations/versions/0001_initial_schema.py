"""initial schema: inbox, events, letters, attempts

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the column types: a migration must not change when app code does.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)
JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "inbox",
        sa.Column("id", ID, nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("event_id", sa.String(255), nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("body_sha256", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("enqueued_at", TS, nullable=True),
        sa.Column("enqueue_count", sa.Integer(), nullable=False),
        sa.Column("processed_at", TS, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbox")),
        sa.UniqueConstraint("source", "event_id", name=op.f("uq_inbox_source_event_id")),
    )
    op.create_index("ix_inbox_status_enqueued_at", "inbox", ["status", "enqueued_at"])

    op.create_table(
        "events",
        sa.Column("id", ID, nullable=False),
        sa.Column("inbox_id", ID, nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("external_id", sa.String(255), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("occurred_at", TS, nullable=False),
        sa.Column("contact_email", sa.String(320), nullable=True),
        sa.Column("contact_id", sa.String(255), nullable=True),
        sa.Column("deal_id", sa.String(255), nullable=True),
        sa.Column("payload", JSON_DOC, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["inbox_id"], ["inbox.id"], name=op.f("fk_events_inbox_id_inbox")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sa.UniqueConstraint("inbox_id", name=op.f("uq_events_inbox_id")),
    )
    op.create_index("ix_events_contact_email", "events", ["contact_email"])
    op.create_index("ix_events_deal_id", "events", ["deal_id"])

    op.create_table(
        "letters",
        sa.Column("id", ID, nullable=False),
        sa.Column("event_id", ID, nullable=False),
        sa.Column("rule", sa.String(128), nullable=False),
        sa.Column("letter", sa.String(128), nullable=False),
        sa.Column("locale", sa.String(35), nullable=False),
        sa.Column("contact_email", sa.String(320), nullable=False),
        sa.Column("contact_id", sa.String(255), nullable=True),
        sa.Column("deal_id", sa.String(255), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("due_at", TS, nullable=False),
        sa.Column("message_id", sa.String(255), nullable=False),
        sa.Column("attempt_count", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("sent_at", TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["event_id"], ["events.id"], name=op.f("fk_letters_event_id_events")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_letters")),
        sa.UniqueConstraint("event_id", "rule", name=op.f("uq_letters_event_id_rule")),
        sa.UniqueConstraint("message_id", name=op.f("uq_letters_message_id")),
    )
    op.create_index("ix_letters_contact_email", "letters", ["contact_email"])
    op.create_index("ix_letters_deal_id", "letters", ["deal_id"])
    op.create_index("ix_letters_status_due_at", "letters", ["status", "due_at"])

    op.create_table(
        "attempts",
        sa.Column("id", ID, nullable=False),
        sa.Column("letter_id", ID, nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("error_class", sa.String(64), nullable=True),
        sa.Column("smtp_code", sa.Integer(), nullable=True),
        sa.Column("error_text", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["letter_id"], ["letters.id"], name=op.f("fk_attempts_letter_id_letters")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attempts")),
    )
    op.create_index("ix_attempts_letter_id", "attempts", ["letter_id"])


def downgrade() -> None:
    op.drop_table("attempts")
    op.drop_table("letters")
    op.drop_table("events")
    op.drop_table("inbox")
