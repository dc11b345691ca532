"""Settings read once from CAREFORALL_* environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace

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
    # Where the simulated provider posts its webhooks; `serve` fills it in from
    # its own address. None delivers in-process (tests without a socket).
    provider_webhook_url: str | None = None
    user_token_hours: float = 24 * 7
    anonymous_token_days: float = 365
    outbox_max_attempts: int = 8
    outbox_base_delay: float = 0.5
    webhook_retry_base_delay: float = 0.5
    busy_timeout_ms: int = 5000
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            database_url=env.get("CAREFORALL_DATABASE_URL") or DEFAULT_DATABASE_URL,
            jwt_secret=env.get("CAREFORALL_JWT_SECRET") or None,
            webhook_secret=env.get("CAREFORALL_WEBHOOK_SECRET") or None,
            admin_email=env.get("CAREFORALL_ADMIN_EMAIL") or None,
            admin_password=env.get("CAREFORALL_ADMIN_PASSWORD") or None,
            auto_capture=_flag(env, "CAREFORALL_AUTO_CAPTURE", True),
            rate_limits=_flag(env, "CAREFORALL_RATE_LIMITS", True),
            provider_webhook_url=env.get("CAREFORALL_PROVIDER_WEBHOOK_URL") or None,
            user_token_hours=_number(env, "CAREFORALL_TOKEN_HOURS", 24 * 7),
            outbox_max_attempts=int(_number(env, "CAREFORALL_OUTBOX_MAX_ATTEMPTS", 8)),
            outbox_base_delay=_number(env, "CAREFORALL_OUTBOX_BASE_DELAY", 0.5),
            log_level=(env.get("CAREFORALL_LOG_LEVEL") or "INFO").upper(),
        )

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
