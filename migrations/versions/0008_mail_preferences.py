"""mail preferences: each user's choice of optional mails, the unsubscribe
link a mail carries, and the donations waiting for an organiser's digest

Revision ID: 0008
Revises: 0006
Create Date: 2026-12-07 12:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0008"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mail_preferences",
        sa.Column(
            "user_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False
        ),
        sa.Column("donation_digest", sa.Boolean(), nullable=False),
        sa.Column("goal_reached", sa.Boolean(), nullable=False),
        sa.Column("campaign_updates", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id"),
    )
    op.create_table(
        "digest_entries",
        sa.Column(
            "pledge_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False
        ),
        sa.Column(
            "campaign_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False
        ),
        sa.Column("captured_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"]),
        sa.ForeignKeyConstraint(["pledge_id"], ["pledges.id"]),
        sa.PrimaryKeyConstraint("pledge_id"),
    )
    with op.batch_alter_table("digest_entries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_digest_entries_due", ["campaign_id", "captured_at"], unique=False
        )
    with op.batch_alter_table("mails", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "list_unsubscribe",
                sqlmodel.sql.sqltypes.AutoString(length=500),
                nullable=True,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("mails", schema=None) as batch_op:
        batch_op.drop_column("list_unsubscribe")
    with op.batch_alter_table("digest_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_digest_entries_due")
    op.drop_table("digest_entries")
    op.drop_table("mail_preferences")
