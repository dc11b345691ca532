"""Deleting an account: the person is erased, their gifts stay.

The user's row stays as an empty shell (no name, address or password; every
token ended), so the pledges and campaigns that point at it keep their links:
totals, the campaigns' accounts and receipt numbers are unchanged, and a
campaign it organised stays visible under "Deleted account". Everything else
about the person goes: their words on pledges, the address a guest gift named,
notifications, the tokens of mailed links and the mails to their address.
Their recurring gifts end at once (their past charges stay), and the
customer the payment provider keeps for their saved cards (Stripe's Customer)
is deleted there, through the outbox (retried while the provider is away).
"""

from __future__ import annotations

from sqlalchemy import delete, func, update
from sqlmodel import col, select

from careforall.domain.clock import utcnow
from careforall.domain.errors import BadUserInput, Forbidden, Unauthenticated
from careforall.domain.events import PaymentCustomerErased
from careforall.domain.recurring import RecurringStatus
from careforall.domain.rules import Principal, require_user
from careforall.domain.states import Role
from careforall.models import (
    AccountToken,
    CampaignOptOut,
    Mail,
    Notification,
    Pledge,
    RecurringDonation,
    StripeCustomer,
    User,
)
from careforall.services import audit
from careforall.services.passwords import verify_password
from careforall.services.recurring_charges import stop_plan
from careforall.services.unit_of_work import UnitOfWork

ERASED_NAME = "Deleted account"


def erased_email(user_id: str) -> str:
    """A shell's address: unique, and no mailbox (`.invalid` never resolves)."""
    return f"{user_id}@erased.invalid"


def delete_account(
    uow: UnitOfWork, *, principal: Principal | None, password: str
) -> bool:
    """Erase the caller's account after checking the password; the last
    admin cannot go (nobody would be left to run the site)."""
    principal = require_user(principal)
    with uow.db.read() as session:
        found = session.get(User, principal.id)
    if found is None or found.erased_at is not None:
        raise Unauthenticated("This account no longer exists; sign in again.")
    if not verify_password(found.password_hash, password):
        raise BadUserInput("The password is not right; nothing was changed.")
    with uow:
        session = uow.session
        user = session.get(User, principal.id, with_for_update=True)
        if user is None or user.erased_at is not None:
            raise Unauthenticated("This account no longer exists; sign in again.")
        if user.role == Role.ADMIN.value and _admins(uow) <= 1:
            raise Forbidden(
                "This is the last admin account; make another admin before deleting it."
            )
        _erase(uow, user)
        audit.record(
            uow,
            actor=principal,
            action="delete_account",
            target_type="user",
            target_id=user.id,
        )
        uow.commit()
    return True


def _admins(uow: UnitOfWork) -> int:
    # Locks the admins' rows: two admins deleting themselves at once cannot
    # both see the other still there (PostgreSQL; SQLite writes one at a time).
    ids = uow.session.exec(
        select(User.id)
        .where(col(User.role) == Role.ADMIN.value, col(User.erased_at).is_(None))
        .with_for_update()
    ).all()
    return len(ids)


def _erase(uow: UnitOfWork, user: User) -> None:
    session = uow.session
    address = user.email
    user.email = user.email_skeleton = erased_email(user.id)
    user.name = ERASED_NAME
    user.password_hash = ""  # matches no password
    user.role = Role.DONOR.value
    user.email_verified = False
    user.erased_at = utcnow()
    user.token_version += 1  # every token: UNAUTHENTICATED at once
    session.add(user)
    session.execute(
        update(Pledge)
        .where(col(Pledge.donor_user_id) == user.id)
        .values(donor_name=None, donor_email=None, message=None, campaign_updates=False)
    )
    session.execute(
        delete(Notification).where(col(Notification.recipient_user_id) == user.id)
    )
    session.execute(delete(AccountToken).where(col(AccountToken.user_id) == user.id))
    session.execute(delete(Mail).where(func.lower(col(Mail.to_address)) == address))
    # The address's opt-outs from campaigns' updates: nothing is sent to it now.
    session.execute(
        delete(CampaignOptOut).where(func.lower(col(CampaignOptOut.address)) == address)
    )
    # Gifts that would still come: ended now, so organisers' counts of monthly
    # donors drop at once instead of at each plan's next due date.
    giving = select(RecurringDonation).where(
        col(RecurringDonation.donor_user_id) == user.id,
        col(RecurringDonation.status) != RecurringStatus.CANCELLED.value,
    )
    for plan in session.exec(giving.with_for_update()).all():
        stop_plan(uow, plan, RecurringStatus.CANCELLED, "account_deleted")
    # The provider's record of them and their saved cards: deleted there once
    # this commits (the outbox calls the provider, never this transaction).
    for customer in session.exec(
        select(StripeCustomer).where(col(StripeCustomer.user_id) == user.id)
    ).all():
        uow.emit(
            PaymentCustomerErased(user_id=user.id, customer_id=customer.customer_id)
        )
        session.delete(customer)
