"""Sending one mail over SMTP with aiosmtplib, and what its failure means.

A refusal with a 5xx reply is for good (`Refused`): the mail is parked as a
dead letter. Anything else (no connection, a timeout, a 4xx) is worth trying
again later.
"""

from __future__ import annotations

import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr

import aiosmtplib

from careforall.mail_config import SmtpServer


class Refused(Exception):
    """The server refused the mail for good (a 5xx reply)."""


def build_message(
    *,
    sender: str,
    to: str,
    subject: str,
    text: str,
    html: str,
    mail_id: int,
    list_unsubscribe: str | None = None,
) -> EmailMessage:
    """The MIME message: plain text with an HTML alternative; with an
    unsubscribe link, RFC 8058's headers for a mail client's one-click button
    (a POST to the link, which the server takes without its page)."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(usegmt=True)
    domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"
    message["Message-ID"] = make_msgid(idstring=f"mail{mail_id}", domain=domain)
    if list_unsubscribe is not None:
        message["List-Unsubscribe"] = f"<{list_unsubscribe}>"
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return message


async def send(
    server: SmtpServer,
    message: EmailMessage,
    *,
    recipient: str,
    timeout: float = 30.0,
    tls_context: ssl.SSLContext | None = None,
) -> None:
    """Send `message`; raises `Refused` for a 5xx reply, another exception
    when the mail may go through later."""
    try:
        await aiosmtplib.send(
            message,
            # The envelope names the one address, never what the To: header
            # could be read as.
            recipients=[recipient],
            hostname=server.host,
            port=server.port,
            username=server.username,
            password=server.password,
            use_tls=server.implicit_tls,
            # With a password, STARTTLS is required: "when offered" would let
            # anyone on the path strip the offer and read the password.
            # Without one, STARTTLS when offered; `?starttls=off`: never.
            start_tls=(
                (True if server.username else None) if server.starttls else False
            ),
            tls_context=tls_context,
            timeout=timeout,
        )
    except aiosmtplib.SMTPNotSupported as exc:
        # Such as a non-ASCII address to a server without SMTPUTF8: trying
        # again changes nothing.
        raise Refused(str(exc)) from exc
    except aiosmtplib.SMTPRecipientsRefused as exc:
        codes = [refusal.code for refusal in exc.recipients]
        if codes and all(code >= 500 for code in codes):
            raise Refused(str(exc)) from exc
        raise
    except aiosmtplib.SMTPResponseException as exc:
        if exc.code >= 500:
            raise Refused(f"{exc.code} {exc.message}") from exc
        raise
