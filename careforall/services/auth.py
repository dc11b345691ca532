"""Accounts, anonymous sessions and sign-in; tokens are in tokens.py,
password hashes in passwords.py, email addresses in emails.py."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, literal, update
from sqlalchemy import select as core_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, or_, select

from careforall.db import Database
from careforall.direct import Direct
from careforall.domain.clock import new_id
from careforall.domain.errors import BadUserInput, Unauthenticated
from careforall.domain.events import AccountMailRequested, PledgesClaimed
from careforall.domain.rules import Principal, require_principal, require_user
from careforall.domain.states import Role
from careforall.models import AnonymousSession, Pledge, User, table_of
from careforall.services import notifications
from careforall.services.emails import email_skeleton, normalize_email
from careforall.services.passwords import (
    check_password,
    dummy_verify,
    hash_password,
    needs_rehash,
    verify_password,
)

# TokenKeys, bearer_token and principal_from_token are named through this
# module by the API, the export endpoint, the runtime and the tests.
from careforall.services.tokens import TokenKeys as TokenKeys
from careforall.services.tokens import bearer_token as bearer_token
from careforall.services.tokens import issue_token, read_token
from careforall.services.tokens import principal_from_token as principal_from_token
from careforall.services.unit_of_work import UnitOfWork


@dataclass(frozen=True)
class AuthResult:
    token: str
    user: User | None
    anonymous: bool


def _ended() -> Unauthenticated:
    return Unauthenticated("This session has ended; sign in again.")


_USERS = table_of(User)
_SESSIONS = table_of(AnonymousSession)
_USER_NOW = core_select(_USERS.c.role, _USERS.c.token_version).where(
    _USERS.c.id == bindparam("id")
)
_SESSION_NOW = core_select(_SESSIONS.c.token_version).where(
    _SESSIONS.c.id == bindparam("id")
)


def new_user(
    *, email: str, name: str, password_hash: str, role: Role = Role.DONOR
) -> User:
    """A new account's row, its email already normalised (and its look-alike
    skeleton taken from it)."""
    return User(
        id=new_id("usr"),
        email=email,
        email_skeleton=email_skeleton(email),
        name=name,
        password_hash=password_hash,
        role=role.value,
    )


def authenticate(db: Database, keys: TokenKeys, token: str) -> Principal:
    """The principal behind a token, with a user's role as it is now.

    The role is read from the database rather than trusted from the token, so
    demoting an admin takes effect at once, not when the token expires; and a
    token whose version is no longer its user's or session's has been ended.
    """
    claims = read_token(keys, token)
    principal = claims.principal
    versions = db.session_versions
    if not principal.is_user:
        known = versions.get(principal.id)
        if known is not None:
            if known != claims.version:
                raise _ended()
            return principal
    read_at = versions.epoch
    # Every request with a token asks this: Core on a pooled connection, about
    # a third of an ORM session's `get`.
    with db.engine.connect() as conn:
        if principal.is_user:
            row = conn.execute(_USER_NOW, {"id": principal.id}).first()
        else:
            row = conn.execute(_SESSION_NOW, {"id": principal.id}).first()
    if row is None:
        raise Unauthenticated("This account no longer exists; sign in again.")
    if principal.is_user:
        if row.token_version != claims.version:
            raise _ended()
        return Principal(kind="user", id=principal.id, role=Role(row.role))
    versions.remember(principal.id, row.token_version, read_at=read_at)
    if row.token_version != claims.version:
        raise _ended()
    return principal


def check_credentials(email: str, password: str) -> None:
    """Refuse an email or password that an account could not have."""
    normalize_email(email)
    check_password(password)


def check_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise BadUserInput("Enter a name of 1 to 100 characters.")
    return name


def _anonymous_session_id(
    db: Database, keys: TokenKeys, anonymous_token: str | None
) -> str | None:
    if anonymous_token is None:
        return None
    try:
        principal: Principal | None = authenticate(db, keys, anonymous_token)
    except Unauthenticated:
        principal = None
    if principal is None or principal.kind != "anon":
        raise BadUserInput(
            "anonymousToken is not a valid anonymous session token; nothing was "
            "changed."
        )
    return principal.id


def _claim_session(uow: UnitOfWork, *, user_id: str, session_id: str) -> None:
    """Move an anonymous session's unclaimed pledges (and their notifications)
    to the account."""
    session = uow.session
    anon = session.get(AnonymousSession, session_id, with_for_update=True)
    if anon is None:
        return
    if anon.claimed_by_user_id not in (None, user_id):
        return  # already someone's: their pledges stay theirs
    pledge_ids = tuple(
        session.exec(
            select(Pledge.id).where(
                Pledge.donor_session_id == session_id,
                Pledge.donor_user_id == None,  # noqa: E711
            )
        ).all()
    )
    if pledge_ids:
        session.execute(
            update(Pledge)
            .where(Pledge.id.in_(pledge_ids))  # type: ignore[attr-defined]
            .values(donor_user_id=user_id)
        )
    # After the pledges: on PostgreSQL their row locks order this after any
    # notification the dispatcher is writing for them.
    notifications.move_to_user(session, session_id=session_id, user_id=user_id)
    anon.claimed_by_user_id = user_id
    session.add(anon)
    uow.emit(
        PledgesClaimed(user_id=user_id, session_id=session_id, pledge_ids=pledge_ids)
    )


TAKEN = "An account with this email already exists; sign in."
_LOOKALIKE = (
    "This email looks like the address of another account; use another address."
)


def refuse_taken(session: Session, email: str, skeleton: str) -> None:
    """Refuse an address that an account has, or one that looks like it."""
    found = session.exec(
        select(User.email).where(
            or_(col(User.email) == email, col(User.email_skeleton) == skeleton)
        )
    ).first()
    if found is not None:
        raise BadUserInput(TAKEN if found == email else _LOOKALIKE)


def verification_requested(user: User) -> AccountMailRequested:
    """The event that mails `user` a link to verify the address they have now."""
    return AccountMailRequested(
        kind="email_verification",
        request_id=new_id("req"),
        address=user.email,
        user_id=user.id,
    )


def register(
    uow: UnitOfWork,
    *,
    keys: TokenKeys,
    email: str,
    password: str,
    name: str,
    anonymous_token: str | None = None,
) -> AuthResult:
    """Create a donor account; an anonymous session's pledges come along."""
    email = normalize_email(email)
    skeleton = email_skeleton(email)
    check_password(password)
    name = check_name(name)
    session_id = _anonymous_session_id(uow.db, keys, anonymous_token)
    with uow.db.read() as session:
        refuse_taken(session, email, skeleton)  # before the cost of a hash
    password_hash = hash_password(password)
    with uow:
        refuse_taken(uow.session, email, skeleton)
        user = new_user(email=email, name=name, password_hash=password_hash)
        uow.session.add(user)
        uow.session.flush()
        if session_id is not None:
            _claim_session(uow, user_id=user.id, session_id=session_id)
        uow.emit(verification_requested(user))
        try:
            uow.commit()
        except IntegrityError:
            raise BadUserInput(TAKEN) from None
    return signed_in_result(keys, user)


