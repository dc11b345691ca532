"""Which optional mails each user wants, and the unsubscribe links that
change one choice without signing in.

A user without a `mail_preferences` row wants every optional mail (the
defaults); a row is written on the first change. Receipts, refund and decline
notices (payment records) and security mails are not optional.

An unsubscribe link names the user and the kind of mail, signed with HMAC
under a key derived from the JWT secret: it never expires (a mail may be read
years later) but cannot be altered to name someone else or another kind.

A campaign update's link names instead the address and the campaign: the
donor asked for that campaign's updates when giving, perhaps as a guest with
no account to hold a preference, so the link stops that campaign's updates to
that address (a `campaign_opt_outs` row). A signed-in donor's account setting
`campaignUpdates` turns them all off.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets as random_secrets
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import quote

from sqlalchemy import Connection
from sqlalchemy import select as core_select
from sqlmodel import Session

from careforall.db import InsertUnlessPresent
from careforall.domain.clock import utcnow
from careforall.domain.errors import BadUserInput
from careforall.domain.rules import Principal, require_user
from careforall.models import (
    AppSecret,
    Campaign,
    CampaignOptOut,
    MailPreference,
    User,
    table_of,
)
from careforall.services.unit_of_work import UnitOfWork


class MailChoice(StrEnum):
    """An optional mail a user may turn off; the value is the column."""

    DONATION_DIGEST = "donation_digest"
    GOAL_REACHED = "goal_reached"
    CAMPAIGN_UPDATES = "campaign_updates"


# What a mail about each choice says it is, in the unsubscribe page's words.
CHOICE_WORDS = {
    MailChoice.DONATION_DIGEST: "the hourly digest of new donations",
    MailChoice.GOAL_REACHED: "the mail when a campaign reaches its goal",
    MailChoice.CAMPAIGN_UPDATES: "the mail of updates to campaigns you gave to",
}


@dataclass(frozen=True)
class Preferences:
    donation_digest: bool = True
    goal_reached: bool = True
    campaign_updates: bool = True

    @classmethod
    def of(cls, row: MailPreference | None) -> Preferences:
        if row is None:
            return cls()
        return cls(
            donation_digest=row.donation_digest,
            goal_reached=row.goal_reached,
            campaign_updates=row.campaign_updates,
        )


def mail_preferences(session: Session, *, principal: Principal | None) -> Preferences:
    """The signed-in caller's choices."""
    user = require_user(principal)
    return Preferences.of(session.get(MailPreference, user.id))


def update_mail_preferences(
    uow: UnitOfWork, *, principal: Principal | None, changes: dict[MailChoice, bool]
) -> Preferences:
    """Change the choices given (the others stay); returns them all."""
    user = require_user(principal)
    with uow:
        row = _row_for_update(uow.session, user.id)
        for choice, wanted in changes.items():
            setattr(row, choice.value, bool(wanted))
        row.updated_at = utcnow()
        uow.session.add(row)
        uow.commit()
        return Preferences.of(row)


def _row_for_update(session: Session, user_id: str) -> MailPreference:
    row = session.get(MailPreference, user_id, with_for_update=True)
    return row if row is not None else MailPreference(user_id=user_id)


# --- unsubscribe links ------------------------------------------------------------

_PURPOSE = b"careforall mail unsubscribe v1"


