"""letters keep their first planned time, count their enqueues and their surplus hits

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("letters") as batch:
        # The due time first planned: send-now, replay and reschedule move due_at only.
        batch.add_column(sa.Column("planned_at", sa.DateTime(timezone=True), nullable=True))
        # How often the sweeper re-enqueued it: its back-off grows with this.
        batch.add_column(
            sa.Column("enqueue_count", sa.Integer(), nullable=False, server_default="0")
        )
        # Tracking hits beyond the per-letter cap are counted here, not stored one by one.
        batch.add_column(sa.Column("extra_opens", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("extra_clicks", sa.Integer(), nullable=False, server_default="0")
        )
    op.execute("UPDATE letters SET planned_at = due_at WHERE planned_at IS NULL")


def downgrade() -> None:
    with op.batch_alter_table("letters") as batch:
        batch.drop_column("extra_clicks")
        batch.drop_column("extra_opens")
        batch.drop_column("enqueue_count")
        batch.drop_column("planned_at")
