"""opens, clicks and the CRM activity outbox

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)
JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "opens",
        sa.Column("id", ID, nullable=False),
        sa.Column("letter_id", ID, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("user_agent", sa.String(512), nullable=True),
        sa.Column("ip", sa.String(64), nullable=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("reason", sa.String(128), nullable=True),
        sa.ForeignKeyConstraint(
            ["letter_id"], ["letters.id"], name=op.f("fk_opens_letter_id_letters")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_opens")),
    )
    op.create_index("ix_opens_letter_id", "opens", ["letter_id"])
    op.create_table(
        "clicks",
        sa.Column("id", ID, nullable=False),
        sa.Column("letter_id", ID, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("user_agent", sa.String(512), nullable=True),
        sa.Column("ip", sa.String(64), nullable=True),
        sa.ForeignKeyConstraint(
            ["letter_id"], ["letters.id"], name=op.f("fk_clicks_letter_id_letters")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clicks")),
    )
    op.create_index("ix_clicks_letter_id", "clicks", ["letter_id"])
    op.create_table(
        "crm_activities",
        sa.Column("id", ID, nullable=False),
        sa.Column("letter_id", ID, nullable=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("idempotency_key", sa.String(128), nullable=False),
        sa.Column("payload", JSON_DOC, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TS, nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("delivered_at", TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["letter_id"], ["letters.id"], name=op.f("fk_crm_activities_letter_id_letters")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_activities")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_crm_activities_idempotency_key")),
    )
    op.create_index(
        "ix_crm_activities_status_next", "crm_activities", ["status", "next_attempt_at"]
    )


def downgrade() -> None:
    op.drop_table("crm_activities")
    op.drop_table("clicks")
    op.drop_table("opens")
