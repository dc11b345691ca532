"""Rate limits on the mutations that attackers repeat: password guessing (login,
register, changePassword), card testing (createPledge, authorizePayment) and
session farming (startAnonymousSession). The webhook endpoint is not GraphQL
and never limited.

Wrong passwords are counted, not sign-ins: per email from one address (a
guesser there is refused), and per email from everywhere (every try on that
email is then slowed down, never refused), so nobody can lock an account's
owner out by failing on purpose.
"""

from __future__ import annotations

import asyncio
import hashlib
import unicodedata
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from typing import Any

from starlette.requests import HTTPConnection

from careforall.api.context import Context
from careforall.domain.errors import RateLimited, Unauthenticated
from careforall.services.ratelimit import Limiter
from careforall.settings import Rate, Settings

# What a try on an email with too many recent wrong passwords waits.
SLOWDOWN_SECONDS = 1.0


@dataclass(frozen=True)
class Limit:
    bucket: str  # shared by the fields that guard the same thing
    by: str  # "address", "email", "email+address" or "principal"
    rate: Callable[[Settings], Rate]
    what: str  # for the message: "Too many <what>"
    # Counts only the calls that fail (a wrong password), not every call.
    failures: bool = False
    # An empty bucket slows the call down (SLOWDOWN_SECONDS) instead of refusing it.
    slows: bool = False


_AUTH_ADDRESS = Limit(
    "auth", "address", lambda s: s.rate_limit_auth_per_address, "sign-in tries"
)
_LOGIN = (
    _AUTH_ADDRESS,
    Limit(
        "auth-failed",
        "email+address",
        lambda s: s.rate_limit_auth_per_email,
        "sign-in tries",
        failures=True,
    ),
    Limit(
        "auth-failed",
        "email",
        lambda s: s.rate_limit_auth_per_email,
        "sign-in tries",
        failures=True,
        slows=True,
    ),
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
    "login": _LOGIN,
    "register": (_AUTH_ADDRESS,),
    "changePassword": (
        _AUTH_ADDRESS,
        Limit(
            "auth", "principal", lambda s: s.rate_limit_auth_per_email, "sign-in tries"
        ),
    ),
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
    # Each asks the payment provider: the same budget as a card payment.
    "startCheckout": _PAYMENT,
    "startPaymentSheet": _PAYMENT,
    "startCardSetup": _PAYMENT,
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

# Account mails: per address, and per email (a reset) or per account (a
# verification), so nobody floods one mailbox; tokens are too long to guess,
# so using one (resetPassword, verifyEmail) counts as a sign-in try.
_MAIL_ADDRESS = Limit(
    "account-mail",
    "address",
    lambda s: s.rate_limit_account_mail_per_address,
    "mails asked for",
)
LIMITS["requestPasswordReset"] = (
    _MAIL_ADDRESS,
    Limit(
        "account-mail",
        "email",
        lambda s: s.rate_limit_account_mail_per_email,
        "mails asked for",
    ),
)
LIMITS["requestEmailVerification"] = (
    _MAIL_ADDRESS,
    Limit(
        "account-mail",
        "principal",
        lambda s: s.rate_limit_account_mail_per_email,
        "mails asked for",
    ),
)
LIMITS["resetPassword"] = (_AUTH_ADDRESS,)
LIMITS["verifyEmail"] = (_AUTH_ADDRESS,)
LIMITS["updateProfile"] = (
    _AUTH_ADDRESS,
    Limit("auth", "principal", lambda s: s.rate_limit_auth_per_email, "sign-in tries"),
)
LIMITS["deleteAccount"] = LIMITS["updateProfile"]

# Organisers post a few updates; reports come a few an hour from one caller.
LIMITS["postCampaignUpdate"] = (
    Limit(
        "campaign_update",
        "principal",
        lambda s: s.rate_limit_campaign_update_per_principal,
        "campaign updates",
    ),
)
LIMITS["reportCampaign"] = (
    Limit(
        "report", "principal", lambda s: s.rate_limit_report_per_principal, "reports"
    ),
    Limit("report", "address", lambda s: s.rate_limit_report_per_address, "reports"),
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
    # Spelled as accounts are (NFKC, case folded). Hashed: keys stay short
    # whatever is sent, and no email sits in memory.
    spelled = unicodedata.normalize("NFKC", value).strip().casefold()
    return hashlib.sha256(spelled.encode()).hexdigest()[:32]


def _principal_key(context: Context) -> str | None:
    try:
        principal = context.principal
    except Unauthenticated:
        return None  # the resolver refuses the call; the address still counts
    return principal.scope if principal is not None else None


Check = tuple[Limit, str, Rate]


def checks_for(context: Context, field: str, arguments: dict[str, Any]) -> list[Check]:
    """The buckets a call to a mutation field counts against, with their keys."""
    settings = context.runtime.settings
    address = client_address(context.request, settings.trusted_proxies)
    checks: list[Check] = []
    for limit in LIMITS.get(field, ()):
        subject: str | None
        if limit.by == "address":
            subject = address
        elif limit.by == "principal":
            subject = _principal_key(context)
        else:
            subject = _email_key(arguments.get("email"))
            if subject is not None and limit.by == "email+address":
                subject = f"{subject}:{address}"
        if subject is not None:
            key = f"{limit.bucket}:{limit.by}:{subject}"
            checks.append((limit, key, limit.rate(settings)))
    return checks


def _limiter(context: Context) -> Limiter:
    limiter: Limiter = context.request.app.state.rate_limiter
    return limiter


def check(context: Context, field: str, arguments: dict[str, Any]) -> list[Check]:
    """Refuse with RATE_LIMITED when a call to `field` is over one of its limits;
    otherwise count the call, and return the checks for `limited`.

    A limit of failures refuses once its bucket is empty. The call reserves a
    token of it while it runs, so a burst of concurrent tries cannot all pass
    a bucket with one token left; `limited` gives it back unless the call was
    a failure. A refused call takes nothing and makes no key.
    """
    if not context.runtime.settings.rate_limits or field not in LIMITS:
        return []
    checks = checks_for(context, field, arguments)
    taken: Sequence[tuple[str, Rate]] = [
        (key, rate) for limit, key, rate in checks if not limit.slows
    ]
    wait = _limiter(context).hit(taken)
    if wait is not None:
        what = LIMITS[field][0].what
        raise RateLimited(
            f"Too many {what}; wait {wait} seconds and try again.",
            retry_after_seconds=wait,
        )
    return checks


async def limited(
    context: Context,
    field: str,
    arguments: dict[str, Any],
    call: Callable[[], Awaitable[Any]],
) -> Any:
    """Run a mutation within its limits: refused when over one, slowed down
    while its email has many recent wrong passwords, and a wrong password
    (UNAUTHENTICATED) counted against the limits of failures."""
    checks = check(context, field, arguments)
    if not checks:
        return await call()
    limiter = _limiter(context)
    if any(limit.slows and limiter.empty(key, rate) for limit, key, rate in checks):
        await asyncio.sleep(SLOWDOWN_SECONDS)
    failed = False
    try:
        return await call()
    except Unauthenticated:
        failed = True
        raise
    finally:
        if failed:
            # The reserved tokens stay taken; the slowing limits count it now.
            limiter.take([(k, r) for limit, k, r in checks if limit.slows])
        else:
            limiter.give_back(
                [(k, r) for limit, k, r in checks if limit.failures and not limit.slows]
            )
