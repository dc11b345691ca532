"""Money rules: integer minor units and ISO-4217 currency codes."""

from __future__ import annotations

from decimal import Decimal

from careforall.domain.errors import BadUserInput

MIN_PLEDGE_CENTS = 1
MAX_PLEDGE_CENTS = 100_000_000
MAX_GOAL_CENTS = 2_000_000_000  # fits GraphQL's 32-bit Int

# Active ISO-4217 codes. Kept inline so validation needs no locale data.
ISO_4217 = frozenset(
    """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL
    BSD BTN BWP BYN BZD CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP
    ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR
    IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL
    LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR
    NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD
    SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX
    USD UYU UZS VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG
    """.split()
)


# ISO 4217 minor-unit exponents other than 2 (of the codes above): the one
# table every amount shown or exported is read with.
MINOR_UNIT_EXPONENTS = {
    **dict.fromkeys(
        "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX VND VUV XAF XOF XPF".split(), 0
    ),
    **dict.fromkeys("BHD IQD JOD KWD LYD OMR TND".split(), 3),
}


def minor_unit_exponent(currency: str) -> int:
    """How many decimals the currency's minor unit has (2 for most)."""
    return MINOR_UNIT_EXPONENTS.get(currency, 2)


def major_units(amount_cents: int, currency: str) -> Decimal:
    """2500 USD -> 25.00; 2500 JPY -> 2500; 2500 KWD -> 2.500 (exact)."""
    return Decimal(amount_cents).scaleb(-minor_unit_exponent(currency))


def format_money(amount_cents: int, currency: str) -> str:
    """2500, "USD" -> "25.00 USD" (grouped, the currency's own decimals)."""
    digits = minor_unit_exponent(currency)
    return f"{major_units(amount_cents, currency):,.{digits}f} {currency}"


# The symbols the web app shows (`money` in web/dom.js, English Intl): a
# currency without one is shown with its code, as Intl does.
CURRENCY_SYMBOLS = {
    "USD": "$",
    "EUR": "€",
    "GBP": "£",
    "JPY": "¥",
    "INR": "₹",
    "KRW": "₩",
    "ILS": "₪",
    "VND": "₫",
    "PHP": "₱",
    "CAD": "CA$",
    "AUD": "A$",
    "NZD": "NZ$",
    "HKD": "HK$",
    "MXN": "MX$",
    "BRL": "R$",
    "CNY": "CN¥",
    "TWD": "NT$",
    "XAF": "FCFA",
    "XOF": "F\u202fCFA",
    "XCD": "EC$",
    "XPF": "CFPF",
}


def display_money(amount_cents: int, currency: str) -> str:
    """As the web app shows an amount: 2500, "USD" -> "$25.00"; 2500, "CHF"
    -> "CHF\u00a025.00"; a minus sign before the symbol."""
    digits = minor_unit_exponent(currency)
    number = f"{abs(major_units(amount_cents, currency)):,.{digits}f}"
    symbol = CURRENCY_SYMBOLS.get(currency, currency)
    # A symbol of letters (a code, "FCFA") is set apart by a no-break space.
    shown = f"{symbol}\u00a0{number}" if symbol[-1].isalpha() else symbol + number
    return f"-{shown}" if amount_cents < 0 else shown


def check_currency(code: str) -> str:
    """Return the code if it is an ISO-4217 currency; refuse anything else."""
    if code not in ISO_4217:
        raise BadUserInput(
            f"'{code[:10]}' is not a currency code; use a three-letter ISO-4217 "
            "code such as USD or EUR."
        )
    return code


def check_pledge_amount(amount_cents: int) -> int:
    """A pledge is 1 to 100,000,000 minor units."""
    if not MIN_PLEDGE_CENTS <= amount_cents <= MAX_PLEDGE_CENTS:
        raise BadUserInput(
            "amountCents must be a whole number of minor units from "
            f"{MIN_PLEDGE_CENTS} to {MAX_PLEDGE_CENTS:,} (1,000,000.00)."
        )
    return amount_cents


def check_goal(goal_cents: int) -> int:
    """A campaign's goal is positive and fits a 32-bit integer."""
    if not 1 <= goal_cents <= MAX_GOAL_CENTS:
        raise BadUserInput(
            f"goalCents must be a whole number from 1 to {MAX_GOAL_CENTS:,}."
        )
    return goal_cents


def check_same_currency(pledge_currency: str, campaign_currency: str) -> None:
    """A pledge is made in its campaign's currency."""
    if pledge_currency != campaign_currency:
        raise BadUserInput(
            f"This campaign takes donations in {campaign_currency}, "
            f"not {pledge_currency}."
        )
