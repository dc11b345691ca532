"""A signed-in person's own name and address."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from careforall.domain.clock import new_id, utcnow
from careforall.domain.errors import BadUserInput, Unauthenticated
from careforall.domain.events import AccountMailRequested
from careforall.domain.rules import Principal, require_user
from careforall.models import User
from careforall.services import account_tokens
from careforall.services.auth import (
    TAKEN,
    check_name,
    refuse_taken,
    verification_requested,
)
from careforall.services.emails import email_skeleton, normalize_email
from careforall.services.unit_of_work import UnitOfWork


def update_profile(
    uow: UnitOfWork,
    *,
    principal: Principal | None,
    name: str | None = None,
    email: str | None = None,
) -> User:
    """Change only the fields given. A new address is not verified: a link
    goes to it, a notice goes to the old one, and the links mailed before
    (resets, verifications) stop working."""
    principal = require_user(principal)
    new_name = check_name(name) if name is not None else None
    new_email = normalize_email(email) if email is not None else None
    with uow:
        session = uow.session
        user = session.get(User, principal.id, with_for_update=True)
        if user is None or user.erased_at is not None:
            raise Unauthenticated("This account no longer exists; sign in again.")
        if new_name is not None:
            user.name = new_name
        old_email = user.email
        if new_email is not None and new_email != old_email:
            skeleton = email_skeleton(new_email)
            if skeleton != user.email_skeleton:
                refuse_taken(session, new_email, skeleton)
            user.email = new_email
            user.email_skeleton = skeleton
            user.email_verified = False
            account_tokens.end_unused(
                session.connection(), purpose=None, user_id=user.id, now=utcnow()
            )
            uow.emit_all(
                [
                    verification_requested(user),
                    AccountMailRequested(
                        kind="email_changed",
                        request_id=new_id("req"),
                        address=old_email,
                        user_id=user.id,
                    ),
                ]
            )
        session.add(user)
        try:
            uow.commit()
        except IntegrityError:
            raise BadUserInput(TAKEN) from None
    return user
