"""Access tokens: signed JWTs naming a user or an anonymous session, with the
token version of that user or session when the token was issued."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache

import jwt

from careforall.domain.clock import utcnow
from careforall.domain.errors import Unauthenticated
from careforall.domain.rules import Principal
from careforall.domain.states import Role

ALGORITHM = "HS256"
# An anonymous token used after this long is renewed (see `renewed_token`): a
# guest who comes back within the token's lifetime keeps the session.
RENEW_ANONYMOUS_AFTER = timedelta(days=1)


@dataclass(frozen=True)
class TokenKeys:
    secret: str
    user_ttl: timedelta
    anonymous_ttl: timedelta


@dataclass(frozen=True)
class TokenClaims:
    principal: Principal
    # The user's or session's token version when issued; a token whose version
    # is not the current one has been ended (logout, a password change).
    version: int
    issued_at: float
    expires_at: float


def issue_token(keys: TokenKeys, principal: Principal, version: int = 0) -> str:
    now = utcnow()
    ttl = keys.user_ttl if principal.is_user else keys.anonymous_ttl
    claims = {
        "sub": principal.id,
        "kind": principal.kind,
        "role": principal.role.value,
        "ver": version,
        "iat": int(now.timestamp()),
        "exp": int((now + ttl).timestamp()),
    }
    return jwt.encode(claims, keys.secret, algorithm=ALGORITHM)


def read_token(keys: TokenKeys, token: str) -> TokenClaims:
    """What a token says; any doubt about it is UNAUTHENTICATED. Whether its
    version is still current is for `auth.authenticate` to say."""
    claims = _verified(keys.secret, token)
    if claims.expires_at <= time.time():
        raise Unauthenticated("Your session has expired; sign in again.")
    return claims


def principal_from_token(keys: TokenKeys, token: str) -> Principal:
    return read_token(keys, token).principal


# Where a renewed anonymous token is sent back; clients keep it in place of
# the one they sent.
RENEWED_TOKEN_HEADER = "X-Renewed-Token"


def renewed_token(keys: TokenKeys, claims: TokenClaims) -> str | None:
    """A fresh token for an anonymous session whose token was issued more than
    a day ago (it was just used, so the session is alive); None otherwise.
    User tokens are not renewed: their owner signs in again."""
    if claims.principal.is_user:
        return None
    if time.time() - claims.issued_at < RENEW_ANONYMOUS_AFTER.total_seconds():
        return None
    return issue_token(keys, claims.principal, claims.version)


_INVALID = "The access token is not valid; sign in again."


# Checking a token's signature and claims is about 25 µs, and a client sends
# the same token with every request. A token that passed once is remembered
# with its expiry, which is checked again at every use; a refused one is not
# remembered. Keyed by the secret too, so another secret never matches.
@lru_cache(maxsize=4096)
def _verified(secret: str, token: str) -> TokenClaims:
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
        raise Unauthenticated(_INVALID) from None
    kind, sub, role = claims.get("kind"), claims.get("sub"), claims.get("role")
    if kind not in ("user", "anon") or not isinstance(sub, str):
        raise Unauthenticated(_INVALID)
    try:
        parsed_role = Role(str(role)) if kind == "user" else Role.DONOR
    except ValueError:
        raise Unauthenticated(_INVALID) from None
    # Tokens issued before versions existed count as version 0, which the
    # first logout or password change ends.
    version = claims.get("ver", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise Unauthenticated(_INVALID)
    issued_at = claims.get("iat", 0)
    return TokenClaims(
        principal=Principal(kind=kind, id=sub, role=parsed_role),
        version=version,
        issued_at=float(issued_at) if isinstance(issued_at, int | float) else 0.0,
        expires_at=float(claims["exp"]),
    )


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer …` header, if it has one."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