def unsubscribe_key(jwt_secret: str) -> bytes:
    """The links' key: derived, so a link's signature tells nothing of the
    secret that signs access tokens."""
    return hmac.new(jwt_secret.encode(), _PURPOSE, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    # Strict: stray characters are an altered link, not something to skip.
    padded = text + "=" * (-len(text) % 4)
    return base64.b64decode(padded, altchars=b"-_", validate=True)


# A campaign link's payload starts so; a user id never does (ids are "usr_…").
_CAMPAIGN_LINK = "updates:"
CAMPAIGN_WORDS = "this campaign's updates"


@dataclass(frozen=True)
class Link:
    """What an unsubscribe link turns off: an account's choice (`user_id`),
    or one campaign's updates to one address (`campaign_id`, `address`)."""

    choice: MailChoice
    user_id: str | None = None
    campaign_id: str | None = None
    address: str | None = None

    @property
    def words(self) -> str:
        return CAMPAIGN_WORDS if self.campaign_id else CHOICE_WORDS[self.choice]


def _signed(key: bytes, payload: bytes) -> str:
    mac = hmac.new(key, payload, hashlib.sha256).digest()
    return f"{_b64(payload)}.{_b64(mac)}"


def unsubscribe_token(key: bytes, user_id: str, choice: MailChoice) -> str:
    return _signed(key, f"{user_id}:{choice.value}".encode())


def campaign_unsubscribe_token(key: bytes, campaign_id: str, address: str) -> str:
    """The link of a campaign update mail: that campaign, that address."""
    return _signed(key, f"{_CAMPAIGN_LINK}{campaign_id}:{address}".encode())


def unsubscribe_url(public_url: str, token: str) -> str:
    return f"{public_url}/unsubscribe?token={quote(token, safe='')}"


def read_link(key: bytes, token: str) -> Link:
    """What a link turns off; BAD_USER_INPUT for a link altered or cut."""
    refused = BadUserInput(
        "This unsubscribe link is not valid; use the one in the mail."
    )
    payload_text, _, mac_text = token.strip().partition(".")
    try:
        payload, mac = _unb64(payload_text), _unb64(mac_text)
        text = payload.decode()
    except ValueError:  # UnicodeDecodeError too
        raise refused from None
    expected = hmac.new(key, payload, hashlib.sha256).digest()
    if not payload or not hmac.compare_digest(mac, expected):
        raise refused
    if text.startswith(_CAMPAIGN_LINK):
        campaign_id, _, address = text.removeprefix(_CAMPAIGN_LINK).partition(":")
        return Link(
            MailChoice.CAMPAIGN_UPDATES, campaign_id=campaign_id, address=address
        )
    user_id, _, choice = text.rpartition(":")
    try:
        return Link(MailChoice(choice), user_id=user_id)
    except ValueError:
        raise refused from None


def read_unsubscribe_token(key: bytes, token: str) -> tuple[str | None, MailChoice]:
    """The user and choice an account's link names (no user: a campaign's)."""
    link = read_link(key, token)
    return link.user_id, link.choice


def unsubscribe(uow: UnitOfWork, *, key: bytes, token: str) -> Link:
    """Turn off the mail a link names; the same answer when it was off already
    or the account or campaign is gone (nothing left to send)."""
    link = read_link(key, token)
    with uow:
        if link.campaign_id is not None and link.address is not None:
            _opt_out(uow, link.campaign_id, link.address)
            return link
        assert link.user_id is not None
        if uow.session.get(User, link.user_id) is None:
            return link
        row = _row_for_update(uow.session, link.user_id)
        if getattr(row, link.choice.value):
            setattr(row, link.choice.value, False)
            row.updated_at = utcnow()
            uow.session.add(row)
            uow.commit()
    return link


def _opt_out(uow: UnitOfWork, campaign_id: str, address: str) -> None:
    session = uow.session
    if session.get(Campaign, campaign_id) is None:
        return
    conn = session.connection()
    # DO NOTHING: a second click (or two at once) finds the address out.
    _OPT_OUT.run(
        conn,
        {"campaign_id": campaign_id, "address": address, "created_at": utcnow()},
    )
    uow.commit()


# --- for the handlers that write mails ---------------------------------------------

_PREFERENCES = table_of(MailPreference)
_OPT_OUTS = table_of(CampaignOptOut)
_OPT_OUT = InsertUnlessPresent(_OPT_OUTS, "campaign_id", "address")
_SECRETS = table_of(AppSecret)
_SECRET = core_select(_SECRETS.c.value).where(_SECRETS.c.name == "jwt_secret")
_MAKE_SECRET = InsertUnlessPresent(_SECRETS, "name")


def link_key(conn: Connection, jwt_secret: str | None) -> bytes:
    """The links' key, in a handler's transaction: from the configured JWT
    secret, else the one kept with the data (made now if the server has not
    made it yet, as `services.secrets.kept_secret` would)."""
    if jwt_secret:
        return unsubscribe_key(jwt_secret)
    kept = conn.execute(_SECRET).scalar()
    if kept is None:
        _MAKE_SECRET.run(
            conn,
            {"name": "jwt_secret", "value": random_secrets.token_urlsafe(48)},
        )
        kept = conn.execute(_SECRET).scalar_one()
    return unsubscribe_key(str(kept))


def who_wants(conn: Connection, choice: MailChoice, user_ids: list[str]) -> set[str]:
    """Those of `user_ids` who want mails of `choice` (no row: they do)."""
    if not user_ids:
        return set()
    column = _PREFERENCES.c[choice.value]
    off = conn.execute(
        core_select(_PREFERENCES.c.user_id).where(
            _PREFERENCES.c.user_id.in_(user_ids), column.is_(False)
        )
    ).scalars()
    return set(user_ids) - set(off)