def signed_in_result(keys: TokenKeys, user: User) -> AuthResult:
    """The answer of a sign-in: a fresh token of the user's current version."""
    principal = Principal(kind="user", id=user.id, role=Role(user.role))
    token = issue_token(keys, principal, user.token_version)
    return AuthResult(token=token, user=user, anonymous=False)


def login(
    uow: UnitOfWork,
    *,
    keys: TokenKeys,
    email: str,
    password: str,
    anonymous_token: str | None = None,
) -> AuthResult:
    """Check the password; an anonymous session's pledges move to the account.

    A hash made with older parameters is replaced by one of today's, now
    that the password is known.
    """
    refused = Unauthenticated("The email or password is not right.")
    given = email
    try:
        email = normalize_email(given)
    except BadUserInput:
        raise refused from None
    session_id = _anonymous_session_id(uow.db, keys, anonymous_token)
    with uow.db.read() as session:
        candidates = _accounts_named(session, given, email)
    if not candidates:
        dummy_verify(password)
        raise refused
    user = next(
        (u for u in candidates if verify_password(u.password_hash, password)), None
    )
    if user is None:
        raise refused
    rehashed = hash_password(password) if needs_rehash(user.password_hash) else None
    if session_id is not None or rehashed is not None:
        with uow:
            if rehashed is not None:
                _replace_hash(uow, user, rehashed)
            if session_id is not None:
                _claim_session(uow, user_id=user.id, session_id=session_id)
            uow.commit()
    return signed_in_result(keys, user)


