"""Settings read once from CAREFORALL_* environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from ipaddress import ip_network
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from careforall.mail_config import SmtpServer
    from careforall.payment_config import StripeConfig

DEFAULT_DATABASE_URL = "sqlite:///./careforall.db"


class SettingsError(ValueError):
    """A configuration value that cannot be used; the message names it."""


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name} must be true/false or on/off, not {raw!r}")


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, not {raw!r}") from None
    if value < 0:
        raise SettingsError(f"{name} must not be negative")
    return value


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    raw = env.get(name) or ""
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _networks(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Addresses or CIDR blocks, e.g. `127.0.0.1,10.0.0.0/8`."""
    items = _list(env, name)
    for item in items:
        try:
            ip_network(item, strict=False)
        except ValueError:
            raise SettingsError(
                f"{name} must list IP addresses or networks, not {item!r}"
            ) from None
    return items


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _one_of(
    env: Mapping[str, str], name: str, choices: tuple[str, ...], default: str
) -> str:
    """A setting that takes one of a few words (any case)."""
    raw = env.get(name) or default
    for choice in choices:
        if raw.strip().lower() == choice.lower():
            return choice
    raise SettingsError(
        f"{name} must be one of {', '.join(choices)}, not {env.get(name)!r}"
    )


TRACES_EXPORTERS = ("otlp", "console", "none")


def _traces_exporter(env: Mapping[str, str]) -> str:
    """OTEL_TRACES_EXPORTER, normalised: "none", or exporters joined by commas."""
    if (env.get("OTEL_SDK_DISABLED") or "").strip().lower() == "true":
        return "none"
    raw = env.get("OTEL_TRACES_EXPORTER") or "none"
    names = [item.strip().lower() for item in raw.split(",") if item.strip()]
    if any(name not in TRACES_EXPORTERS for name in names):
        raise SettingsError(
            f"OTEL_TRACES_EXPORTER must list otlp, console or none, not {raw!r}"
        )
    return ",".join(dict.fromkeys(n for n in names if n != "none")) or "none"


def _retention_days(env: Mapping[str, str], table: str, default: float) -> float:
    """CAREFORALL_RETENTION_<TABLE>_DAYS, else CAREFORALL_RETENTION_DAYS, else
    `default`; 0 keeps that table's rows forever."""
    general = _number(env, "CAREFORALL_RETENTION_DAYS", default)
    return _number(env, f"CAREFORALL_RETENTION_{table}_DAYS", general)


@dataclass(frozen=True)
class Rate:
    """At most `count` requests per `seconds`; written `count/seconds`, e.g. `10/60`."""

    count: int
    seconds: float

    @classmethod
    def parse(cls, name: str, raw: str) -> Rate:
        count, _, seconds = raw.partition("/")
        try:
            rate = cls(int(count), float(seconds))
        except ValueError:
            rate = cls(0, 0)
        if rate.count < 1 or not rate.seconds > 0:
            raise SettingsError(
                f"{name} must be requests/seconds like 10/60, not {raw!r}"
            )
        return rate


def database_url(raw: str) -> str:
    """The SQLAlchemy URL for CAREFORALL_DATABASE_URL.

    SQLite and PostgreSQL (through psycopg 3) are supported; the usual
    `postgresql://` and `postgres://` forms are taken to mean psycopg.
    """
    url = raw.strip()
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise SettingsError(
            f"CAREFORALL_DATABASE_URL must look like sqlite:///path or "
            f"postgresql://user@host/db, not {raw!r}"
        )
    if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        return f"postgresql+psycopg://{rest}"
    if scheme in ("sqlite", "sqlite+pysqlite"):
        return url
    raise SettingsError(
        f"CAREFORALL_DATABASE_URL: {scheme!r} is not supported; "
        "use sqlite:///path or postgresql://user@host/db"
    )


def _rate(env: Mapping[str, str], name: str, default: Rate) -> Rate:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    return Rate.parse(name, raw.strip())


def _rate_limits(env: Mapping[str, str]) -> dict[str, Rate]:
    """Each Rate setting from CAREFORALL_<NAME>, else its default."""
    return {
        field.name: _rate(env, f"CAREFORALL_{field.name.upper()}", field.default)
        for field in fields(Settings)
        if isinstance(field.default, Rate)
    }


