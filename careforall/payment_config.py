"""Payment provider settings: which provider, and Stripe's keys.

Parsed here (not in `settings.py`) so that one module says what each payment
variable accepts; a server told to use Stripe without both keys, or with keys
of the wrong shape, refuses to start and names the variable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from careforall.settings import SettingsError

# Stripe's secret keys: `sk_test_…` in test mode, `sk_live_…` for real money.
# Restricted keys (`rk_…`) are refused: the adapter needs to create, capture,
# cancel and refund PaymentIntents, which an operator would have to grant one
# by one, and a missing grant would only show at the first payment.
_SECRET_KEY = re.compile(r"sk_(test|live)_[A-Za-z0-9]{10,}")
_WEBHOOK_SECRET = re.compile(r"whsec_[A-Za-z0-9+/=]{10,}")
DEFAULT_STRIPE_TIMEOUT_SECONDS = 30.0
# Pledges left PENDING or AUTHORIZED this long are asked about (Stripe's
# search, which finds a PaymentIntent whose id was lost, lags by a minute).
DEFAULT_RECONCILE_AFTER_MINUTES = 60.0
DEFAULT_RECONCILE_INTERVAL_SECONDS = 900.0


@dataclass(frozen=True)
class StripeConfig:
    """How to reach Stripe: the secret key, the webhook endpoint's signing
    secret, where the API is (None: Stripe's own) and how long one call may
    take before it counts as unanswered (retried later with the same key)."""

    secret_key: str
    webhook_secret: str
    api_base: str | None = None
    timeout_seconds: float = DEFAULT_STRIPE_TIMEOUT_SECONDS
    reconcile_after_minutes: float = DEFAULT_RECONCILE_AFTER_MINUTES
    reconcile_interval_seconds: float = DEFAULT_RECONCILE_INTERVAL_SECONDS

    @property
    def live(self) -> bool:
        return self.secret_key.startswith("sk_live_")

    def __repr__(self) -> str:  # never print the keys in logs
        return f"StripeConfig(api_base={self.api_base!r}, live={self.live})"


def _required(
    env: Mapping[str, str], name: str, shape: re.Pattern[str], hint: str
) -> str:
    raw = (env.get(name) or "").strip()
    if not raw:
        raise SettingsError(
            f"{name} is required with CAREFORALL_PAYMENT_PROVIDER=stripe ({hint})"
        )
    if not shape.fullmatch(raw):
        # The value itself is a secret: only its shape is described.
        raise SettingsError(f"{name} does not look like {hint}")
    return raw


def _api_base(env: Mapping[str, str]) -> str | None:
    raw = (env.get("CAREFORALL_STRIPE_API_BASE") or "").strip()
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingsError(
            "CAREFORALL_STRIPE_API_BASE must be an http(s) URL like "
            f"https://api.stripe.com, not {raw!r}"
        )
    return raw.rstrip("/")


def _seconds(
    env: Mapping[str, str], name: str, default: float, low: float, high: float
) -> float:
    """A number from `low` (excluded when 0) to `high`."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, not {raw!r}") from None
    if not (low < value if low == 0 else low <= value) or value > high:
        raise SettingsError(f"{name} must be from {low:g} to {high:g}, not {raw!r}")
    return value


def stripe_config(env: Mapping[str, str], provider: str) -> StripeConfig | None:
    """Stripe's settings when `provider` is stripe; None otherwise."""
    if provider != "stripe":
        return None
    return StripeConfig(
        secret_key=_required(
            env,
            "CAREFORALL_STRIPE_SECRET_KEY",
            _SECRET_KEY,
            "a Stripe secret key, sk_test_… or sk_live_…",
        ),
        webhook_secret=_required(
            env,
            "CAREFORALL_STRIPE_WEBHOOK_SECRET",
            _WEBHOOK_SECRET,
            "a webhook endpoint's signing secret, whsec_…",
        ),
        api_base=_api_base(env),
        timeout_seconds=_seconds(
            env,
            "CAREFORALL_STRIPE_TIMEOUT_SECONDS",
            DEFAULT_STRIPE_TIMEOUT_SECONDS,
            0,
            600,
        ),
        reconcile_after_minutes=_seconds(
            env,
            "CAREFORALL_STRIPE_RECONCILE_AFTER_MINUTES",
            DEFAULT_RECONCILE_AFTER_MINUTES,
            2,
            7 * 24 * 60,
        ),
        reconcile_interval_seconds=_seconds(
            env,
            "CAREFORALL_STRIPE_RECONCILE_INTERVAL_SECONDS",
            DEFAULT_RECONCILE_INTERVAL_SECONDS,
            0,
            86_400,
        ),
    )
