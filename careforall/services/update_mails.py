"""Campaign updates by mail, to the donors who asked for them.

A donor asks when giving ("Email me this campaign's updates",
`PledgeInput.campaignUpdates`). When the organiser posts an update, every
address with a CAPTURED pledge to the campaign that asked gets one mail: a
registered donor at the account's address unless their `campaignUpdates`
setting is off, a guest at the donorEmail given. One address gets one mail per
update however many pledges it made (the cause key names the update and the
address). Each mail's unsubscribe link stops that campaign's updates to that
address (`services/mail_preferences.py`), which a guest can use too.

Batches, not one transaction: a campaign may have 10,000 donors, and writing
(and rendering) all their mails in the dispatcher's transaction would hold
the database's write lock (SQLite's is the whole file) for seconds and make
the one event a large retry. So the outbox handler only records the update
as to be mailed (`update_mailings`, in its transaction: once per update),
and the periodic mail round (`outbox/mail_rounds.py`) writes the mails in
batches of `BATCH` addresses, each batch its own short transaction that also
moves the mailing's cursor (the last address done, addresses in order). A
process stopped between batches resumes at the cursor; a batch run twice
(two processes) writes nothing twice: the mailing row is read locked (FOR
UPDATE on PostgreSQL, SQLite's write lock) and mails insert with ON CONFLICT
DO NOTHING on their cause key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, bindparam, case, exists, func, update
from sqlalchemy import select as core_select

from careforall.db import Database, InsertUnlessPresent
from careforall.domain.clock import utcnow
from careforall.domain.events import CampaignUpdatePosted
from careforall.domain.states import PledgeStatus
from careforall.mail.templates import render
from careforall.models import (
    Campaign,
    CampaignOptOut,
    CampaignUpdate,
    Mail,
    Pledge,
    UpdateMailing,
    User,
    table_of,
)
from careforall.services.mail_preferences import (
    MailChoice,
    campaign_unsubscribe_token,
    link_key,
    unsubscribe_url,
    who_wants,
)
from careforall.services.mails import add_mails_once, mail_row, organisation
from careforall.settings import Settings

KIND = "campaign_update"
# Addresses per transaction: a few hundred mails render and insert in well
# under a second, so other writers wait little.
BATCH = 500

_MAILINGS = table_of(UpdateMailing)
_MAILS = table_of(Mail)
_PLEDGES = table_of(Pledge)
_USERS = table_of(User)
_OPT_OUTS = table_of(CampaignOptOut)
_UPDATES = table_of(CampaignUpdate)
_CAMPAIGNS = table_of(Campaign)

_RECORD = InsertUnlessPresent(_MAILINGS, "update_id")

# A registered donor's mail goes to the account's address (none once erased),
# a guest's to the donorEmail given.
_ADDRESS = case(
    (_PLEDGES.c.donor_user_id.is_(None), _PLEDGES.c.donor_email),
    (_USERS.c.erased_at.is_(None), _USERS.c.email),
    else_=None,
)
# The next batch of addresses that asked, after the cursor, in order; with the
# account behind each (if any of its pledges is a registered donor's).
_RECIPIENTS = (
    core_select(_ADDRESS.label("address"), func.max(_PLEDGES.c.donor_user_id))
    .select_from(_PLEDGES.outerjoin(_USERS, _USERS.c.id == _PLEDGES.c.donor_user_id))
    .where(
        _PLEDGES.c.campaign_id == bindparam("campaign_id"),
        _PLEDGES.c.status == PledgeStatus.CAPTURED.value,
        _PLEDGES.c.campaign_updates.is_(True),
        _ADDRESS.is_not(None),
        _ADDRESS > bindparam("after"),
        ~exists().where(
            _OPT_OUTS.c.campaign_id == _PLEDGES.c.campaign_id,
            _OPT_OUTS.c.address == _ADDRESS,
        ),
    )
    .group_by(_ADDRESS)
    .order_by(_ADDRESS)
    .limit(bindparam("limit"))
)
_DUE = core_select(_MAILINGS.c.update_id).where(_MAILINGS.c.finished_at.is_(None))
_MAILING = (
    core_select(
        _MAILINGS.c.after,
        _MAILINGS.c.finished_at,
        _UPDATES.c.campaign_id,
        _UPDATES.c.title,
        _UPDATES.c.body,
        _CAMPAIGNS.c.title.label("campaign_title"),
    )
    .select_from(
        _MAILINGS.join(_UPDATES, _UPDATES.c.id == _MAILINGS.c.update_id).join(
            _CAMPAIGNS, _CAMPAIGNS.c.id == _UPDATES.c.campaign_id
        )
    )
    .where(_MAILINGS.c.update_id == bindparam("update_id"))
    .with_for_update(of=_MAILINGS)
)
_WRITTEN = core_select(_MAILS.c.cause_key).where(
    _MAILS.c.cause_key.in_(bindparam("keys", expanding=True))
)
_MOVE = (
    update(_MAILINGS)
    .where(_MAILINGS.c.update_id == bindparam("b_update_id"))
    .values(after=bindparam("b_after"), finished_at=bindparam("b_finished_at"))
)


def update_key(update_id: str, address: str) -> str:
    """One mail per update and address (hashed: an address may be long)."""
    digest = hashlib.sha256(address.encode()).hexdigest()[:32]
    return f"{KIND}:{update_id}:{digest}"


def record_mailings(conn: Connection, events: Sequence[CampaignUpdatePosted]) -> None:
    """In the dispatcher's transaction: the updates to mail, each once."""
    if events:
        now = utcnow()
        _RECORD.run_many(
            conn,
            [
                {
                    "update_id": e.update_id,
                    "campaign_id": e.campaign_id,
                    "after": None,
                    "created_at": now,
                    "finished_at": None,
                }
                for e in events
            ],
        )


