"""The log formatter never writes a password, token, secret, signature or card
number, whether it comes as a field, in a message or in a traceback."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import pytest

from careforall import logs, redaction
from careforall.logs import JsonFormatter
from careforall.redaction import keep_out, redact_text

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
    "eyJzdWIiOiJ1c3JfMDE5YWM0YjJjM2Q0Iiwia2luZCI6InVzZXIifQ."
    "c2lnbmF0dXJlLWJ5dGVzLWhlcmU"
)
CARDS = (
    "4242424242424242",
    "4242 4242 4242 4242",
    "4242-4242-4242-4242",
    "378282246310005",  # 15 digits
    "6011000990139424",
    "4000056655665556123",  # 19 digits
)
SIGNATURE = "t=1764230400,v1=" + "ab12" * 16
ARGON2 = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo"


def formatted(message: str, *args: Any, **extra: Any) -> str:
    record = logging.LogRecord(
        "careforall.test", logging.INFO, __file__, 1, message, args, None
    )
    for key, value in extra.items():
        setattr(record, key, value)
    return JsonFormatter().format(record)


def test_sensitive_fields_are_redacted_whatever_they_hold() -> None:
    line = formatted(
        "login",
        password="hunter2-correct-horse",
        new_password="p",
        token="opaque-session-token",
        anonymous_token="x",
        authorization="Bearer abc",
        headers={"Authorization": "Basic dXNlcjpwYXNz", "CareForAll-Signature": "x"},
        webhook_secret="whsec_1234",
        api_key="k",
        email="dana@example.org",
    )
    entry = json.loads(line)
    for key in (
        "password",
        "new_password",
        "token",
        "anonymous_token",
        "authorization",
        "webhook_secret",
        "api_key",
    ):
        assert entry[key] == "[REDACTED]", key
    assert entry["headers"] == {
        "Authorization": "[REDACTED]",
        "CareForAll-Signature": "[REDACTED]",
    }
    assert entry["email"] == "dana@example.org"  # not a secret
    for leaked in ("hunter2", "opaque-session", "dXNlcjpwYXNz", "whsec_"):
        assert leaked not in line


@pytest.mark.parametrize("card", CARDS)
def test_card_like_numbers_are_redacted_in_messages_and_values(card: str) -> None:
    line = formatted(
        "donor wrote %s in a note", f"my card is {card}!", note=f"card:{card}"
    )
    assert card not in line
    assert card.replace(" ", "").replace("-", "") not in line
    assert line.count("[REDACTED_CARD]") == 2


def test_tokens_signatures_and_hashes_are_redacted_anywhere() -> None:
    line = formatted(
        f"header was Bearer {JWT} and {SIGNATURE}",
        raw=f"Authorization: bearer {JWT}",
        nested={"list": [JWT, ARGON2]},
        big_number=4242424242424242,
    )
    for leaked in (JWT, JWT.split(".")[1], "ab12ab12ab12", ARGON2, "4242424242424242"):
        assert leaked not in line
    entry = json.loads(line)
    assert entry["nested"]["list"] == ["[REDACTED_JWT]", "[REDACTED_HASH]"]
    assert entry["big_number"] == "[REDACTED_CARD]"


def test_a_traceback_is_redacted_too() -> None:
    try:
        raise ValueError(f"could not parse {JWT} for card 4111111111111111")
    except ValueError:
        record = logging.LogRecord(
            "careforall.test", logging.ERROR, __file__, 1, "boom", (), sys.exc_info()
        )
    line = JsonFormatter().format(record)
    assert "ValueError" in line
    assert JWT not in line and "4111111111111111" not in line


def test_this_processs_secrets_are_never_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(redaction, "_SECRETS", type(redaction._SECRETS)(maxlen=32))
    keep_out("Kq9-random-webhook-secret-value", None, "")
    line = formatted("secret is Kq9-random-webhook-secret-value, see?")
    assert "Kq9-random" not in line and "[REDACTED]" in line


def test_ids_times_and_amounts_are_left_alone() -> None:
    # Our ids are hex after a prefix: digits may run long, but they are no card.
    pledge_id = "plg_0193456789012345678901"
    line = formatted(
        "pledge %s moved",
        pledge_id,
        pledge_id=pledge_id,
        amount_cents=100_000_000,
        request_id="0123456789abcdef0123456789abcdef",
        at="2026-11-27T08:05:27.001+00:00",
    )
    entry = json.loads(line)
    assert entry["pledge_id"] == pledge_id
    assert entry["message"] == f"pledge {pledge_id} moved"
    assert entry["amount_cents"] == 100_000_000
    assert entry["request_id"] == "0123456789abcdef0123456789abcdef"
    assert redact_text("12 donors gave 4200 cents") == "12 donors gave 4200 cents"


def test_a_card_number_alone_is_redacted_and_plain_ids_are_not() -> None:
    assert redact_text("4242424242424242") == "[REDACTED_CARD]"
    assert redact_text("4000056655665556123") == "[REDACTED_CARD]"
    for kept in (
        "424242424242",  # 12 digits: too short for a card
        "42424242424242424242",  # 20 digits: too long
        "0123456789abcdef0123456789abcdef",
        "plg_0193456789012345678901",
        "CampaignTotals",
        "",
    ):
        assert redact_text(kept) == kept
    entry = json.loads(formatted("request", request_id="4242424242424242"))
    assert entry["request_id"] == "[REDACTED_CARD]"


def test_a_secret_kept_out_later_is_redacted_from_text_seen_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(redaction, "_SECRETS", type(redaction._SECRETS)(maxlen=32))
    monkeypatch.setattr(redaction, "_REDACTED_TEXT", {})
    text = "the value Zx81-late-secret-value"
    assert redact_text(text) == text  # checked, and remembered as clean
    keep_out("Zx81-late-secret-value")
    assert redact_text(text) == "the value [REDACTED]"
    assert "Zx81" not in formatted(text)


def test_the_same_values_are_redacted_the_same_on_every_line() -> None:
    lines = [
        json.loads(formatted("login", token="t0k3n-value", path=f"/p?token={n}x"))
        for n in range(3)
    ]
    for n, entry in enumerate(lines):
        assert entry["token"] == "[REDACTED]"
        assert entry["path"] == "/p?token=[REDACTED]"
        assert entry["message"] == "login"
        assert f"{n}x" not in json.dumps(entry)


def test_lines_stay_ascii_json_whatever_they_hold() -> None:
    line = formatted(
        "donor %s gave", "Zoë Ñúñez 💚", note="naïve", keys={1: "one", (2, 3): "x"}
    )
    assert line.isascii() and "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "donor Zoë Ñúñez 💚 gave"
    assert entry["note"] == "naïve"
    assert entry["keys"] == {"1": "one", "(2, 3)": "x"}
    assert set(entry) >= {"time", "level", "logger", "message"}


def test_the_time_is_utc_to_the_millisecond() -> None:
    assert logs.timestamp(1_764_230_727.0019) == "2025-11-27T08:05:27.001+00:00"
    assert logs.timestamp(1_764_230_727.9999) == "2025-11-27T08:05:27.999+00:00"
    assert logs.timestamp(1_764_230_728.5) == "2025-11-27T08:05:28.500+00:00"
