"""accounts: verified addresses, erased accounts, the tokens of mailed links,
and the address a guest gives for a receipt

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 12:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMNs, never a batch rebuild: on SQLite a rebuild drops the
    # table, which the rows of campaigns and pledges that reference it refuse.
    # The default is a literal for the same reason (SQLite rebuilds a table
    # for a column whose default is an expression).
    # Existing accounts never proved their address: not verified.
    op.add_column(
        "users",
        sa.Column("email_verified", sa.Boolean(), nullable=False, server_default="0"),
    )
    op.add_column(
        "users",
        sa.Column("erased_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    )
    op.add_column(
        "pledges",
        sa.Column(
            "donor_email", sqlmodel.sql.sqltypes.AutoString(length=254), nullable=True
        ),
    )
    op.create_index("ix_pledges_donor_email", "pledges", ["donor_email"])
    op.create_table(
        "account_tokens",
        sa.Column(
            "token_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False
        ),
        sa.Column(
            "purpose", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False
        ),
        sa.Column("user_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column(
            "email", sqlmodel.sql.sqltypes.AutoString(length=254), nullable=False
        ),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("expires_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("used_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    with op.batch_alter_table("account_tokens", schema=None) as batch_op:
        batch_op.create_index(
            "ix_account_tokens_user", ["user_id", "purpose"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("account_tokens", schema=None) as batch_op:
        batch_op.drop_index("ix_account_tokens_user")
    op.drop_table("account_tokens")
    # ALTER TABLE ... DROP COLUMN (SQLite 3.35 and later), for the reason above.
    op.drop_index("ix_pledges_donor_email", table_name="pledges")
    op.drop_column("pledges", "donor_email")
    op.drop_column("users", "erased_at")
    op.drop_column("users", "email_verified")
