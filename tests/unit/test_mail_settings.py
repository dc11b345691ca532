"""The mail settings: SMTP URLs, the sender, the public address and the
organisation; an unusable value is refused at start, naming its variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from careforall.mail_config import SmtpServer
from careforall.settings import Settings, SettingsError


def test_defaults_keep_mails_for_the_admins() -> None:
    settings = Settings.from_env({})
    assert settings.smtp is None
    assert settings.mail_from == "CareForAll <no-reply@localhost>"
    assert settings.public_url == "http://127.0.0.1:8000"
    assert (settings.org_name, settings.org_address, settings.org_tax_id) == (
        "CareForAll",
        None,
        None,
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example.org:587", SmtpServer("mail.example.org", 587)),
        (
            "smtp://us%40er:p%3Ass@127.0.0.1:25",
            SmtpServer("127.0.0.1", 25, username="us@er", password="p:ss"),
        ),
        ("smtp://h:25?starttls=off", SmtpServer("h", 25, starttls=False)),
        (
            "smtps://h:465",
            SmtpServer("h", 465, implicit_tls=True, starttls=False),
        ),
    ],
)
def test_smtp_urls(url: str, expected: SmtpServer) -> None:
    assert Settings.from_env({"CAREFORALL_SMTP_URL": url}).smtp == expected


@pytest.mark.parametrize(
    "url",
    [
        "mail.example.org",
        "http://h:25",
        "smtp://h",
        "smtp://h:0",
        "smtp://h:70000",
        "smtp://:25",
        "smtp://h:25?starttls=maybe",
        "smtp://h:25?tls=1",
        "smtp://h:25/path",
    ],
)
def test_unusable_smtp_urls_are_refused(url: str) -> None:
    with pytest.raises(SettingsError, match="CAREFORALL_SMTP_URL"):
        Settings.from_env({"CAREFORALL_SMTP_URL": url})


def test_the_password_is_never_shown() -> None:
    settings = Settings.from_env({"CAREFORALL_SMTP_URL": "smtp://u:hunter2@h:25"})
    assert "hunter2" not in repr(settings.smtp) and "hunter2" not in repr(settings)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CAREFORALL_MAIL_FROM", "nobody"),
        ("CAREFORALL_MAIL_FROM", "a@example.org, b@example.org"),
        ("CAREFORALL_PUBLIC_URL", "example.org"),
        ("CAREFORALL_PUBLIC_URL", "ftp://example.org"),
    ],
)
def test_unusable_values_name_their_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_the_organisation_and_addresses_are_read() -> None:
    settings = Settings.from_env(
        {
            "CAREFORALL_MAIL_FROM": "Hope <receipts@hope.example>",
            "CAREFORALL_PUBLIC_URL": "https://give.hope.example/",
            "CAREFORALL_ORG_NAME": " Hope Foundation ",
            "CAREFORALL_ORG_ADDRESS": "1 Harbour Road",
            "CAREFORALL_ORG_TAX_ID": "EIN 12-3456789",
        }
    )
    assert settings.mail_from == "Hope <receipts@hope.example>"
    assert settings.public_url == "https://give.hope.example"
    assert settings.org_name == "Hope Foundation"
    assert settings.org_address == "1 Harbour Road"
    assert settings.org_tax_id == "EIN 12-3456789"


def test_the_command_refuses_a_bad_smtp_url_naming_it(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    from careforall.cli import main

    monkeypatch.setenv("CAREFORALL_DATABASE_URL", f"sqlite:///{tmp_path}/x.db")
    monkeypatch.setenv("CAREFORALL_SMTP_URL", "smtp://mail.example.org")
    # `migrate` rather than `serve`: a server that started would not return.
    assert main(["migrate"]) == 2
    err = capsys.readouterr().err
    assert "CAREFORALL_SMTP_URL must be smtp://" in err and "Traceback" not in err
