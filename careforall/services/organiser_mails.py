"""The organisers' mails: the hourly digest of new donations, and the mail
when a campaign first reaches its goal. Both are optional (`mail_preferences`).

Goal reached: written by the outbox handler that sees the totals change, in
the dispatcher's transaction (after the totals handler), once per campaign:
its cause key names the campaign alone, so a redelivered capture, or the goal
reached again after a refund, writes nothing more.

Digest: the same handler notes each capture in `digest_entries`; a lifespan
task (`outbox/mail_rounds.py`) writes each campaign's digest once the hour
its donations came in is over, listing every donation noted before that hour
and not listed yet, then deletes those notes. The cause key names the
campaign and the hour the digest is written in, so a campaign gets at most
one digest an hour. Two processes (PostgreSQL): each campaign's notes are
read locked (FOR UPDATE) and the mail is inserted with ON CONFLICT DO
NOTHING, so the second process finds the notes gone or the hour's digest
written, and writes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, bindparam, delete
from sqlalchemy import select as core_select

from careforall.db import Database, InsertUnlessPresent
from careforall.domain.clock import utcnow
from careforall.domain.events import PledgeStatusChanged
from careforall.domain.money import display_money
from careforall.domain.states import PledgeStatus
from careforall.models import (
    Campaign,
    CampaignTotals,
    DigestEntry,
    Mail,
    Pledge,
    User,
    table_of,
)
from careforall.services.mail_preferences import MailChoice, who_wants
from careforall.services.mails import add_mail_once, add_mails, optional_mail_row
from careforall.settings import Settings

_ENTRIES = table_of(DigestEntry)
_MAILS = table_of(Mail)
_PLEDGES = table_of(Pledge)
_CAMPAIGNS = table_of(Campaign)
_TOTALS = table_of(CampaignTotals)
_USERS = table_of(User)

_NOTE = InsertUnlessPresent(_ENTRIES, "pledge_id")
_CAPTURED_PLEDGES = core_select(_PLEDGES.c.id, _PLEDGES.c.campaign_id).where(
    _PLEDGES.c.id.in_(bindparam("ids", expanding=True)),
    _PLEDGES.c.status == PledgeStatus.CAPTURED.value,
)
# Each campaign with its organiser and totals, as of this transaction.
_CAMPAIGN = core_select(
    _CAMPAIGNS.c.id,
    _CAMPAIGNS.c.title,
    _CAMPAIGNS.c.goal_cents,
    _CAMPAIGNS.c.currency,
    _CAMPAIGNS.c.owner_id,
    _USERS.c.email,
    _TOTALS.c.raised_cents,
).select_from(
    _CAMPAIGNS.join(_USERS, _USERS.c.id == _CAMPAIGNS.c.owner_id).outerjoin(
        _TOTALS, _TOTALS.c.campaign_id == _CAMPAIGNS.c.id
    )
)
_WRITTEN = core_select(_MAILS.c.cause_key).where(
    _MAILS.c.cause_key.in_(bindparam("keys", expanding=True))
)


def goal_key(campaign_id: str) -> str:
    return f"goal_reached:{campaign_id}"


def digest_key(campaign_id: str, hour: datetime) -> str:
    return f"digest:{campaign_id}:{hour:%Y-%m-%dT%H}"


def write_organiser_mails(
    conn: Connection, events: Sequence[PledgeStatusChanged], settings: Settings
) -> int:
    """For a batch of status changes, after the totals are settled: note the
    captures for their digests, and write the goal-reached mails due. Returns
    how many mails were written."""
    ids = [e.pledge_id for e in events if e.to_status == PledgeStatus.CAPTURED]
    if not ids:
        return 0
    captured = {
        row.id: row.campaign_id for row in conn.execute(_CAPTURED_PLEDGES, {"ids": ids})
    }
    if not captured:
        return 0
    now = utcnow()
    _NOTE.run_many(
        conn,
        [
            {"pledge_id": pid, "campaign_id": cid, "captured_at": now}
            for pid, cid in captured.items()
        ],
    )
    # What this batch's captures added to each campaign (a pledge once).
    added: dict[str, int] = {}
    for pledge_id, amount in {
        e.pledge_id: e.amount_cents for e in events if e.pledge_id in captured
    }.items():
        added[captured[pledge_id]] = added.get(captured[pledge_id], 0) + amount
    return _write_goal_mails(conn, added, settings, now)


def _write_goal_mails(
    conn: Connection, added: dict[str, int], settings: Settings, now: datetime
) -> int:
    """The goal-reached mails of the campaigns whose totals this batch took
    across their goal: reached now, and not before its captures. A campaign
    that was past its goal already (its organiser had turned the mail off
    then) is not told later, when a new gift finds it still past."""
    found = conn.execute(_CAMPAIGN.where(_CAMPAIGNS.c.id.in_(sorted(added)))).all()
    reached = [
        c
        for c in found
        if c.raised_cents is not None
        and c.raised_cents >= c.goal_cents > c.raised_cents - added[c.id]
    ]
    if not reached:
        return 0
    keys = [goal_key(c.id) for c in reached]
    written = set(conn.execute(_WRITTEN, {"keys": keys}).scalars())
    wanted = who_wants(
        conn, MailChoice.GOAL_REACHED, sorted({c.owner_id for c in reached})
    )
    rows = [
        optional_mail_row(
            conn,
            settings,
            kind="goal_reached",
            cause_key=goal_key(c.id),
            to_address=c.email,
            user_id=c.owner_id,
            choice=MailChoice.GOAL_REACHED,
            now=now,
            campaign_id=c.id,
            campaign_title=c.title,
            goal=display_money(c.goal_cents, c.currency),
            raised=display_money(c.raised_cents, c.currency),
        )
        for c in reached
        if goal_key(c.id) not in written and c.owner_id in wanted
    ]
    if rows:
        add_mails(conn, rows)
    return len(rows)


# --- the hourly digest -----------------------------------------------------------

_DUE_CAMPAIGNS = (
    core_select(_ENTRIES.c.campaign_id)
    .where(_ENTRIES.c.captured_at < bindparam("hour"))
    .distinct()
)
_DUE_ENTRIES = (
    core_select(_ENTRIES.c.pledge_id)
    .where(
        _ENTRIES.c.campaign_id == bindparam("campaign_id"),
        _ENTRIES.c.captured_at < bindparam("hour"),
    )
    .with_for_update()
)
_LISTED = (
    core_select(
        _PLEDGES.c.id,
        _PLEDGES.c.donor_name,
        _PLEDGES.c.amount_cents,
        _PLEDGES.c.currency,
        _ENTRIES.c.captured_at,
    )
    .select_from(_ENTRIES.join(_PLEDGES, _PLEDGES.c.id == _ENTRIES.c.pledge_id))
    .where(
        _ENTRIES.c.pledge_id.in_(bindparam("ids", expanding=True)),
        # One refunded before its digest is not news any more.
        _PLEDGES.c.status == PledgeStatus.CAPTURED.value,
    )
    .order_by(_ENTRIES.c.captured_at, _PLEDGES.c.id)
)
_FORGET = delete(_ENTRIES).where(
    _ENTRIES.c.pledge_id.in_(bindparam("ids", expanding=True))
)


def hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def write_due_digests(
    db: Database, settings: Settings, *, now: datetime | None = None
) -> int:
    """Write the digest of every campaign with donations noted before this
    hour; one short transaction per campaign. Returns how many were written."""
    hour = hour_of(now or utcnow())
    with db.read() as session:
        due = list(session.execute(_DUE_CAMPAIGNS, {"hour": hour}).scalars())
    written = sum(_write_digest(db, settings, campaign_id, hour) for campaign_id in due)
    if written:
        db.mail_queued()
    return written


def _write_digest(
    db: Database, settings: Settings, campaign_id: str, hour: datetime
) -> int:
    key = digest_key(campaign_id, hour)
    with db.write_session() as session:
        conn = session.connection()
        if conn.execute(_WRITTEN, {"keys": [key]}).first() is not None:
            return 0  # this hour's digest went out: the rest wait for the next
        ids = list(
            conn.execute(
                _DUE_ENTRIES, {"campaign_id": campaign_id, "hour": hour}
            ).scalars()
        )
        if not ids:
            return 0  # another process wrote it meanwhile
        listed = conn.execute(_LISTED, {"ids": ids}).all()
        campaign = conn.execute(_CAMPAIGN.where(_CAMPAIGNS.c.id == campaign_id)).one()
        written = False
        if listed and who_wants(conn, MailChoice.DONATION_DIGEST, [campaign.owner_id]):
            row = _digest_row(conn, settings, campaign, listed, key)
            if not add_mail_once(conn, row):  # another process wrote it
                session.rollback()
                return 0
            written = True
        conn.execute(_FORGET, {"ids": ids})
        session.commit()
        return int(written)


def _digest_row(
    conn: Connection,
    settings: Settings,
    c: Row[*tuple[Any, ...]],
    listed: Sequence[Row[*tuple[Any, ...]]],
    key: str,
) -> dict[str, object]:
    donations = [
        {
            "amount": display_money(p.amount_cents, p.currency),
            # As the campaign's public list shows a donor.
            "donor": p.donor_name or "Anonymous",
        }
        for p in listed
    ]
    total = sum(p.amount_cents for p in listed)
    return optional_mail_row(
        conn,
        settings,
        kind="digest",
        cause_key=key,
        to_address=c.email,
        user_id=c.owner_id,
        choice=MailChoice.DONATION_DIGEST,
        now=utcnow(),
        campaign_id=c.id,
        campaign_title=c.title,
        count=len(donations),
        total=display_money(total, c.currency),
        donations=donations,
    )
