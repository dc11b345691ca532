"""Money: pledge amounts in minor units, ISO-4217 codes, one currency per campaign."""

from __future__ import annotations

import pytest

from careforall.domain.errors import BadUserInput
from careforall.domain.money import (
    ISO_4217,
    MINOR_UNIT_EXPONENTS,
    check_currency,
    check_goal,
    check_pledge_amount,
    check_same_currency,
    display_money,
    format_money,
    major_units,
    minor_unit_exponent,
)


@pytest.mark.parametrize("amount", [1, 2, 2500, 99_999_999, 100_000_000])
def test_pledge_amounts_in_range_are_accepted(amount: int) -> None:
    assert check_pledge_amount(amount) == amount


@pytest.mark.parametrize("amount", [0, -1, -2500, 100_000_001, 2**31, -(2**31)])
def test_pledge_amounts_out_of_range_are_refused(amount: int) -> None:
    with pytest.raises(BadUserInput) as refused:
        check_pledge_amount(amount)
    assert refused.value.code == "BAD_USER_INPUT"
    assert "amountCents" in refused.value.message


@pytest.mark.parametrize("goal", [1, 500_000, 2_000_000_000])
def test_goals_in_range_are_accepted(goal: int) -> None:
    assert check_goal(goal) == goal


@pytest.mark.parametrize("goal", [0, -1, 2_000_000_001, 2**31])
def test_goals_out_of_range_are_refused(goal: int) -> None:
    with pytest.raises(BadUserInput):
        check_goal(goal)


@pytest.mark.parametrize(
    "code", ["USD", "EUR", "GBP", "JPY", "KWD", "CHF", "INR", "BDT"]
)
def test_iso_4217_codes_are_accepted(code: str) -> None:
    assert check_currency(code) == code


@pytest.mark.parametrize(
    "code",
    ["usd", "Usd", "eur", "XYZ", "ABC", "", "US", "USDD", " USD", "USD ", "U$D", "€"],
)
def test_other_currency_codes_are_refused(code: str) -> None:
    with pytest.raises(BadUserInput) as refused:
        check_currency(code)
    assert refused.value.code == "BAD_USER_INPUT"


def test_currency_refusal_does_not_echo_long_input() -> None:
    with pytest.raises(BadUserInput) as refused:
        check_currency("X" * 5000)
    assert "X" * 11 not in refused.value.message


def test_currency_list_holds_only_three_upper_case_letters() -> None:
    assert len(ISO_4217) > 150
    assert all(len(c) == 3 and c.isascii() and c.isupper() for c in ISO_4217)


def test_same_currency_passes() -> None:
    check_same_currency("EUR", "EUR")


@pytest.mark.parametrize(
    ("pledge", "campaign"), [("USD", "EUR"), ("EUR", "USD"), ("usd", "USD")]
)
def test_a_pledge_in_another_currency_is_refused(pledge: str, campaign: str) -> None:
    with pytest.raises(BadUserInput) as refused:
        check_same_currency(pledge, campaign)
    assert campaign in refused.value.message


def test_amounts_use_the_currency_minor_units() -> None:
    assert str(major_units(2500, "USD")) == "25.00"
    assert str(major_units(5, "EUR")) == "0.05"
    assert str(major_units(100_000_000, "USD")) == "1000000.00"
    assert str(major_units(2500, "JPY")) == "2500"
    assert str(major_units(2500, "KWD")) == "2.500"


def test_shown_amounts_are_grouped_with_the_currency_decimals() -> None:
    assert format_money(123_456_789, "USD") == "1,234,567.89 USD"
    assert format_money(2500, "JPY") == "2,500 JPY"
    assert format_money(2500, "KWD") == "2.500 KWD"
    assert format_money(5, "EUR") == "0.05 EUR"


def test_every_exponent_names_an_accepted_currency() -> None:
    assert set(MINOR_UNIT_EXPONENTS) <= ISO_4217
    assert minor_unit_exponent("JPY") == 0
    assert minor_unit_exponent("KWD") == 3
    assert minor_unit_exponent("USD") == 2


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        # What `money` in web/dom.js shows (Intl.NumberFormat in English).
        (2500, "USD", "$25.00"),
        (123456789, "EUR", "€1,234,567.89"),
        (5, "GBP", "£0.05"),
        (2500, "JPY", "¥2,500"),
        (2500, "CAD", "CA$25.00"),
        (2500, "CHF", "CHF\u00a025.00"),
        (2500, "KWD", "KWD\u00a02.500"),
        (2500, "XOF", "F\u202fCFA\u00a02,500"),
        (-2500, "USD", "-$25.00"),
    ],
)
def test_amounts_are_shown_as_the_web_app_shows_them(
    amount: int, currency: str, shown: str
) -> None:
    assert display_money(amount, currency) == shown
