"""recurring gifts: donors' weekly or monthly plans, and each charge's plan,
period and try on its pledge (one pledge per try of a period)

The pledge columns are added in place (no table rebuild on SQLite: other
tables reference `pledges`).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 12:56:16.083929
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "recurring_donations",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column(
            "donor_user_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False
        ),
        sa.Column(
            "campaign_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False
        ),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column(
            "currency", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False
        ),
        sa.Column(
            "interval", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False
        ),
        sa.Column(
            "status", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False
        ),
        sa.Column(
            "payment_method",
            sqlmodel.sql.sqltypes.AutoString(length=100),
            nullable=False,
        ),
        sa.Column(
            "idempotency_key",
            sqlmodel.sql.sqltypes.AutoString(length=255),
            nullable=False,
        ),
        sa.Column("started_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("period", sa.Integer(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("next_charge_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("claimed_until", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column(
            "failure_reason",
            sqlmodel.sql.sqltypes.AutoString(length=200),
            nullable=True,
        ),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
        ),
        sa.ForeignKeyConstraint(
            ["donor_user_id"],
            ["users.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "donor_user_id", "idempotency_key", name="uq_recurring_idempotency"
        ),
    )
    op.create_index(
        "ix_recurring_campaign",
        "recurring_donations",
        ["campaign_id", "status"],
        unique=False,
    )
    op.create_index(
        "ix_recurring_donor",
        "recurring_donations",
        ["donor_user_id", "id"],
        unique=False,
    )
    op.create_index(
        "ix_recurring_due",
        "recurring_donations",
        ["status", "next_charge_at"],
        unique=False,
    )

    op.add_column(
        "pledges",
        sa.Column(
            "recurring_donation_id",
            sqlmodel.sql.sqltypes.AutoString(length=40),
            nullable=True,
        ),
    )
    op.add_column("pledges", sa.Column("recurring_period", sa.Integer(), nullable=True))
    op.add_column(
        "pledges", sa.Column("recurring_attempt", sa.Integer(), nullable=True)
    )
    op.create_index(
        "uq_pledges_recurring_period",
        "pledges",
        ["recurring_donation_id", "recurring_period", "recurring_attempt"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index("uq_pledges_recurring_period", table_name="pledges")
    op.drop_column("pledges", "recurring_attempt")
    op.drop_column("pledges", "recurring_period")
    op.drop_column("pledges", "recurring_donation_id")
    op.drop_index("ix_recurring_due", table_name="recurring_donations")
    op.drop_index("ix_recurring_donor", table_name="recurring_donations")
    op.drop_index("ix_recurring_campaign", table_name="recurring_donations")

    op.drop_table("recurring_donations")
