"""A server loads the libraries of the features it is configured for only:
each costs a start a tenth of a second or more."""

from __future__ import annotations

from tests.helpers.fresh_process import loaded, modules_after_a_request


def test_without_stripe_its_library_is_never_loaded(db_url: str) -> None:
    modules = modules_after_a_request(db_url, drop_env="CAREFORALL_STRIPE")
    assert loaded(modules, "stripe") == []
    assert loaded(modules, "careforall.payments.stripe") == []
    if db_url.startswith("sqlite"):
        assert loaded(modules, "psycopg") == []
