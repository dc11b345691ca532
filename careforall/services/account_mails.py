"""Mails about an account (password reset, address verification, the notice
that an address changed), written when their AccountMailRequested event is
delivered, in the dispatcher's transaction: the link's token and its mail
commit together, and `cause_key` (kind and request) makes a redelivered event
write nothing the second time. These are security mails: no unsubscribe link.

The request only writes the event, so asking for a reset costs the same
whether or not the address has an account; finding the account happens here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, bindparam
from sqlalchemy import select as core_select

from careforall.domain.clock import utcnow
from careforall.domain.events import AccountMailRequested, Event
from careforall.mail.templates import render
from careforall.models import Mail, User, table_of
from careforall.services import account_tokens
from careforall.services.account_tokens import Purpose
from careforall.services.mails import add_mails, mail_row, organisation
from careforall.settings import Settings

_USERS = table_of(User)
_MAILS = table_of(Mail)
_ACCOUNT = core_select(_USERS.c.id, _USERS.c.email, _USERS.c.email_verified).where(
    _USERS.c.erased_at.is_(None)
)
_BY_EMAIL = _ACCOUNT.where(_USERS.c.email == bindparam("email"))
_BY_ID = _ACCOUNT.where(_USERS.c.id == bindparam("id"))
_WRITTEN = core_select(_MAILS.c.cause_key).where(
    _MAILS.c.cause_key.in_(bindparam("keys", expanding=True))
)


def cause_key(event: AccountMailRequested) -> str:
    return f"{event.kind}:{event.request_id}"


def write_account_mails(
    conn: Connection, events: Sequence[Event], settings: Settings
) -> int:
    """The mails of a batch of requests, each unless written before; returns
    how many were written (a reset for an address without an account, or a
    verification no longer needed, writes none)."""
    requests = [e for e in events if isinstance(e, AccountMailRequested)]
    if not requests:
        return 0
    keys = [cause_key(e) for e in requests]
    written = set(conn.execute(_WRITTEN, {"keys": keys}).scalars())
    now = utcnow()
    count = 0
    for event in requests:
        key = cause_key(event)
        if key in written:
            continue
        row = _mail(conn, event, settings, now)
        if row is not None:
            add_mails(conn, [row])
            count += 1
        written.add(key)
    return count


def _mail(
    conn: Connection, event: AccountMailRequested, settings: Settings, now: datetime
) -> dict[str, object] | None:
    if event.kind == Purpose.PASSWORD_RESET:
        user = conn.execute(_BY_EMAIL, {"email": event.address}).first()
        if user is None:
            return None  # no account: nothing is sent, and nobody learns it
        values = _with_link(conn, Purpose.PASSWORD_RESET, user, settings, now)
    elif event.kind == Purpose.EMAIL_VERIFICATION:
        user = conn.execute(_BY_ID, {"id": event.user_id}).first()
        if user is None or user.email != event.address or user.email_verified:
            return None  # changed again since, or verified meanwhile
        values = _with_link(conn, Purpose.EMAIL_VERIFICATION, user, settings, now)
    elif event.kind == "email_changed":
        user = conn.execute(_BY_ID, {"id": event.user_id}).first()
        if user is None:
            return None
        values = {"new_address": user.email, "date": f"{now.day} {now:%B %Y}"}
    else:
        raise ValueError(f"unknown account mail {event.kind!r}")
    rendered = render(
        event.kind, organisation(settings), address=event.address, **values
    )
    return mail_row(
        kind=event.kind,
        cause_key=cause_key(event),
        to_address=event.address,
        mail=rendered,
        settings=settings,
        now=now,
    )


def _with_link(
    conn: Connection,
    purpose: Purpose,
    user: Row[*tuple[Any, ...]],
    settings: Settings,
    now: datetime,
) -> dict[str, object]:
    token = account_tokens.issue(
        conn, purpose=purpose, user_id=user.id, email=user.email, now=now
    )
    return {"link": account_tokens.link(settings.public_url, purpose, token)}
