"""Rate limits on the mutations that attackers repeat: password guessing (login,
register), card testing (createPledge, authorizePayment) and session farming
(startAnonymousSession). The webhook endpoint is not GraphQL and never limited."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from typing import Any

from starlette.requests import HTTPConnection

from careforall.api.context import Context
from careforall.domain.errors import RateLimited, Unauthenticated
from careforall.services.ratelimit import RateLimiter
from careforall.settings import Rate, Settings


@dataclass(frozen=True)
class Limit:
    bucket: str  # shared by the fields that guard the same thing
    by: str  # "address", "email" or "principal"
    rate: Callable[[Settings], Rate]
    what: str  # for the message: "Too many <what>"


_AUTH = (
    Limit("auth", "address", lambda s: s.rate_limit_auth_per_address, "sign-in tries"),
    Limit("auth", "email", lambda s: s.rate_limit_auth_per_email, "sign-in tries"),
)
_PLEDGE = (
    Limit(
        "pledge", "principal", lambda s: s.rate_limit_pledge_per_principal, "pledges"
    ),
    Limit("pledge", "address", lambda s: s.rate_limit_pledge_per_address, "pledges"),
)
_PAYMENT = (
    Limit(
        "payment",
        "principal",
        lambda s: s.rate_limit_payment_per_principal,
        "payment attempts",
    ),
    Limit(
        "payment",
        "address",
        lambda s: s.rate_limit_payment_per_address,
        "payment attempts",
    ),
)
# Mutation field (GraphQL name) -> the limits each call counts against.
LIMITS: dict[str, tuple[Limit, ...]] = {
    "login": _AUTH,
    "register": _AUTH,
    "startAnonymousSession": (
        Limit(
            "anonymous",
            "address",
            lambda s: s.rate_limit_anonymous_per_address,
            "new anonymous sessions",
        ),
    ),
    "createPledge": _PLEDGE,
    "authorizePayment": _PAYMENT,
}
# Campaign spam: organisers create few campaigns and change a status rarely.
LIMITS["createCampaign"] = (
    Limit(
        "campaign",
        "principal",
        lambda s: s.rate_limit_campaign_per_principal,
        "new campaigns",
    ),
    Limit(
        "campaign",
        "address",
        lambda s: s.rate_limit_campaign_per_address,
        "new campaigns",
    ),
)
LIMITS["setCampaignStatus"] = (
    Limit(
        "campaign_status",
        "principal",
        lambda s: s.rate_limit_campaign_status_per_principal,
        "campaign status changes",
    ),
)


@lru_cache(maxsize=8)
def _networks(proxies: tuple[str, ...]) -> tuple[IPv4Network | IPv6Network, ...]:
    return tuple(ip_network(proxy, strict=False) for proxy in proxies)


def _is_trusted(host: str, proxies: tuple[str, ...]) -> bool:
    try:
        address = ip_address(host)
    except ValueError:
        return False
    return any(address in network for network in _networks(proxies))


def client_address(connection: HTTPConnection, trusted_proxies: tuple[str, ...]) -> str:
    """The caller's address: the peer, or what a trusted proxy says it saw.

    X-Forwarded-For is read from the right, skipping trusted proxies, so a client
    cannot choose its address by sending the header itself.
    """
    peer = connection.client.host if connection.client else "unknown"
    if not trusted_proxies or not _is_trusted(peer, trusted_proxies):
        return peer
    hops = [
        hop.strip()
        for header in connection.headers.getlist("x-forwarded-for")
        for hop in header.split(",")
        if hop.strip()
    ]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted_proxies):
            return hop[:64]
    return hops[0][:64] if hops else peer


def _email_key(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    # Hashed: keys stay short whatever is sent, and no email sits in memory.
    return hashlib.sha256(value.strip().lower().encode()).hexdigest()[:32]


def _principal_key(context: Context) -> str | None:
    try:
        principal = context.principal
    except Unauthenticated:
        return None  # the resolver refuses the call; the address still counts
    return principal.scope if principal is not None else None


def checks_for(
    context: Context, field: str, arguments: dict[str, Any]
) -> list[tuple[str, Rate]]:
    """The buckets a call to a mutation field takes a token from."""
    settings = context.runtime.settings
    checks: list[tuple[str, Rate]] = []
    for limit in LIMITS.get(field, ()):
        if limit.by == "address":
            subject: str | None = client_address(
                context.request, settings.trusted_proxies
            )
        elif limit.by == "email":
            subject = _email_key(arguments.get("email"))
        else:
            subject = _principal_key(context)
        if subject is not None:
            checks.append(
                (f"{limit.bucket}:{limit.by}:{subject}", limit.rate(settings))
            )
    return checks


def _limiter(context: Context) -> RateLimiter:
    limiter: RateLimiter = context.request.app.state.rate_limiter
    return limiter


def check(context: Context, field: str, arguments: dict[str, Any]) -> None:
    """Refuse with RATE_LIMITED when a call to `field` is over one of its limits."""
    if not context.runtime.settings.rate_limits or field not in LIMITS:
        return
    checks: Sequence[tuple[str, Rate]] = checks_for(context, field, arguments)
    wait = _limiter(context).hit(checks)
    if wait is not None:
        what = LIMITS[field][0].what
        raise RateLimited(
            f"Too many {what}; wait {wait} seconds and try again.",
            retry_after_seconds=wait,
        )
