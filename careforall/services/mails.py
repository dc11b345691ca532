"""Mails written by outbox handlers: receipts, refund and decline notices.

`write_pledge_mails` runs inside the dispatcher's transaction (see
`outbox/handlers.py`): a mail commits together with the delivery of the event
that caused it, and its `cause_key` (kind and pledge) makes a redelivered or
replayed event write nothing the second time. Sending happens later, outside
that transaction (`outbox/mailer.py`, `services/mail_queue.py`).

Receipt numbers have no gaps: the counter row is raised, by the number of
receipts a batch writes, in the transaction that writes them, after checking
which pledges have none yet. Either both commit or neither does (a failure
rolls the handler's savepoint back, counter included). On PostgreSQL the
raise (an upsert) updates one row, which holds that row's lock until the
commit: another process raising it waits, then adds to the committed value,
so two receipts never share a number and a rolled-back one leaves no hole.
Should two processes write the same pledge's receipt at once, the unique
`cause_key` fails the second, whose savepoint (and its raise) rolls back; its
retry finds the receipt written.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, Row, bindparam, case, func, insert, update
from sqlalchemy import select as core_select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from careforall import metrics
from careforall.db import InsertUnlessPresent
from careforall.domain.clock import utcnow
from careforall.domain.events import PledgeStatusChanged
from careforall.domain.money import display_money
from careforall.domain.states import PledgeStatus
from careforall.mail.templates import Organisation, Rendered, render
from careforall.models import Campaign, Mail, MailCounter, Pledge, User, table_of
from careforall.services.mail_preferences import (
    MailChoice,
    link_key,
    unsubscribe_token,
    unsubscribe_url,
)
from careforall.settings import Settings


class MailStatus(StrEnum):
    QUEUED = "queued"  # to send at next_attempt_at
    SENT = "sent"
    DEAD = "dead"  # refused for good: an admin may send it again
    KEPT = "kept"  # no SMTP server configured: an admin reads it


# The statuses of mails not sent yet, and of those refused for good.
UNSENT = (MailStatus.QUEUED, MailStatus.KEPT, MailStatus.DEAD)


def mail_counts(session: Session) -> dict[MailStatus, int]:
    """How many mails are queued, kept and dead (through the status index;
    sent ones are not counted)."""
    rows = session.execute(
        core_select(_MAILS.c.status, func.count())
        .where(_MAILS.c.status.in_([s.value for s in UNSENT]))
        .group_by(_MAILS.c.status)
    )
    found = {str(status): int(count) for status, count in rows}
    return {status: int(found.get(status.value, 0)) for status in UNSENT}


def count_written(rows: Sequence[dict[str, object]]) -> None:
    """Count mails inserted, by kind (careforall_mails_written_total)."""
    for row in rows:
        metrics.MAILS_WRITTEN.labels(str(row["kind"])).inc()


# What a pledge's donor is told, by the status it reached.
PLEDGE_MAILS = {
    PledgeStatus.CAPTURED: "receipt",
    PledgeStatus.REFUNDED: "refund",
    PledgeStatus.FAILED: "declined",
}
RECEIPT_COUNTER = "receipt"

_MAILS = table_of(Mail)
_COUNTERS = table_of(MailCounter)
_PLEDGES = table_of(Pledge)
_CAMPAIGNS = table_of(Campaign)
_USERS = table_of(User)

# A registered donor's mail goes to the account's address, a guest's to the
# donorEmail given (if any); an erased account's donor gets none.
_ABOUT = (
    core_select(
        _PLEDGES.c.id,
        _PLEDGES.c.amount_cents,
        _PLEDGES.c.currency,
        _PLEDGES.c.failure_reason,
        _CAMPAIGNS.c.title,
        case(
            (_PLEDGES.c.donor_user_id.is_(None), _PLEDGES.c.donor_email),
            (_USERS.c.erased_at.is_(None), _USERS.c.email),
            else_=None,
        ).label("email"),
    )
    .select_from(
        _PLEDGES.join(_CAMPAIGNS, _CAMPAIGNS.c.id == _PLEDGES.c.campaign_id).outerjoin(
            _USERS, _USERS.c.id == _PLEDGES.c.donor_user_id
        )
    )
    .where(_PLEDGES.c.id.in_(bindparam("ids", expanding=True)))
)
_WRITTEN = core_select(_MAILS.c.cause_key).where(
    _MAILS.c.cause_key.in_(bindparam("keys", expanding=True))
)
_INSERT = insert(_MAILS)
_ISSUED = (
    update(_PLEDGES)
    .where(_PLEDGES.c.id == bindparam("b_id"))
    .values(receipt_number=bindparam("b_number"), receipt_issued_at=bindparam("b_at"))
)


def _counter_raise(make: Any) -> Any:
    statement = make(_COUNTERS).values(key=bindparam("key"), value=bindparam("count"))
    return statement.on_conflict_do_update(
        index_elements=[_COUNTERS.c.key],
        set_={"value": _COUNTERS.c.value + statement.excluded.value},
    ).returning(_COUNTERS.c.value)


_RAISE = {
    "sqlite": _counter_raise(sqlite_insert),
    "postgresql": _counter_raise(postgresql_insert),
}


def organisation(settings: Settings) -> Organisation:
    return Organisation(
        name=settings.org_name,
        address=settings.org_address,
        tax_id=settings.org_tax_id,
        public_url=settings.public_url,
        language=settings.mail_language,
    )


def next_numbers(conn: Connection, key: str, count: int) -> list[int]:
    """The next `count` numbers of counter `key`, raised by one statement in
    the caller's transaction (a batch's receipts cost what one does)."""
    if count == 0:
        return []
    raise_ = _RAISE[conn.dialect.name]
    last = int(conn.execute(raise_, {"key": key, "count": count}).scalar_one())
    return list(range(last - count + 1, last + 1))


def receipt_number(number: int) -> str:
    return f"R-{number:06d}"


def write_pledge_mails(
    conn: Connection, events: Sequence[PledgeStatusChanged], settings: Settings
) -> int:
    """The donors' receipts, refund and decline notices for a batch of status
    changes, each unless written before; returns how many were written."""
    causes = {
        f"{kind}:{event.pledge_id}": (kind, event.pledge_id)
        for event in events
        if (kind := PLEDGE_MAILS.get(PledgeStatus(event.to_status))) is not None
    }
    if not causes:
        return 0
    written = set(conn.execute(_WRITTEN, {"keys": list(causes)}).scalars())
    waiting = {key: cause for key, cause in causes.items() if key not in written}
    if not waiting:
        return 0
    ids = list({pledge_id for _kind, pledge_id in waiting.values()})
    about = {
        row.id: row
        for row in conn.execute(_ABOUT, {"ids": ids})
        if row.email is not None
    }
    mails = [
        (key, kind, about[pledge_id])
        for key, (kind, pledge_id) in waiting.items()
        if pledge_id in about
    ]
    # Numbered in outbox order, once it is known which receipts are written.
    receipts = [found.id for _key, kind, found in mails if kind == "receipt"]
    numbers = dict(
        zip(
            receipts,
            map(receipt_number, next_numbers(conn, RECEIPT_COUNTER, len(receipts))),
            strict=True,
        )
    )
    org = organisation(settings)
    now = utcnow()
    rows = [
        _pledge_mail(
            key,
            kind,
            found,
            org,
            settings,
            now,
            number=numbers.get(found.id) if kind == "receipt" else None,
        )
        for key, kind, found in mails
    ]
    add_mails(conn, rows)
    if numbers:
        # The number and date each receipt bears, for the receipt page.
        conn.execute(
            _ISSUED,
            [{"b_id": i, "b_number": n, "b_at": now} for i, n in numbers.items()],
        )
    return len(rows)


def _pledge_mail(
    key: str,
    kind: str,
    found: Row[*tuple[Any, ...]],
    org: Organisation,
    settings: Settings,
    now: datetime,
    *,
    number: str | None,
) -> dict[str, object]:
    values: dict[str, object] = {
        "amount": display_money(found.amount_cents, found.currency),
        "campaign_title": found.title,
        "date": f"{now.day} {now:%B %Y}",
        "pledge_id": found.id,
        "reason": found.failure_reason,
    }
    if number is not None:
        values["receipt_number"] = number
    mail = render(kind, org, **values)
    return mail_row(kind, key, found.email, mail, settings, now)


def add_mails(conn: Connection, rows: Sequence[dict[str, object]]) -> None:
    """Insert new mails' rows (see `mail_row`), counted as written."""
    if rows:
        conn.execute(_INSERT, list(rows))
        count_written(rows)


