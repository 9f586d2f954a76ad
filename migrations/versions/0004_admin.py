"""stored renderings and the admin audit log

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("letters") as batch:
        batch.add_column(sa.Column("rendered", JSON_DOC, nullable=True))
        batch.add_column(
            sa.Column("reuse_rendered", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_table(
        "audit_log",
        sa.Column("id", ID, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("letter_id", ID, nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("details", JSON_DOC, nullable=False),
        sa.ForeignKeyConstraint(
            ["letter_id"], ["letters.id"], name=op.f("fk_audit_log_letter_id_letters")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index("ix_audit_log_letter_id", "audit_log", ["letter_id"])


def downgrade() -> None:
    op.drop_table("audit_log")
    with op.batch_alter_table("letters") as batch:
        batch.drop_column("reuse_rendered")
        batch.drop_column("rendered")