_COSTS = (
    "graphql_max_cost",
    "graphql_max_response_bytes",
    "ws_max_connections_per_address",
    "ws_max_subscriptions",
)


def _costs(env: Mapping[str, str]) -> dict[str, int]:
    """Each cost limit from CAREFORALL_<NAME>, else its default."""
    defaults = Settings()
    return {
        name: int(_number(env, f"CAREFORALL_{name.upper()}", getattr(defaults, name)))
        for name in _COSTS
    }


# An HMAC-SHA256 key shorter than its hash's 32 bytes makes tokens easier to forge.
MIN_JWT_SECRET_BYTES = 32
PAYMENT_PROVIDERS = ("simulated", "stripe")
CAMPAIGN_REVIEW = ("required", "off")


def _jwt_secret(env: Mapping[str, str]) -> str | None:
    secret = env.get("CAREFORALL_JWT_SECRET") or None
    if secret is not None and len(secret.encode()) < MIN_JWT_SECRET_BYTES:
        raise SettingsError(
            f"CAREFORALL_JWT_SECRET must be at least {MIN_JWT_SECRET_BYTES} bytes, "
            f"not {len(secret.encode())}: make one with `python3 -c 'import "
            "secrets; print(secrets.token_urlsafe(48))'`, or leave it unset and "
            "the server generates one and keeps it in the database"
        )
    return secret


