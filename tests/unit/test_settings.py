"""Settings come from the contract's environment variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from careforall.settings import DEFAULT_DATABASE_URL, Settings, SettingsError


def test_defaults_follow_the_contract() -> None:
    settings = Settings.from_env({})
    assert settings.database_url == DEFAULT_DATABASE_URL == "sqlite:///./careforall.db"
    assert settings.auto_capture is True
    assert settings.rate_limits is True
    assert settings.jwt_secret is None and settings.webhook_secret is None
    assert settings.admin_email is None and settings.admin_password is None


def test_variables_are_read() -> None:
    settings = Settings.from_env(
        {
            "CAREFORALL_DATABASE_URL": "sqlite:////tmp/x.db",
            "CAREFORALL_JWT_SECRET": "j" * 32,
            "CAREFORALL_WEBHOOK_SECRET": "w",
            "CAREFORALL_ADMIN_EMAIL": "a@example.org",
            "CAREFORALL_ADMIN_PASSWORD": "password1",
            "CAREFORALL_AUTO_CAPTURE": "false",
            "CAREFORALL_RATE_LIMITS": "off",
        }
    )
    assert settings.database_url == "sqlite:////tmp/x.db"
    assert (settings.jwt_secret, settings.webhook_secret) == ("j" * 32, "w")
    assert settings.admin_email == "a@example.org"
    assert settings.auto_capture is False
    assert settings.rate_limits is False


@pytest.mark.parametrize("value", ["maybe", "2", "enabled"])
def test_unclear_flags_are_refused_with_the_variable_named(value: str) -> None:
    with pytest.raises(SettingsError, match="CAREFORALL_AUTO_CAPTURE"):
        Settings.from_env({"CAREFORALL_AUTO_CAPTURE": value})


def test_cli_refuses_bad_settings_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from careforall.cli import main

    monkeypatch.setenv("CAREFORALL_RATE_LIMITS", "sometimes")
    assert main(["migrate"]) == 2
    assert "CAREFORALL_RATE_LIMITS" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("postgresql://u:p@db:5432/cfa", "postgresql+psycopg://u:p@db:5432/cfa"),
        ("postgres://u@db/cfa", "postgresql+psycopg://u@db/cfa"),
        ("postgresql+psycopg://u@db/cfa", "postgresql+psycopg://u@db/cfa"),
        ("sqlite:///./careforall.db", "sqlite:///./careforall.db"),
    ],
)
def test_database_urls_name_psycopg_for_postgresql(given: str, used: str) -> None:
    settings = Settings.from_env({"CAREFORALL_DATABASE_URL": given})
    assert settings.database_url == used
    assert settings.is_postgres == used.startswith("postgresql")


@pytest.mark.parametrize("given", ["mysql://u@db/cfa", "careforall.db"])
def test_other_databases_are_refused_in_words(given: str) -> None:
    with pytest.raises(SettingsError, match="CAREFORALL_DATABASE_URL"):
        Settings.from_env({"CAREFORALL_DATABASE_URL": given})


@pytest.mark.parametrize("secret", ["short", "x" * 31, "é" * 15])
def test_a_jwt_secret_shorter_than_32_bytes_is_refused(secret: str) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"CAREFORALL_JWT_SECRET": secret})
    message = str(refused.value)
    assert "CAREFORALL_JWT_SECRET must be at least 32 bytes" in message
    assert "token_urlsafe" in message  # says how to make one
    assert secret not in message  # and never echoes the secret


def test_a_jwt_secret_of_32_bytes_or_none_is_taken() -> None:
    assert Settings.from_env({"CAREFORALL_JWT_SECRET": "é" * 16}).jwt_secret
    assert Settings.from_env({"CAREFORALL_JWT_SECRET": ""}).jwt_secret is None


def test_the_command_refuses_a_short_jwt_secret_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    from careforall.cli import main

    monkeypatch.setenv("CAREFORALL_DATABASE_URL", f"sqlite:///{tmp_path}/x.db")
    monkeypatch.setenv("CAREFORALL_JWT_SECRET", "too-short")
    # `migrate` rather than `serve`: a server that started would not return.
    assert main(["migrate"]) == 2
    assert "CAREFORALL_JWT_SECRET must be at least 32 bytes" in capsys.readouterr().err


def test_metrics_settings_are_read() -> None:
    settings = Settings.from_env(
        {"CAREFORALL_METRICS_PORT": "9464", "CAREFORALL_METRICS_TOKEN": "t" * 20}
    )
    assert (settings.metrics_port, settings.metrics_host) == (9464, "127.0.0.1")
    assert settings.metrics_token == "t" * 20
    for bad in ("0", "70000", "http"):
        with pytest.raises(SettingsError, match="CAREFORALL_METRICS_PORT"):
            Settings.from_env({"CAREFORALL_METRICS_PORT": bad})


STRIPE_KEY = "sk_test_" + "a1B2c3D4e5F6g7H8"
STRIPE_WEBHOOK = "whsec_" + "q9R8s7T6u5V4w3X2"


def test_stripe_settings_are_read() -> None:
    settings = Settings.from_env(
        {
            "CAREFORALL_PAYMENT_PROVIDER": "stripe",
            "CAREFORALL_STRIPE_SECRET_KEY": STRIPE_KEY,
            "CAREFORALL_STRIPE_WEBHOOK_SECRET": STRIPE_WEBHOOK,
            "CAREFORALL_STRIPE_API_BASE": "http://127.0.0.1:12111/",
        }
    )
    assert settings.payment_provider == "stripe"
    assert not settings.simulated_payments
    assert settings.stripe is not None
    assert settings.stripe.secret_key == STRIPE_KEY
    assert settings.stripe.webhook_secret == STRIPE_WEBHOOK
    assert settings.stripe.api_base == "http://127.0.0.1:12111"
    assert not settings.stripe.live
    # The keys never reach a log line through the settings' repr.
    assert STRIPE_KEY not in repr(settings)
    assert STRIPE_WEBHOOK not in repr(settings)


def test_the_simulation_stays_the_default_and_ignores_stripe_keys() -> None:
    settings = Settings.from_env({"CAREFORALL_STRIPE_SECRET_KEY": "nonsense"})
    assert settings.payment_provider == "simulated"
    assert settings.stripe is None


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"CAREFORALL_STRIPE_WEBHOOK_SECRET": STRIPE_WEBHOOK}, "SECRET_KEY"),
        ({"CAREFORALL_STRIPE_SECRET_KEY": STRIPE_KEY}, "WEBHOOK_SECRET"),
        (
            {
                "CAREFORALL_STRIPE_SECRET_KEY": "pk_test_" + "a1B2c3D4e5F6g7H8",
                "CAREFORALL_STRIPE_WEBHOOK_SECRET": STRIPE_WEBHOOK,
            },
            "SECRET_KEY",
        ),
        (
            {
                "CAREFORALL_STRIPE_SECRET_KEY": STRIPE_KEY,
                "CAREFORALL_STRIPE_WEBHOOK_SECRET": "sk_test_" + "a1B2c3D4e5F6g7H8",
            },
            "WEBHOOK_SECRET",
        ),
        (
            {
                "CAREFORALL_STRIPE_SECRET_KEY": STRIPE_KEY,
                "CAREFORALL_STRIPE_WEBHOOK_SECRET": STRIPE_WEBHOOK,
                "CAREFORALL_STRIPE_API_BASE": "api.stripe.com",
            },
            "API_BASE",
        ),
    ],
)
def test_stripe_without_usable_keys_is_refused_naming_the_variable(
    env: dict[str, str], named: str
) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"CAREFORALL_PAYMENT_PROVIDER": "stripe", **env})
    assert f"CAREFORALL_STRIPE_{named}" in str(refused.value)
    # A wrong key is described, never echoed.
    for value in env.values():
        if value.startswith(("pk_", "sk_")):
            assert value not in str(refused.value)


def test_the_command_refuses_stripe_without_keys(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from careforall.cli import main

    monkeypatch.setenv("CAREFORALL_PAYMENT_PROVIDER", "stripe")
    monkeypatch.delenv("CAREFORALL_STRIPE_SECRET_KEY", raising=False)
    assert main(["migrate"]) == 2
    assert "CAREFORALL_STRIPE_SECRET_KEY" in capsys.readouterr().err
