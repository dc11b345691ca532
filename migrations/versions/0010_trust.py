"""campaigns people can trust: review notes, paid-out totals, the history of
edits, organisers' updates, payouts and reports

Campaigns already there keep their status (ACTIVE stays ACTIVE): review only
holds back campaigns created from now on.

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-07 12:14:07.528805
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0010"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "campaign_edits",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column(
            "actor_user_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False
        ),
        sa.Column("at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("field", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("old_value", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("new_value", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("campaign_edits", schema=None) as batch_op:
        batch_op.create_index(
            "ix_campaign_edits_campaign", ["campaign_id", "id"], unique=False
        )

    op.create_table(
        "campaign_reports",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("campaign_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column(
            "reporter_scope",
            sqlmodel.sql.sqltypes.AutoString(length=50),
            nullable=False,
        ),
        sa.Column(
            "reporter_address",
            sqlmodel.sql.sqltypes.AutoString(length=64),
            nullable=False,
        ),
        sa.Column(
            "reason", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False
        ),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("campaign_reports", schema=None) as batch_op:
        batch_op.create_index(
            "ix_campaign_reports_address",
            ["reporter_address", "created_at"],
            unique=False,
        )
        batch_op.create_index(
            "ix_campaign_reports_campaign", ["campaign_id", "id"], unique=False
        )

    op.create_table(
        "campaign_updates",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("campaign_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column(
            "author_user_id",
            sqlmodel.sql.sqltypes.AutoString(length=40),
            nullable=False,
        ),
        sa.Column(
            "title", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False
        ),
        sa.Column("body", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("campaign_updates", schema=None) as batch_op:
        batch_op.create_index(
            "ix_campaign_updates_campaign", ["campaign_id", "id"], unique=False
        )

    op.create_table(
        "payouts",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("campaign_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("amount_cents", sa.Integer(), nullable=False),
        sa.Column(
            "currency", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False
        ),
        sa.Column(
            "recipient", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False
        ),
        sa.Column(
            "reference", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False
        ),
        sa.Column("paid_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column(
            "recorded_by_user_id",
            sqlmodel.sql.sqltypes.AutoString(length=40),
            nullable=False,
        ),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("payouts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_payouts_campaign", ["campaign_id", "id"], unique=False
        )

    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "review_note",
                sqlmodel.sql.sqltypes.AutoString(length=1000),
                nullable=True,
            )
        )
        batch_op.add_column(
            sa.Column(
                "paid_out_cents", sa.Integer(), nullable=False, server_default="0"
            )
        )


def downgrade() -> None:
    # ALTER TABLE ... DROP COLUMN (SQLite 3.35 and later): a batch rebuild would
    # drop the table, which the pledges that reference it refuse.
    op.drop_column("campaigns", "paid_out_cents")
    op.drop_column("campaigns", "review_note")

    with op.batch_alter_table("payouts", schema=None) as batch_op:
        batch_op.drop_index("ix_payouts_campaign")

    op.drop_table("payouts")
    with op.batch_alter_table("campaign_updates", schema=None) as batch_op:
        batch_op.drop_index("ix_campaign_updates_campaign")

    op.drop_table("campaign_updates")
    with op.batch_alter_table("campaign_reports", schema=None) as batch_op:
        batch_op.drop_index("ix_campaign_reports_campaign")
        batch_op.drop_index("ix_campaign_reports_address")

    op.drop_table("campaign_reports")
    with op.batch_alter_table("campaign_edits", schema=None) as batch_op:
        batch_op.drop_index("ix_campaign_edits_campaign")

    op.drop_table("campaign_edits")
