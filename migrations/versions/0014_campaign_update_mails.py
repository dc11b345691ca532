"""campaign updates by mail: the donor's choice on each pledge, the addresses
that unsubscribed from a campaign's updates, and the updates whose mails are
still being written; each pledge's receipt number and date, for the printable
receipt page

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 13:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # In place (ALTER TABLE ... ADD COLUMN): other tables reference pledges,
    # so SQLite must not rebuild it. Pledges made before asked for nothing.
    op.add_column(
        "pledges",
        sa.Column("campaign_updates", sa.Boolean(), nullable=False, server_default="0"),
    )
    op.add_column(
        "pledges",
        sa.Column(
            "receipt_number", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True
        ),
    )
    op.add_column(
        "pledges",
        sa.Column(
            "receipt_issued_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True
        ),
    )
    op.create_table(
        "campaign_opt_outs",
        sa.Column(
            "campaign_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False
        ),
        sa.Column(
            "address", sqlmodel.sql.sqltypes.AutoString(length=254), nullable=False
        ),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"]),
        sa.PrimaryKeyConstraint("campaign_id", "address"),
    )
    op.create_table(
        "update_mailings",
        sa.Column(
            "update_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False
        ),
        sa.Column(
            "campaign_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False
        ),
        sa.Column("after", sqlmodel.sql.sqltypes.AutoString(length=254), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("finished_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"]),
        sa.ForeignKeyConstraint(["update_id"], ["campaign_updates.id"]),
        sa.PrimaryKeyConstraint("update_id"),
    )


def downgrade() -> None:
    op.drop_table("update_mailings")
    op.drop_table("campaign_opt_outs")
    # ALTER TABLE ... DROP COLUMN (SQLite 3.35 and later), no rebuild.
    op.drop_column("pledges", "receipt_issued_at")
    op.drop_column("pledges", "receipt_number")
    op.drop_column("pledges", "campaign_updates")