def write_due_update_mails(
    db: Database, settings: Settings, *, batch: int = BATCH
) -> int:
    """Write the mails of every update not mailed yet, one transaction per
    batch of addresses; returns how many mails were written."""
    with db.read() as session:
        due = list(session.execute(_DUE).scalars())
    written = 0
    for update_id in due:
        while True:
            count, finished = _write_batch(db, settings, update_id, batch)
            written += count
            if count:
                db.mail_queued()  # the sender starts on this batch now
            if finished:
                break
    return written


def _write_batch(
    db: Database, settings: Settings, update_id: str, batch: int
) -> tuple[int, bool]:
    """One batch of one update's mails; returns (written, whether done)."""
    with db.write_session() as session:
        conn = session.connection()
        mailing = conn.execute(_MAILING, {"update_id": update_id}).first()
        if mailing is None or mailing.finished_at is not None:
            return 0, True  # another process finished it
        found = conn.execute(
            _RECIPIENTS,
            {
                "campaign_id": mailing.campaign_id,
                "after": mailing.after or "",
                "limit": batch,
            },
        ).all()
        wanted = who_wants(
            conn, MailChoice.CAMPAIGN_UPDATES, sorted({u for _a, u in found if u})
        )
        addresses = [a for a, user in found if user is None or user in wanted]
        keys = [update_key(update_id, a) for a in addresses]
        done = set(conn.execute(_WRITTEN, {"keys": keys}).scalars()) if keys else set()
        key = link_key(conn, settings.jwt_secret)
        rows = [
            _mail(settings, key, update_id, mailing, address)
            for address in addresses
            if update_key(update_id, address) not in done
        ]
        if rows:
            add_mails_once(conn, rows)
        finished = len(found) < batch
        conn.execute(
            _MOVE,
            {
                "b_update_id": update_id,
                "b_after": found[-1][0] if found else mailing.after,
                "b_finished_at": utcnow() if finished else None,
            },
        )
        session.commit()
        return len(rows), finished


def _mail(
    settings: Settings,
    key: bytes,
    update_id: str,
    mailing: Row[*tuple[Any, ...]],
    address: str,
) -> dict[str, object]:
    now: datetime = utcnow()
    token = campaign_unsubscribe_token(key, mailing.campaign_id, address)
    link = unsubscribe_url(settings.public_url, token)
    mail = render(
        KIND,
        organisation(settings),
        unsubscribe_url=link,
        unsubscribe_choice="campaign",  # one campaign's, not an account's
        campaign_id=mailing.campaign_id,
        campaign_title=mailing.campaign_title,
        update_title=mailing.title,
        body=mailing.body,
    )
    return mail_row(
        KIND,
        update_key(update_id, address),
        address,
        mail,
        settings,
        now,
        list_unsubscribe=link,
    )
