"""addresses are stored lower-case, so lookups compare the indexed column itself

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23

Intake now lower-cases addresses once (worker.events.normalise_address) and queries compare
`column = value` instead of `lower(column) = value`, which no index serves. Rows written
before keep their case; this brings them in line. Suppressions are unique per address: of
two rows that differ only by case, the earliest stays.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("UPDATE events SET contact_email = lower(contact_email)")
    op.execute("UPDATE letters SET contact_email = lower(contact_email)")
    op.execute("UPDATE audit_log SET email = lower(email) WHERE email IS NOT NULL")
    # Keep the earliest of rows that become equal, then lower-case the rest.
    op.execute(
        "DELETE FROM suppressions WHERE EXISTS (SELECT 1 FROM suppressions AS earlier "
        "WHERE lower(earlier.email) = lower(suppressions.email) "
        "AND (earlier.created_at < suppressions.created_at "
        "OR (earlier.created_at = suppressions.created_at AND earlier.id < suppressions.id)))"
    )
    op.execute("UPDATE suppressions SET email = lower(email) WHERE email <> lower(email)")


def downgrade() -> None:
    pass  # the original case is not kept; lower-case addresses work with the old code too
