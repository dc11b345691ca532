"""Secrets that are not configured are generated once and kept with the data."""

from __future__ import annotations

import secrets as random_secrets

from sqlalchemy.exc import IntegrityError

from careforall.db import Database
from careforall.models import AppSecret


def kept_secret(db: Database, name: str, given: str | None) -> str:
    """`given` when configured; otherwise the stored one, made on first use."""
    if given:
        return given
    with db.read() as session:
        row = session.get(AppSecret, name)
        if row is not None:
            return row.value
    with db.write_session() as session:
        session.add(AppSecret(name=name, value=random_secrets.token_urlsafe(48)))
        try:
            session.commit()
        except IntegrityError:  # another process made it first
            session.rollback()
        row = session.get(AppSecret, name)
        assert row is not None
        return row.value
