"""Mail settings: the SMTP server's URL, the sender, and the organisation.

Parsed here (not in `settings.py`) so that one module says what each mail
variable accepts; a value that cannot be used is refused at start with a
message naming its variable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from email.headerregistry import Address
from email.policy import SMTP
from urllib.parse import parse_qs, unquote, urlsplit

from careforall.settings import SettingsError

DEFAULT_MAIL_FROM = "CareForAll <no-reply@localhost>"
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8000"


@dataclass(frozen=True)
class SmtpServer:
    """Where mail goes: `smtp://[user:pass@]host:port` (STARTTLS when the
    server offers it, unless `?starttls=off`) or `smtps://` (TLS from the
    first byte)."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    implicit_tls: bool = False
    starttls: bool = True

    def __repr__(self) -> str:  # never print the password in logs
        return f"SmtpServer(host={self.host!r}, port={self.port})"


def smtp_server(name: str, raw: str | None) -> SmtpServer | None:
    """The server `raw` names; None (mails kept) when unset."""
    if raw is None or not raw.strip():
        return None
    parts = urlsplit(raw.strip())
    query = parse_qs(parts.query)
    starttls = query.pop("starttls", ["on"])[-1].lower()
    try:
        port = parts.port
    except ValueError:
        port = 0
    if (
        parts.scheme not in {"smtp", "smtps"}
        or not parts.hostname
        or port is None
        or not 1 <= port <= 65535
        or starttls not in {"on", "off"}
        or query
        or parts.path not in {"", "/"}
    ):
        raise SettingsError(
            f"{name} must be smtp://[user:pass@]host:port (with ?starttls=off "
            "to refuse STARTTLS) or smtps://[user:pass@]host:port"
        )
    return SmtpServer(
        host=parts.hostname,
        port=port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        implicit_tls=parts.scheme == "smtps",
        starttls=parts.scheme == "smtp" and starttls == "on",
    )


def mail_from(name: str, raw: str | None) -> str:
    """A sender such as `CareForAll <no-reply@example.org>`."""
    value = (raw or "").strip() or DEFAULT_MAIL_FROM
    try:
        header = SMTP.header_factory("From", value)
        addresses: tuple[Address, ...] = header.addresses
    except Exception:
        addresses = ()
    if len(addresses) != 1 or not addresses[0].username or header.defects:
        raise SettingsError(
            f"{name} must be one address, like 'CareForAll <no-reply@example.org>', "
            f"not {value!r}"
        )
    return value


def public_url(name: str, raw: str | None) -> str:
    """The address people reach, without a trailing slash."""
    value = (raw or "").strip() or DEFAULT_PUBLIC_URL
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.netloc or parts.query:
        raise SettingsError(
            f"{name} must be an http(s) address like https://example.org, not {value!r}"
        )
    return value.rstrip("/")


_LANGUAGE = re.compile(r"[a-z]{2,3}(_[A-Z]{2})?")


def mail_language(name: str, raw: str | None) -> str:
    """A gettext language code (en, de, pt_BR): the mails' catalogue."""
    value = (raw or "").strip() or "en"
    if not _LANGUAGE.fullmatch(value):
        raise SettingsError(
            f"{name} must be a language code like en, de or pt_BR, not {value!r}"
        )
    return value


def mail_settings(env: Mapping[str, str]) -> dict[str, object]:
    """The mail fields of `Settings`, read from CAREFORALL_* variables."""

    def text(name: str) -> str | None:
        return (env.get(name) or "").strip() or None

    return {
        "smtp": smtp_server("CAREFORALL_SMTP_URL", env.get("CAREFORALL_SMTP_URL")),
        "mail_from": mail_from("CAREFORALL_MAIL_FROM", env.get("CAREFORALL_MAIL_FROM")),
        "public_url": public_url(
            "CAREFORALL_PUBLIC_URL", env.get("CAREFORALL_PUBLIC_URL")
        ),
        "org_name": text("CAREFORALL_ORG_NAME") or "CareForAll",
        "org_address": text("CAREFORALL_ORG_ADDRESS"),
        "org_tax_id": text("CAREFORALL_ORG_TAX_ID"),
        "mail_language": mail_language(
            "CAREFORALL_MAIL_LANGUAGE", env.get("CAREFORALL_MAIL_LANGUAGE")
        ),
    }
