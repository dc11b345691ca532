"""trace context on outbox events and on the simulated provider's webhooks

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 08:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("outbox_events", "sim_webhooks"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column(
                    "trace_context",
                    sqlmodel.sql.sqltypes.AutoString(length=100),
                    nullable=True,
                )
            )


def downgrade() -> None:
    for table in ("sim_webhooks", "outbox_events"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("trace_context")
