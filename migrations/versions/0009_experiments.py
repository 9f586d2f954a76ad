"""experiments: each letter's experiment and arm, contacts' arms, and a conversion index

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("letters") as batch:
        batch.add_column(sa.Column("experiment", sa.String(128), nullable=True))
        batch.add_column(sa.Column("arm", sa.String(64), nullable=True))
        batch.create_index("ix_letters_experiment_arm", ["experiment", "arm"])
    op.create_table(
        "experiment_assignments",
        sa.Column("id", ID, nullable=False),
        sa.Column("experiment", sa.String(128), nullable=False),
        sa.Column("contact_email", sa.String(320), nullable=False),
        sa.Column("arm", sa.String(64), nullable=False),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_experiment_assignments")),
        sa.UniqueConstraint(
            "experiment",
            "contact_email",
            name=op.f("uq_experiment_assignments_experiment_contact_email"),
        ),
    )
    # Conversions are "a later deal.closed of the same contact": one index probe per letter.
    # It also serves everything the single-column index did, so that one goes.
    op.create_index(
        "ix_events_contact_email_type_occurred_at",
        "events",
        ["contact_email", "type", "occurred_at"],
    )
    op.drop_index("ix_events_contact_email", table_name="events")


def downgrade() -> None:
    op.create_index("ix_events_contact_email", "events", ["contact_email"])
    op.drop_index("ix_events_contact_email_type_occurred_at", table_name="events")
    op.drop_table("experiment_assignments")
    with op.batch_alter_table("letters") as batch:
        batch.drop_index("ix_letters_experiment_arm")
        batch.drop_column("arm")
        batch.drop_column("experiment")
