"""campaign cover images: the hash that names a campaign's image files

Revision ID: 0012
Revises: 0010
Create Date: 2026-12-07 13:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0012"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Added in place (no batch rebuild): pledges and others reference campaigns.
    op.add_column(
        "campaigns",
        sa.Column(
            "image_key", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True
        ),
    )


def downgrade() -> None:
    op.drop_column("campaigns", "image_key")
