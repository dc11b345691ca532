"""A forgotten password: the mailed link (requested with the address alone)
and the new password set with its token."""

from __future__ import annotations

from careforall.domain.clock import new_id, utcnow
from careforall.domain.errors import Unauthenticated
from careforall.domain.events import AccountMailRequested
from careforall.domain.rules import Principal
from careforall.models import User
from careforall.services import account_tokens
from careforall.services.account_tokens import Purpose
from careforall.services.auth import AuthResult, TokenKeys, signed_in_result
from careforall.services.emails import normalize_email
from careforall.services.passwords import check_password, hash_password
from careforall.services.unit_of_work import UnitOfWork
from careforall.services.verification import attach_guest_pledges


def request_password_reset(
    uow: UnitOfWork, *, principal: Principal | None = None, email: str
) -> bool:
    """Ask for a reset link to `email`; True whether or not it has an account.

    Only the request is written here, the same for every address: finding the
    account, its token and the mail come when the event is delivered
    (`services/account_mails.py`), so the answer takes as long either way.
    """
    address = normalize_email(email)
    with uow:
        uow.emit(
            AccountMailRequested(
                kind=Purpose.PASSWORD_RESET.value,
                request_id=new_id("req"),
                address=address,
            )
        )
        uow.commit()
    return True


def reset_password(
    uow: UnitOfWork, *, keys: TokenKeys, token: str, new_password: str
) -> AuthResult:
    """Set a new password with a reset link's token (once): every earlier
    token of the user ends, the address counts as verified (its owner read the
    mail, and their guest donations with it join the account), and the answer
    holds a fresh token."""
    with uow.db.read() as session:
        account_tokens.check(session, purpose=Purpose.PASSWORD_RESET, token=token)
    check_password(new_password)
    new_hash = hash_password(new_password)
    with uow:
        session = uow.session
        found = account_tokens.take(
            session, purpose=Purpose.PASSWORD_RESET, token=token
        )
        user = session.get(User, found.user_id, with_for_update=True)
        if user is None or user.erased_at is not None:
            raise Unauthenticated("This account no longer exists.")
        user.password_hash = new_hash
        user.token_version += 1
        session.add(user)
        if found.email == user.email and not user.email_verified:
            user.email_verified = True
            attach_guest_pledges(session, user_id=user.id, email=user.email)
        # Any other reset link of the user stops working too.
        account_tokens.end_unused(
            session.connection(),
            purpose=Purpose.PASSWORD_RESET,
            user_id=user.id,
            now=utcnow(),
        )
        uow.commit()
    return signed_in_result(keys, user)
