"""Single-use tokens of the links in account mails: made, stored as a hash,
and taken back once.

A token is 32 random bytes (URL-safe base64); only its SHA-256 is stored, so
reading the database gives nobody a working link. A token is refused alike
whether it is unknown, used or expired: the message tells an attacker
nothing about which.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import Connection, insert, update
from sqlmodel import Session

from careforall.domain.clock import to_utc, utcnow
from careforall.domain.errors import BadUserInput
from careforall.models import AccountToken, table_of


class Purpose(StrEnum):
    PASSWORD_RESET = "password_reset"
    EMAIL_VERIFICATION = "email_verification"


LIFETIMES = {
    Purpose.PASSWORD_RESET: timedelta(hours=1),
    Purpose.EMAIL_VERIFICATION: timedelta(hours=24),
}
# Where each link opens the web app (CAREFORALL_PUBLIC_URL + path + ?token=).
LINK_PATHS = {
    Purpose.PASSWORD_RESET: "/reset-password",
    Purpose.EMAIL_VERIFICATION: "/verify-email",
}
_REFUSED = {
    Purpose.PASSWORD_RESET: "This password reset link is not valid: it was used "
    "already, has expired, or was replaced by a newer one. Ask for a new link.",
    Purpose.EMAIL_VERIFICATION: "This verification link is not valid: it was "
    "used already, has expired, or was replaced by a newer one. Ask for a new "
    "link.",
}

_TOKENS = table_of(AccountToken)
_INSERT = insert(_TOKENS)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def link(public_url: str, purpose: Purpose, token: str) -> str:
    return f"{public_url.rstrip('/')}{LINK_PATHS[purpose]}?token={token}"


def issue(
    conn: Connection, *, purpose: Purpose, user_id: str, email: str, now: datetime
) -> str:
    """A new token for the user, in the caller's transaction; the user's
    earlier unused tokens of the same purpose stop working (only the newest
    link in their mailbox opens)."""
    end_unused(conn, purpose=purpose, user_id=user_id, now=now)
    token = secrets.token_urlsafe(32)
    conn.execute(
        _INSERT,
        {
            "token_hash": token_hash(token),
            "purpose": purpose.value,
            "user_id": user_id,
            "email": email,
            "created_at": now,
            "expires_at": now + LIFETIMES[purpose],
            "used_at": None,
        },
    )
    return token


def end_unused(
    conn: Connection, *, purpose: Purpose | None, user_id: str, now: datetime
) -> None:
    """Mark the user's unused tokens (of `purpose`, or all) as used."""
    statement = update(_TOKENS).where(
        _TOKENS.c.user_id == user_id, _TOKENS.c.used_at.is_(None)
    )
    if purpose is not None:
        statement = statement.where(_TOKENS.c.purpose == purpose.value)
    conn.execute(statement.values(used_at=now))


def _usable(row: AccountToken | None, purpose: Purpose) -> AccountToken:
    if (
        row is None
        or row.purpose != purpose.value
        or row.used_at is not None
        or to_utc(row.expires_at) <= utcnow()
    ):
        raise BadUserInput(_REFUSED[purpose])
    return row


def _find(session: Session, token: str, *, lock: bool) -> AccountToken | None:
    if not 0 < len(token) <= 200:
        return None
    return session.get(AccountToken, token_hash(token), with_for_update=lock)


def take(session: Session, *, purpose: Purpose, token: str) -> AccountToken:
    """The token's row, locked and marked used in the caller's transaction;
    BAD_USER_INPUT, with one message, when it is unknown, used or expired."""
    row = _usable(_find(session, token, lock=True), purpose)
    row.used_at = utcnow()
    session.add(row)
    return row


def check(session: Session, *, purpose: Purpose, token: str) -> None:
    """Refuse a token `take` would refuse, without locking or using it (before
    the cost of a password hash)."""
    _usable(_find(session, token, lock=False), purpose)