# A mail whose cause key is there already was written by another process.
_ONCE = InsertUnlessPresent(_MAILS, "cause_key")


def add_mail_once(conn: Connection, row: dict[str, object]) -> bool:
    """Insert a mail unless one of its cause is there; whether it was."""
    written = _ONCE.run(conn, row)
    if written:
        count_written([row])
    return written


def add_mails_once(conn: Connection, rows: Sequence[dict[str, object]]) -> None:
    """Insert each mail whose cause has none yet (the caller left out those
    it knows of, so each row counts as written)."""
    if rows:
        _ONCE.run_many(conn, rows)
        count_written(rows)


def mail_row(
    kind: str,
    cause_key: str,
    to_address: str,
    mail: Rendered,
    settings: Settings,
    now: datetime,
    *,
    list_unsubscribe: str | None = None,
) -> dict[str, object]:
    """One `mails` row to insert: queued, or kept while no SMTP server is set."""
    return {
        "kind": kind,
        "cause_key": cause_key,
        "to_address": to_address,
        "subject": mail.subject[:300],
        "text": mail.text,
        "html": mail.html,
        "status": MailStatus.QUEUED if settings.smtp is not None else MailStatus.KEPT,
        "attempts": 0,
        "last_error": None,
        "created_at": now,
        "next_attempt_at": now,
        "sent_at": None,
        "list_unsubscribe": list_unsubscribe,
    }


def optional_mail_row(
    conn: Connection,
    settings: Settings,
    *,
    kind: str,
    cause_key: str,
    to_address: str,
    user_id: str,
    choice: MailChoice,
    now: datetime,
    **values: Any,
) -> dict[str, object]:
    """A mail the user may turn off: its unsubscribe link in the text, the HTML
    and the List-Unsubscribe headers."""
    key = link_key(conn, settings.jwt_secret)
    link = unsubscribe_url(settings.public_url, unsubscribe_token(key, user_id, choice))
    mail = render(
        kind,
        organisation(settings),
        unsubscribe_url=link,
        unsubscribe_choice=choice.value,  # the layout says why, in its words
        **values,
    )
    return mail_row(
        kind, cause_key, to_address, mail, settings, now, list_unsubscribe=link
    )
