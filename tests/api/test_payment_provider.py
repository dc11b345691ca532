"""The simulated payment provider says so: in the API (Query.paymentProvider)
for every client, and by refusing to start in production unless allowed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from careforall.app import create_app
from careforall.settings import Settings, SettingsError
from tests.helpers.api import GQL

PROVIDER = "{ paymentProvider { name simulated notice } }"


def test_the_api_says_payments_are_simulated(gql: GQL) -> None:
    provider = gql.ok(PROVIDER)["paymentProvider"]
    assert provider["name"] == "simulated" and provider["simulated"] is True
    assert "no real money moves" in provider["notice"]


def test_a_demonstration_in_production_still_says_so(
    app_factory: Callable[..., TestClient],
) -> None:
    gql = GQL(app_factory(environment="production", allow_simulated_payments=True))
    assert gql.ok(PROVIDER)["paymentProvider"]["simulated"] is True


def test_production_refuses_the_simulated_provider_unless_allowed() -> None:
    env = {"CAREFORALL_ENV": "production"}
    with pytest.raises(SettingsError) as refused:
        Settings.from_env(env)
    message = str(refused.value)
    assert "CAREFORALL_PAYMENT_PROVIDER=simulated" in message
    assert "CAREFORALL_ALLOW_SIMULATED_PAYMENTS=1" in message
    # Built without from_env, the app refuses the same.
    with pytest.raises(SettingsError, match="CAREFORALL_ENV=production"):
        create_app(Settings(environment="production"))

    allowed = Settings.from_env(env | {"CAREFORALL_ALLOW_SIMULATED_PAYMENTS": "1"})
    assert allowed.simulated_payments and allowed.environment == "production"
    # Anywhere else the simulated provider is the default.
    assert Settings.from_env({}).payment_provider == "simulated"
    explicit = {"CAREFORALL_PAYMENT_PROVIDER": "simulated"}
    assert Settings.from_env(explicit).simulated_payments


def test_an_unknown_provider_is_refused_with_the_variable_named() -> None:
    with pytest.raises(SettingsError, match="CAREFORALL_PAYMENT_PROVIDER"):
        Settings.from_env({"CAREFORALL_PAYMENT_PROVIDER": "stripe"})


def test_the_command_refuses_to_start_in_production_and_says_how(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    from careforall.cli import main

    monkeypatch.setenv("CAREFORALL_DATABASE_URL", f"sqlite:///{tmp_path}/x.db")
    monkeypatch.setenv("CAREFORALL_ENV", "production")
    # `migrate` rather than `serve`: a server that started would not return.
    assert main(["migrate"]) == 2
    err = capsys.readouterr().err
    assert "CAREFORALL_ALLOW_SIMULATED_PAYMENTS=1" in err
