"""token versions and email skeletons: every token can be ended, and an
address that only looks like an account's is refused

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 09:30:00.000000
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

from careforall.services.emails import email_skeleton

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_USERS = sa.table(
    "users",
    sa.column("id", sa.String),
    sa.column("email", sa.String),
    sa.column("email_skeleton", sa.String),
)


def upgrade() -> None:
    for table in ("users", "anonymous_sessions"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column(
                    "token_version", sa.Integer(), nullable=False, server_default="0"
                )
            )
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "email_skeleton",
                sqlmodel.sql.sqltypes.AutoString(length=254),
                nullable=True,
            )
        )
    _fill_skeletons()
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.alter_column(
            "email_skeleton",
            existing_type=sqlmodel.sql.sqltypes.AutoString(length=254),
            nullable=False,
        )
        batch_op.create_unique_constraint("uq_users_email_skeleton", ["email_skeleton"])


def _fill_skeletons() -> None:
    """Each address as the server now spells it (NFKC, case folded) and its
    skeleton. Where two existing accounts look alike, the older keeps the
    skeleton and each later one gets a skeleton of its own (its id appended),
    so both go on signing in and no new look-alike can join them."""
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(_USERS.c.id, _USERS.c.email).order_by(
            sa.text("created_at"), _USERS.c.id
        )
    ).all()
    emails = {email for _, email in rows}
    seen: set[str] = set()
    for user_id, email in rows:
        spelled = unicodedata.normalize("NFKC", email).strip().casefold()
        if spelled != email and spelled in emails:
            spelled = email  # another account has that spelling already
        emails.add(spelled)
        skeleton = email_skeleton(spelled)
        if skeleton in seen:
            skeleton = f"{skeleton[: 254 - len(user_id) - 1]}#{user_id}"
        seen.add(skeleton)
        conn.execute(
            _USERS.update()
            .where(_USERS.c.id == user_id)
            .values(email=spelled, email_skeleton=skeleton)
        )


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_constraint("uq_users_email_skeleton", type_="unique")
        batch_op.drop_column("email_skeleton")
    for table in ("anonymous_sessions", "users"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("token_version")
