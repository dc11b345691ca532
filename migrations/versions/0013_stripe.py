"""stripe_payments: which Stripe PaymentIntent pays which pledge;
pledges.refunded_cents: what partial refunds took back; pledges.dispute_status
and dispute_lost_cents: a donor's dispute and what losing it took back

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 12:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stripe_payments",
        sa.Column(
            "pledge_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False
        ),
        sa.Column(
            "payment_intent_id",
            sqlmodel.sql.sqltypes.AutoString(length=255),
            nullable=False,
        ),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("pledge_id"),
        sa.UniqueConstraint("payment_intent_id"),
    )
    with op.batch_alter_table("pledges", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "refunded_cents", sa.Integer(), server_default="0", nullable=False
            )
        )
        batch_op.add_column(
            sa.Column(
                "dispute_status",
                sqlmodel.sql.sqltypes.AutoString(length=30),
                nullable=True,
            )
        )
        batch_op.add_column(
            sa.Column(
                "dispute_lost_cents", sa.Integer(), server_default="0", nullable=False
            )
        )


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN in place (SQLite 3.35 and later): a batch
    # rebuild would drop pledges, which the rows that reference it refuse.
    op.drop_column("pledges", "dispute_lost_cents")
    op.drop_column("pledges", "dispute_status")
    op.drop_column("pledges", "refunded_cents")
    op.drop_table("stripe_payments")
