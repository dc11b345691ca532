"""notifications: each person's feed, and the throttle that keeps admin alerts few

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 10:00:07.720572
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alert_throttle",
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
        sa.Column("last_sent_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("suppressed", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "notifications",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column(
            "recipient_user_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True
        ),
        sa.Column(
            "recipient_session_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True
        ),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=30), nullable=False),
        sa.Column(
            "title", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False
        ),
        sa.Column(
            "body", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False
        ),
        sa.Column("pledge_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("campaign_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column(
            "dedupe_key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True
        ),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("read_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"]),
        sa.ForeignKeyConstraint(["pledge_id"], ["pledges.id"]),
        sa.ForeignKeyConstraint(["recipient_session_id"], ["anonymous_sessions.id"]),
        sa.ForeignKeyConstraint(["recipient_user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dedupe_key", name="uq_notifications_dedupe_key"),
    )
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        # A recipient's feed newest first, and their unread count.
        batch_op.create_index(
            "ix_notifications_user_feed", ["recipient_user_id", "id"], unique=False
        )
        batch_op.create_index(
            "ix_notifications_user_unread",
            ["recipient_user_id", "read_at", "id"],
            unique=False,
        )
        batch_op.create_index(
            "ix_notifications_session_feed",
            ["recipient_session_id", "id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("notifications", schema=None) as batch_op:
        batch_op.drop_index("ix_notifications_session_feed")
        batch_op.drop_index("ix_notifications_user_unread")
        batch_op.drop_index("ix_notifications_user_feed")

    op.drop_table("notifications")
    op.drop_table("alert_throttle")