def _port(env: Mapping[str, str], name: str) -> int | None:
    raw = (env.get(name) or "").strip()
    if not raw:
        return None
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise SettingsError(f"{name} must be a port from 1 to 65535, not {raw!r}")
    return int(raw)


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    # None until resolved: then the given value, or the one kept with the data.
    jwt_secret: str | None = None
    webhook_secret: str | None = None
    admin_email: str | None = None
    admin_password: str | None = None
    auto_capture: bool = True
    rate_limits: bool = True
    # The file in which the processes of one server share their rate-limit
    # counts; None counts in this process alone. `serve --workers` sets it.
    rate_limit_store: str | None = None
    # Where the simulated provider posts its webhooks; `serve` fills it in from
    # its own address. None delivers in-process (tests without a socket).
    provider_webhook_url: str | None = None
    user_token_hours: float = 24
    anonymous_token_days: float = 30  # renewed when used (services/tokens.py)
    outbox_max_attempts: int = 8
    outbox_base_delay: float = 0.5
    webhook_retry_base_delay: float = 0.5
    busy_timeout_ms: int = 5000
    # PostgreSQL: connections kept per process (as many again may be opened
    # under a burst).
    db_pool_size: int = 20
    # Processes serving together (`careforall serve --workers N` sets it for
    # its workers): above 1 on SQLite, each process follows the others' commits.
    workers: int = 1
    log_level: str = "INFO"
    # Standard OpenTelemetry variable (README, "Observability"); "none" is off.
    traces_exporter: str = "none"
    # Limits and security (README, "Limits and security").
    introspection: bool = True
    graphql_max_depth: int = 10
    graphql_max_aliases: int = 30
    graphql_max_tokens: int = 2000
    max_body_bytes: int = 1024 * 1024
    cors_origins: tuple[str, ...] = ()
    trusted_proxies: tuple[str, ...] = ()
    # Each read from CAREFORALL_<NAME>, e.g. CAREFORALL_RATE_LIMIT_AUTH_PER_EMAIL.
    rate_limit_auth_per_address: Rate = Rate(30, 60)
    rate_limit_auth_per_email: Rate = Rate(10, 600)
    rate_limit_anonymous_per_address: Rate = Rate(30, 60)
    rate_limit_pledge_per_principal: Rate = Rate(20, 60)
    rate_limit_pledge_per_address: Rate = Rate(60, 60)
    rate_limit_payment_per_principal: Rate = Rate(10, 60)
    rate_limit_payment_per_address: Rate = Rate(30, 60)
    # Retention (README, "Retention"): days to keep; 0 keeps forever.
    retention_outbox_days: float = 30
    retention_webhook_log_days: float = 90
    retention_sim_webhooks_days: float = 30
    retention_mails_days: float = 365
    retention_interval_seconds: float = 3600
    # How often the server charges the recurring gifts due; 0: never (use
    # `careforall recurring run`).
    recurring_interval_seconds: float = 60
    # Longest a public query's answer is reused (README,
    # "Performance"); 0 turns the response cache off.
    response_cache_seconds: float = 1.0
    # What one request or connection may cost (docs/configuration.md,
    # "Limits and security"); each read from CAREFORALL_<NAME>, 0 is no limit.
    graphql_max_cost: int = 5_000
    graphql_max_response_bytes: int = 1024 * 1024
    ws_max_connections_per_address: int = 50
    ws_max_subscriptions: int = 10_000
    rate_limit_campaign_per_principal: Rate = Rate(10, 3600)
    rate_limit_campaign_per_address: Rate = Rate(30, 3600)
    rate_limit_campaign_status_per_principal: Rate = Rate(30, 60)
    # Account mails (reset and verification links): each mail costs a send,
    # and a flood to one address is harassment.
    rate_limit_account_mail_per_address: Rate = Rate(20, 3600)
    rate_limit_account_mail_per_email: Rate = Rate(5, 3600)

    # Organisers post a few updates; a reporter reports a few campaigns.
    rate_limit_campaign_update_per_principal: Rate = Rate(10, 3600)
    rate_limit_report_per_principal: Rate = Rate(5, 3600)
    rate_limit_report_per_address: Rate = Rate(10, 3600)
    # Decoding an image costs CPU: an organiser changes their cover a few times.
    rate_limit_image_per_principal: Rate = Rate(20, 3600)
    # CAREFORALL_ENV: "production" refuses what is only for trials (the
    # simulated provider, unless allowed).
    environment: str = "development"
    payment_provider: str = "simulated"
    allow_simulated_payments: bool = False
    # Stripe's keys and API address (docs/payments.md); set with the stripe provider.
    stripe: StripeConfig | None = None
    # /metrics on a port of its own (same host), and/or behind a bearer token.
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    metrics_token: str | None = None
    # Mail (docs/configuration.md, "Mail"): no SMTP server keeps every mail
    # for the admins to read.
    smtp: SmtpServer | None = None
    mail_from: str = "CareForAll <no-reply@localhost>"
    public_url: str = "http://127.0.0.1:8000"
    org_name: str = "CareForAll"
    org_address: str | None = None
    org_tax_id: str | None = None
    mail_language: str = "en"
    # "required": new campaigns wait IN_REVIEW for an admin; "off": ACTIVE at once.
    campaign_review: str = "required"
    # Where uploaded files (campaign images) are kept: None is the SQLite
    # file's folder, or the working folder with PostgreSQL.
    data_dir: str | None = None
    # The largest campaign image accepted; a bigger upload is refused unread.
    image_max_bytes: int = 10 * 1024 * 1024

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        settings = cls(
            database_url=database_url(
                env.get("CAREFORALL_DATABASE_URL") or DEFAULT_DATABASE_URL
            ),
            jwt_secret=_jwt_secret(env),
            webhook_secret=env.get("CAREFORALL_WEBHOOK_SECRET") or None,
            admin_email=env.get("CAREFORALL_ADMIN_EMAIL") or None,
            admin_password=env.get("CAREFORALL_ADMIN_PASSWORD") or None,
            auto_capture=_flag(env, "CAREFORALL_AUTO_CAPTURE", True),
            rate_limits=_flag(env, "CAREFORALL_RATE_LIMITS", True),
            rate_limit_store=(env.get("CAREFORALL_RATE_LIMIT_STORE") or "").strip()
            or None,
            provider_webhook_url=env.get("CAREFORALL_PROVIDER_WEBHOOK_URL") or None,
            user_token_hours=_number(env, "CAREFORALL_TOKEN_HOURS", 24),
            outbox_max_attempts=int(_number(env, "CAREFORALL_OUTBOX_MAX_ATTEMPTS", 8)),
            outbox_base_delay=_number(env, "CAREFORALL_OUTBOX_BASE_DELAY", 0.5),
            db_pool_size=max(1, int(_number(env, "CAREFORALL_DB_POOL_SIZE", 20))),
            workers=max(1, int(_number(env, "CAREFORALL_WORKERS", 1))),
            log_level=_one_of(env, "CAREFORALL_LOG_LEVEL", LOG_LEVELS, "INFO"),
            traces_exporter=_traces_exporter(env),
            introspection=_flag(env, "CAREFORALL_INTROSPECTION", True),
            graphql_max_depth=int(_number(env, "CAREFORALL_GRAPHQL_MAX_DEPTH", 10)),
            graphql_max_aliases=int(_number(env, "CAREFORALL_GRAPHQL_MAX_ALIASES", 30)),
            graphql_max_tokens=int(_number(env, "CAREFORALL_GRAPHQL_MAX_TOKENS", 2000)),
            max_body_bytes=int(_number(env, "CAREFORALL_MAX_BODY_BYTES", 1024 * 1024)),
            cors_origins=_list(env, "CAREFORALL_CORS_ORIGINS"),
            trusted_proxies=_networks(env, "CAREFORALL_TRUSTED_PROXIES"),
            retention_outbox_days=_retention_days(env, "OUTBOX", 30),
            retention_webhook_log_days=_retention_days(env, "WEBHOOK_LOG", 90),
            retention_sim_webhooks_days=_retention_days(env, "SIM_WEBHOOKS", 30),
            retention_mails_days=_retention_days(env, "MAILS", 365),
            retention_interval_seconds=_number(
                env, "CAREFORALL_RETENTION_INTERVAL_SECONDS", 3600
            ),
            recurring_interval_seconds=_number(
                env, "CAREFORALL_RECURRING_INTERVAL_SECONDS", 60
            ),
            response_cache_seconds=max(
                0.0, _number(env, "CAREFORALL_RESPONSE_CACHE_SECONDS", 1.0)
            ),
            environment=(env.get("CAREFORALL_ENV") or "development").strip().lower(),
            payment_provider=_one_of(
                env, "CAREFORALL_PAYMENT_PROVIDER", PAYMENT_PROVIDERS, "simulated"
            ),
            allow_simulated_payments=_flag(
                env, "CAREFORALL_ALLOW_SIMULATED_PAYMENTS", False
            ),
            metrics_port=_port(env, "CAREFORALL_METRICS_PORT"),
            metrics_host=(env.get("CAREFORALL_METRICS_HOST") or "127.0.0.1").strip(),
            metrics_token=env.get("CAREFORALL_METRICS_TOKEN") or None,
            campaign_review=_one_of(
                env, "CAREFORALL_CAMPAIGN_REVIEW", CAMPAIGN_REVIEW, "required"
            ),
            data_dir=(env.get("CAREFORALL_DATA_DIR") or "").strip() or None,
            image_max_bytes=int(
                _number(env, "CAREFORALL_IMAGE_MAX_BYTES", 10 * 1024 * 1024)
            ),
        )
        # Imported here: mail_config raises this module's SettingsError.
        from careforall.mail_config import mail_settings
        from careforall.payment_config import stripe_config

        settings = settings.with_(
            **_rate_limits(env),
            **_costs(env),
            **mail_settings(env),
            stripe=stripe_config(env, settings.payment_provider),
        )
        settings.check()
        return settings

    def check(self) -> None:
        """Refuse combinations that must not run; `create_app` checks again."""
        if self.payment_provider == "stripe" and self.stripe is None:
            raise SettingsError(
                "CAREFORALL_PAYMENT_PROVIDER=stripe needs "
                "CAREFORALL_STRIPE_SECRET_KEY and CAREFORALL_STRIPE_WEBHOOK_SECRET"
            )
        if (
            self.environment == "production"
            and self.payment_provider == "simulated"
            and not self.allow_simulated_payments
        ):
            raise SettingsError(
                "CAREFORALL_PAYMENT_PROVIDER=simulated takes no real money (anyone "
                "can pay with pm_card_ok), so it does not start with "
                "CAREFORALL_ENV=production. Configure a real payment provider, or "
                "set CAREFORALL_ALLOW_SIMULATED_PAYMENTS=1 to run a demonstration "
                "anyway (every payment page then says the payments are simulated)."
            )

    @property
    def review_required(self) -> bool:
        """New campaigns wait IN_REVIEW for an admin's approval."""
        return self.campaign_review == "required"

    @property
    def simulated_payments(self) -> bool:
        return self.payment_provider == "simulated"

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith("postgresql")