def _accounts_named(session: Session, given: str, email: str) -> list[User]:
    """The account of the address as typed in lower case, then that of the
    normalised address: an account older than the normalisation whose new
    spelling was another account's kept its old one (migration 0005), and
    signs in with it."""
    spellings = dict.fromkeys([given.strip().lower(), email])
    rows = session.exec(select(User).where(col(User.email).in_(list(spellings))))
    by_email = {row.email: row for row in rows}
    return [by_email[e] for e in spellings if e in by_email]


def _replace_hash(uow: UnitOfWork, user: User, new_hash: str) -> None:
    """The same password, hashed anew; unless it changed meanwhile."""
    uow.session.execute(
        update(User)
        .where(col(User.id) == user.id, col(User.password_hash) == user.password_hash)
        .values(password_hash=new_hash)
    )
    user.password_hash = new_hash


def logout(uow: UnitOfWork, *, principal: Principal | None) -> bool:
    """End the caller's tokens: the one sent, and any other of the same user or
    anonymous session (tokens carry a version, and this raises it)."""
    principal = require_principal(principal)
    model = User if principal.is_user else AnonymousSession
    with uow:
        uow.session.execute(
            update(model)
            .where(col(model.id) == principal.id)
            .values(token_version=col(model.token_version) + 1)
        )
        uow.commit()
    if not principal.is_user:
        # After the real commit (this service never joins a group commit):
        # a read from now on sees the raised version.
        uow.db.session_versions.ended(principal.id)
    return True


def change_password(
    uow: UnitOfWork,
    *,
    keys: TokenKeys,
    principal: Principal | None,
    current_password: str,
    new_password: str,
) -> AuthResult:
    """Check the current password, set the new one and end every earlier token
    of the user; the answer holds a fresh token."""
    principal = require_user(principal)
    check_password(new_password)
    with uow.db.read() as session:
        user = session.get(User, principal.id)
    if user is None:
        raise Unauthenticated("This account no longer exists; sign in again.")
    if not verify_password(user.password_hash, current_password):
        raise BadUserInput("The current password is not right; nothing was changed.")
    new_hash = hash_password(new_password)
    with uow:
        row = uow.session.get(User, principal.id, with_for_update=True)
        if row is None:
            raise Unauthenticated("This account no longer exists; sign in again.")
        row.password_hash = new_hash
        row.token_version += 1
        uow.session.add(row)
        uow.commit()
    return signed_in_result(keys, row)


def start_anonymous_session(uow: UnitOfWork, *, keys: TokenKeys) -> AuthResult:
    with uow:
        anon = AnonymousSession(id=new_id("anon"))
        uow.session.add(anon)
        uow.commit()
    principal = Principal(kind="anon", id=anon.id)
    return AuthResult(token=issue_token(keys, principal), user=None, anonymous=True)


def users_by_id(session: Session, ids: Sequence[str]) -> dict[str, User]:
    """The users with these ids (one query for a whole response)."""
    rows = session.exec(select(User).where(col(User.id).in_(list(ids))))
    return {row.id: row for row in rows}


def get_user(session: Session, user_id: str) -> User | None:
    return session.get(User, user_id)


_USER_EXISTS = Direct(
    core_select(literal(1)).where(table_of(User).c.id == bindparam("id"))
)
_SESSION_EXISTS = Direct(
    core_select(literal(1)).where(table_of(AnonymousSession).c.id == bindparam("id"))
)


def principal_exists(conn: Connection, principal: Principal) -> bool:
    """The user or anonymous session is still there (one Core lookup: it runs
    for every pledge)."""
    query = _USER_EXISTS if principal.is_user else _SESSION_EXISTS
    return query.first(conn, {"id": principal.id}) is not None
