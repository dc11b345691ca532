"""The links of account mails, read from the mails table: their tokens, and a
password reset asked for and delivered."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

from careforall.db import Database
from careforall.services import recovery
from careforall.services.unit_of_work import UnitOfWork
from careforall.settings import Settings
from tests.helpers.mails import all_mails
from tests.helpers.outbox import deliver

PATHS = {"password_reset": "/reset-password", "email_verification": "/verify-email"}


def token_in(text: str, path: str) -> str:
    """The token of the one link to `path` in a mail's text."""
    [url] = re.findall(r"https?://\S+\?token=\S+", text)
    parsed = urlparse(url)
    assert parsed.path == path
    [token] = parse_qs(parsed.query)["token"]
    return token


def link_token(db: Database, kind: str, address: str | None = None) -> str:
    """The token of the newest mail of `kind` (to `address`, if given)."""
    [*_, mail] = [
        m for m in all_mails(db) if m.kind == kind and address in (None, m.to_address)
    ]
    return token_in(mail.text, PATHS[kind])


def ask_reset(db: Database, settings: Settings, email: str) -> str:
    """Ask for a reset of `email`, deliver the outbox; the newest link's token."""
    assert recovery.request_password_reset(UnitOfWork(db), email=email) is True
    deliver(db, settings)
    return link_token(db, "password_reset")
