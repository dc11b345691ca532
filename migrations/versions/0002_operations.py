"""operations: audit log of admin actions, log of webhook requests

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 08:05:27.001947
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column(
            "actor_user_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True
        ),
        sa.Column(
            "action", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False
        ),
        sa.Column(
            "target_type", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False
        ),
        sa.Column(
            "target_id", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False
        ),
        sa.Column("detail", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "webhook_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("received_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column(
            "event_id", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=True
        ),
        sa.Column("type", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=True),
        sa.Column(
            "pledge_id", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True
        ),
        sa.Column(
            "outcome", sqlmodel.sql.sqltypes.AutoString(length=30), nullable=False
        ),
        sa.Column(
            "reason", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True
        ),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("webhook_log", schema=None) as batch_op:
        batch_op.create_index("ix_webhook_log_outcome", ["outcome", "id"], unique=False)
        batch_op.create_index("ix_webhook_log_received", ["received_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("webhook_log", schema=None) as batch_op:
        batch_op.drop_index("ix_webhook_log_received")
        batch_op.drop_index("ix_webhook_log_outcome")

    op.drop_table("webhook_log")
    op.drop_table("audit_log")
