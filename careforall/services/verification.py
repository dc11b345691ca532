"""Verified addresses: the mailed link that proves a person reads mail at their
account's address, and what that proof unlocks (the donations they gave as a
guest with that address)."""

from __future__ import annotations

from sqlalchemy import update
from sqlmodel import Session, col, select

from careforall.domain.errors import BadUserInput, Unauthenticated
from careforall.domain.rules import Principal, require_user
from careforall.models import Notification, Pledge, User
from careforall.services import account_tokens
from careforall.services.account_tokens import Purpose
from careforall.services.auth import verification_requested
from careforall.services.unit_of_work import UnitOfWork


def _account(session: Session, user_id: str, *, lock: bool = False) -> User:
    user = session.get(User, user_id, with_for_update=lock)
    if user is None or user.erased_at is not None:
        raise Unauthenticated("This account no longer exists; sign in again.")
    return user


def request_email_verification(uow: UnitOfWork, *, principal: Principal | None) -> bool:
    """Mail the caller a link to verify their address; True at once, with no
    mail, when it is verified already."""
    principal = require_user(principal)
    with uow:
        user = _account(uow.session, principal.id)
        if user.email_verified:
            return True
        uow.emit(verification_requested(user))
        uow.commit()
    return True


def verify_email(
    uow: UnitOfWork, *, principal: Principal | None = None, token: str
) -> User:
    """Mark the address of the link's account verified (the token works once,
    and only while the account still has the address it was sent to); the
    guests' pledges given with that address join the account in the same
    commit, so they appear in its donations."""
    with uow:
        session = uow.session
        found = account_tokens.take(
            session, purpose=Purpose.EMAIL_VERIFICATION, token=token
        )
        user = session.get(User, found.user_id, with_for_update=True)
        if user is None or user.erased_at is not None or user.email != found.email:
            raise BadUserInput(
                "This verification link is for an address the account no longer "
                "has; ask for a new link."
            )
        user.email_verified = True
        session.add(user)
        attach_guest_pledges(session, user_id=user.id, email=user.email)
        uow.commit()
    return user


def attach_guest_pledges(session: Session, *, user_id: str, email: str) -> int:
    """Guests' pledges given with `email` (normalised) become the account's,
    with their notifications; returns how many."""
    ids = list(
        session.exec(
            select(Pledge.id).where(
                col(Pledge.donor_email) == email,
                col(Pledge.donor_user_id).is_(None),
            )
        ).all()
    )
    if not ids:
        return 0
    session.execute(
        update(Pledge).where(col(Pledge.id).in_(ids)).values(donor_user_id=user_id)
    )
    # After the pledges (their row locks order this after a notification the
    # dispatcher is writing for them), as a claimed session's are.
    session.execute(
        update(Notification)
        .where(
            col(Notification.pledge_id).in_(ids),
            col(Notification.recipient_user_id).is_(None),
        )
        .values(recipient_user_id=user_id, recipient_session_id=None)
    )
    return len(ids)
