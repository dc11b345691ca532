"""Accounts, anonymous sessions, passwords and tokens."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import bindparam, literal, update
from sqlalchemy import select as core_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from careforall.db import Database
from careforall.direct import Direct
from careforall.domain.clock import new_id, utcnow
from careforall.domain.errors import BadUserInput, Unauthenticated
from careforall.domain.events import PledgesClaimed
from careforall.domain.rules import Principal
from careforall.domain.states import Role
from careforall.models import AnonymousSession, Pledge, User, table_of
from careforall.services import notifications
from careforall.services.unit_of_work import UnitOfWork

ALGORITHM = "HS256"
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
_HASHER = PasswordHasher()
# Verified against when an email is unknown, so both failures take as long.
_DUMMY_HASH = _HASHER.hash("not a real password")


@dataclass(frozen=True)
class TokenKeys:
    secret: str
    user_ttl: timedelta
    anonymous_ttl: timedelta


@dataclass(frozen=True)
class AuthResult:
    token: str
    user: User | None
    anonymous: bool


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def issue_token(keys: TokenKeys, principal: Principal) -> str:
    now = utcnow()
    ttl = keys.user_ttl if principal.is_user else keys.anonymous_ttl
    claims = {
        "sub": principal.id,
        "kind": principal.kind,
        "role": principal.role.value,
        "iat": int(now.timestamp()),
        "exp": int((now + ttl).timestamp()),
    }
    return jwt.encode(claims, keys.secret, algorithm=ALGORITHM)


def principal_from_token(keys: TokenKeys, token: str) -> Principal:
    """The principal a token names; any doubt about it is UNAUTHENTICATED."""
    principal, expires_at = _verified(keys.secret, token)
    if expires_at <= time.time():
        raise Unauthenticated("Your session has expired; sign in again.")
    return principal


# Checking a token's signature and claims is about 25 µs, and a client sends
# the same token with every request. A token that passed once is remembered
# with its expiry, which is checked again at every use; a refused one is not
# remembered. Keyed by the secret too, so another secret never matches.
@lru_cache(maxsize=4096)
def _verified(secret: str, token: str) -> tuple[Principal, float]:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],  # pinned: "none" and other algorithms fail
            options={"require": ["exp", "sub"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("Your session has expired; sign in again.") from None
    except jwt.PyJWTError:
        raise Unauthenticated("The access token is not valid; sign in again.") from None
    kind, sub, role = claims.get("kind"), claims.get("sub"), claims.get("role")
    if kind not in ("user", "anon") or not isinstance(sub, str):
        raise Unauthenticated("The access token is not valid; sign in again.")
    try:
        parsed_role = Role(str(role)) if kind == "user" else Role.DONOR
    except ValueError:
        raise Unauthenticated("The access token is not valid; sign in again.") from None
    return Principal(kind=kind, id=sub, role=parsed_role), float(claims["exp"])


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer …` header, if it has one."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def authenticate(db: Database, keys: TokenKeys, token: str) -> Principal:
    """The principal behind a token, with a user's role as it is now.

    The role is read from the database rather than trusted from the token, so
    demoting an admin takes effect at once, not when the token expires.
    """
    principal = principal_from_token(keys, token)
    if not principal.is_user:
        return principal
    with db.read() as session:
        user = session.get(User, principal.id)
    if user is None:
        raise Unauthenticated("This account no longer exists; sign in again.")
    return Principal(kind="user", id=user.id, role=Role(user.role))


def normalize_email(email: str) -> str:
    email = email.strip().lower()
    if len(email) > 254 or not _EMAIL.match(email):
        raise BadUserInput("Enter a valid email address, like name@example.org.")
    return email


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise BadUserInput(
            f"Choose a password of at least {MIN_PASSWORD_LENGTH} characters."
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise BadUserInput("That password is too long.")


def check_credentials(email: str, password: str) -> None:
    """Refuse an email or password that an account could not have."""
    normalize_email(email)
    _check_password(password)


def _check_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise BadUserInput("Enter a name of 1 to 100 characters.")
    return name


def _anonymous_session_id(keys: TokenKeys, anonymous_token: str | None) -> str | None:
    if anonymous_token is None:
        return None
    try:
        principal = principal_from_token(keys, anonymous_token)
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
    _check_password(password)
    name = _check_name(name)
    session_id = _anonymous_session_id(keys, anonymous_token)
    password_hash = hash_password(password)
    with uow:
        if uow.session.exec(select(User.id).where(User.email == email)).first():
            raise BadUserInput("An account with this email already exists; sign in.")
        user = User(
            id=new_id("usr"), email=email, name=name, password_hash=password_hash
        )
        uow.session.add(user)
        uow.session.flush()
        if session_id is not None:
            _claim_session(uow, user_id=user.id, session_id=session_id)
        try:
            uow.commit()
        except IntegrityError:
            raise BadUserInput(
                "An account with this email already exists; sign in."
            ) from None
    principal = Principal(kind="user", id=user.id, role=Role(user.role))
    return AuthResult(token=issue_token(keys, principal), user=user, anonymous=False)


def login(
    uow: UnitOfWork,
    *,
    keys: TokenKeys,
    email: str,
    password: str,
    anonymous_token: str | None = None,
) -> AuthResult:
    """Check the password; an anonymous session's pledges move to the account."""
    refused = Unauthenticated("The email or password is not right.")
    try:
        email = normalize_email(email)
    except BadUserInput:
        raise refused from None
    session_id = _anonymous_session_id(keys, anonymous_token)
    with uow.db.read() as session:
        user = session.exec(select(User).where(User.email == email)).first()
    if user is None:
        verify_password(_DUMMY_HASH, password)
        raise refused
    if not verify_password(user.password_hash, password):
        raise refused
    if session_id is not None:
        with uow:
            _claim_session(uow, user_id=user.id, session_id=session_id)
            uow.commit()
    principal = Principal(kind="user", id=user.id, role=Role(user.role))
    return AuthResult(token=issue_token(keys, principal), user=user, anonymous=False)


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


def principal_exists(session: Session, principal: Principal) -> bool:
    """The user or anonymous session is still there (one Core lookup: it runs
    for every pledge)."""
    query = _USER_EXISTS if principal.is_user else _SESSION_EXISTS
    return query.first(session.connection(), {"id": principal.id}) is not None


def ensure_admin(
    uow: UnitOfWork, *, email: str, password: str, name: str = "Admin"
) -> User:
    """Make sure an admin with this email and password exists (idempotent)."""
    email = normalize_email(email)
    _check_password(password)
    try:
        return _ensure_admin(uow, email=email, password=password, name=name)
    except IntegrityError:
        # Another process (a worker starting beside this one) made it first.
        return _ensure_admin(uow, email=email, password=password, name=name)


def _ensure_admin(uow: UnitOfWork, *, email: str, password: str, name: str) -> User:
    with uow:
        user = uow.session.exec(select(User).where(User.email == email)).first()
        if user is None:
            user = User(
                id=new_id("usr"),
                email=email,
                name=_check_name(name),
                password_hash=hash_password(password),
                role=Role.ADMIN.value,
            )
        else:
            user.role = Role.ADMIN.value
            if not verify_password(user.password_hash, password):
                user.password_hash = hash_password(password)
        uow.session.add(user)
        uow.commit()
    return user
