"""what each rule decided per event; audit entries about an address, not only a letter

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_DOC = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    # One entry per rule that listened to the event: planned, skipped (and why), cancelled…
    # NULL for events ingested before this revision: they were not recorded.
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("decisions", JSON_DOC, nullable=True))
    # Suppressions are audited too; such an entry names an address and no letter.
    with op.batch_alter_table("audit_log") as batch:
        batch.alter_column("letter_id", existing_type=sa.Integer(), nullable=True)
        batch.add_column(sa.Column("email", sa.String(320), nullable=True))
    op.create_index("ix_audit_log_email", "audit_log", ["email"])


def downgrade() -> None:
    op.drop_index("ix_audit_log_email", table_name="audit_log")
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("email")
        batch.alter_column("letter_id", existing_type=sa.Integer(), nullable=False)
    with op.batch_alter_table("events") as batch:
        batch.drop_column("decisions")
