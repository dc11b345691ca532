"""Password reset through the real outbox: the mail with its link (read from a
real SMTP server), the new password, the old tokens ended, the link working
once and for an hour only, and nothing that tells whether an address has an
account."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlmodel import select

from careforall.db import Database
from careforall.domain.clock import utcnow
from careforall.domain.errors import BadUserInput, Unauthenticated
from careforall.models import AccountToken, User
from careforall.services import account_tokens, auth, recovery
from careforall.services.account_tokens import token_hash
from careforall.services.auth import TokenKeys
from careforall.services.unit_of_work import UnitOfWork
from careforall.settings import Settings
from tests.helpers.account_mails import ask_reset, token_in
from tests.helpers.mails import all_mails, email_of, parts, send_due
from tests.helpers.outbox import deliver, deliver_everything_again
from tests.helpers.smtp import MailServer
from tests.services.conftest import PASSWORD, MakeUser, statements_sent

NEW_PASSWORD = "a brand new passphrase"


def reset_mails(db: Database) -> list[str]:
    return [m.text for m in all_mails(db) if m.kind == "password_reset"]


def test_a_reset_mail_arrives_and_its_link_sets_the_password(
    db: Database,
    mailing: Settings,
    mail_server: MailServer,
    keys: TokenKeys,
    make_user: MakeUser,
) -> None:
    donor = make_user()
    email = email_of(db, donor)
    before = auth.login(UnitOfWork(db), keys=keys, email=email, password=PASSWORD)

    recovery.request_password_reset(UnitOfWork(db), email=email.upper())
    deliver(db, mailing)
    send_due(db, mailing.smtp)  # type: ignore[arg-type]
    [message] = [
        m for m in mail_server.wait_for(1) if "password" in str(m["Subject"]).lower()
    ]
    assert message["To"] == email
    assert "List-Unsubscribe" not in message  # a security mail
    text, html = parts(message)
    token = token_in(text, "/reset-password")
    assert f"token={token}" in html
    assert text.startswith(
        "Someone asked to reset the password of your Hope & Care Foundation"
    )

    result = recovery.reset_password(
        UnitOfWork(db), keys=keys, token=token, new_password=NEW_PASSWORD
    )
    assert result.user is not None and result.user.id == donor.id
    auth.authenticate(db, keys, result.token)
    with pytest.raises(Unauthenticated):
        auth.authenticate(db, keys, before.token)  # every earlier token ended
    with pytest.raises(Unauthenticated):
        auth.login(UnitOfWork(db), keys=keys, email=email, password=PASSWORD)
    auth.login(UnitOfWork(db), keys=keys, email=email, password=NEW_PASSWORD)
    with db.read() as session:
        user = session.get(User, donor.id)
        assert user is not None and user.email_verified  # they read the mail
        # Only a hash of the token is kept.
        stored = session.exec(select(AccountToken.token_hash)).all()
    assert token not in stored and token_hash(token) in stored


def _refused(db: Database, keys: TokenKeys, token: str) -> str:
    with pytest.raises(BadUserInput) as refused:
        recovery.reset_password(
            UnitOfWork(db), keys=keys, token=token, new_password=NEW_PASSWORD
        )
    return str(refused.value)


def test_a_link_works_once_and_one_message_covers_every_refusal(
    db: Database, settings: Settings, keys: TokenKeys, make_user: MakeUser
) -> None:
    donor = make_user()
    token = ask_reset(db, settings, email_of(db, donor))
    recovery.reset_password(
        UnitOfWork(db), keys=keys, token=token, new_password=NEW_PASSWORD
    )
    used = _refused(db, keys, token)
    unknown = _refused(db, keys, "x" * 43)
    assert used == unknown
    assert "not valid" in used
    assert _refused(db, keys, "") == used
    assert _refused(db, keys, "y" * 5000) == used


def test_a_link_expires_after_an_hour(
    db: Database,
    settings: Settings,
    keys: TokenKeys,
    make_user: MakeUser,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    donor = make_user()
    email = email_of(db, donor)
    asked_from = utcnow()
    token = ask_reset(db, settings, email)
    asked_by = utcnow()  # the link was made in between, however slow that was
    late = asked_by + timedelta(hours=1, seconds=1)
    monkeypatch.setattr(account_tokens, "utcnow", lambda: late)
    message = _refused(db, keys, token)
    assert message == _refused(db, keys, "z" * 43)
    # Nothing changed: the old password still signs in.
    auth.login(UnitOfWork(db), keys=keys, email=email, password=PASSWORD)

    in_time = asked_from + timedelta(hours=1, seconds=-1)
    monkeypatch.setattr(account_tokens, "utcnow", lambda: in_time)
    recovery.reset_password(
        UnitOfWork(db), keys=keys, token=token, new_password=NEW_PASSWORD
    )


def test_a_new_request_ends_the_earlier_links(
    db: Database, settings: Settings, keys: TokenKeys, make_user: MakeUser
) -> None:
    email = email_of(db, make_user())
    first = ask_reset(db, settings, email)
    second = ask_reset(db, settings, email)
    assert first != second
    _refused(db, keys, first)
    recovery.reset_password(
        UnitOfWork(db), keys=keys, token=second, new_password=NEW_PASSWORD
    )


def test_a_weak_password_is_refused_and_the_link_still_works(
    db: Database, settings: Settings, keys: TokenKeys, make_user: MakeUser
) -> None:
    token = ask_reset(db, settings, email_of(db, make_user()))
    for weak in ("short", "password123"):
        with pytest.raises(BadUserInput):
            recovery.reset_password(
                UnitOfWork(db), keys=keys, token=token, new_password=weak
            )
    recovery.reset_password(
        UnitOfWork(db), keys=keys, token=token, new_password=NEW_PASSWORD
    )


def _normalised(statements: list[str]) -> list[str]:
    return [re.sub(r"\s+", " ", s) for s in statements]


def test_an_unknown_address_gets_true_no_mail_and_the_same_statements(
    db: Database, settings: Settings, make_user: MakeUser
) -> None:
    email = email_of(db, make_user())
    deliver(db, settings)
    with statements_sent(db) as known:
        assert recovery.request_password_reset(UnitOfWork(db), email=email)
    with statements_sent(db) as unknown:
        assert recovery.request_password_reset(
            UnitOfWork(db), email="nobody-here@example.org"
        )
    # The request runs the same statements whether or not there is an account
    # (finding it is the outbox's work, later), so it takes as long.
    assert _normalised(known) == _normalised(unknown)
    deliver(db, settings)
    assert len(reset_mails(db)) == 1
    assert all(m.to_address == email for m in all_mails(db))


def test_a_malformed_address_is_refused_and_writes_nothing(db: Database) -> None:
    with pytest.raises(BadUserInput):
        recovery.request_password_reset(UnitOfWork(db), email="not an address")


def test_a_redelivered_request_writes_one_mail(
    db: Database, settings: Settings, make_user: MakeUser
) -> None:
    email = email_of(db, make_user())
    ask_reset(db, settings, email)
    deliver_everything_again(db, settings)
    assert len(reset_mails(db)) == 1
    with db.read() as session:
        tokens = session.exec(
            select(AccountToken).where(AccountToken.purpose == "password_reset")
        ).all()
    assert len(tokens) == 1
