"""The admin account that the server's settings or `careforall create-admin`
name: created as admin, never an existing account promoted by accident."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from careforall.domain.states import Role
from careforall.models import User
from careforall.services.auth import check_name, new_user
from careforall.services.emails import email_skeleton, normalize_email
from careforall.services.passwords import (
    check_password,
    hash_password,
    verify_password,
)
from careforall.services.unit_of_work import UnitOfWork


class NotPromoted(Exception):
    """An account other than an admin has the admin's address (or one that
    looks like it): it is left as it is."""


def ensure_admin(
    uow: UnitOfWork,
    *,
    email: str,
    password: str,
    name: str = "Admin",
    promote: bool = False,
) -> User:
    """Make sure an admin with this email and password exists (idempotent).

    Only an account created as admin is admin: an existing account of that
    address that is not an admin is promoted only when `promote` says so
    (`careforall create-admin --promote`); otherwise NotPromoted is raised and
    nothing changes. Setting the password or promoting ends the account's
    earlier tokens.
    """
    email = normalize_email(email)
    check_password(password)
    name = check_name(name)
    try:
        return _ensure_admin(
            uow, email=email, password=password, name=name, promote=promote
        )
    except IntegrityError:
        # Another process (a worker starting beside this one) made it first.
        return _ensure_admin(
            uow, email=email, password=password, name=name, promote=promote
        )


def _not_promoted(email: str) -> NotPromoted:
    return NotPromoted(
        f"the account {email} exists and is not an admin; it was not "
        "promoted (`careforall create-admin --promote` does it on purpose)"
    )


def _ensure_admin(
    uow: UnitOfWork, *, email: str, password: str, name: str, promote: bool
) -> User:
    skeleton = email_skeleton(email)
    with uow.db.read() as session:
        found = session.exec(
            select(User).where(col(User.email_skeleton) == skeleton)
        ).first()
    if found is not None and found.email != email:
        raise NotPromoted(
            f"the account {found.email} has an address that looks like {email}; "
            "it was left as it is"
        )
    if found is not None and found.role != Role.ADMIN.value and not promote:
        raise _not_promoted(email)
    keep_hash = found is not None and verify_password(found.password_hash, password)
    new_hash = None if keep_hash else hash_password(password)
    with uow:
        user = (
            uow.session.get(User, found.id, with_for_update=True)
            if found is not None
            else None
        )
        if user is None:
            assert new_hash is not None
            user = new_user(
                email=email, name=name, password_hash=new_hash, role=Role.ADMIN
            )
            # The operator who creates an admin vouches for the address.
            user.email_verified = True
        elif user.role != Role.ADMIN.value and not promote:
            # Demoted between the read above and this lock: still not ours.
            raise _not_promoted(email)
        elif user.role != Role.ADMIN.value or new_hash is not None:
            user.role = Role.ADMIN.value
            if new_hash is not None:
                user.password_hash = new_hash
            user.token_version += 1
        uow.session.add(user)
        uow.commit()
    return user
