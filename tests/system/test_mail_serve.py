"""`careforall serve` configured by CAREFORALL_SMTP_URL and CAREFORALL_ORG_*:
a capture's receipt reaches a real SMTP server, sent by the server process's
own mail sender."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests import factories as f
from tests.helpers.api import ServerGQL
from tests.helpers.server import Server
from tests.helpers.smtp import MailServer, mail_server

__all__ = ["mail_server"]  # the fixture, used by name

pytestmark = pytest.mark.server


def test_a_served_capture_mails_its_receipt(
    tmp_path: Path, mail_server: MailServer
) -> None:
    server = Server(
        tmp_path,
        tmp_path / "careforall.db",
        CAREFORALL_SMTP_URL=f"smtp://127.0.0.1:{mail_server.port}",
        CAREFORALL_MAIL_FROM="Hope <receipts@hope.example>",
        CAREFORALL_ORG_NAME="Hope Foundation",
        CAREFORALL_ORG_TAX_ID="EIN 12-3456789",
    )
    server.start()
    try:
        with httpx.Client(base_url=server.base_url, timeout=10) as http:
            gql = ServerGQL(http)
            organiser = f.register(gql)
            campaign = f.campaign(gql, organiser.token, title="Dialysis for Omar")
            donor = f.register(gql)
            pledge = f.pledge(gql, donor.token, campaign["id"], amount=4200)
            gql.ok(f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_ok"}, donor.token)
            # Each new account was also mailed a link to verify its address.
            received = mail_server.wait_for(3, timeout=20)
            [message] = [m for m in received if "receipt" in m["Subject"].lower()]
    finally:
        assert server.stop() in (0, -15), server.log_text()
    assert message["To"] == donor.email
    assert message["From"] == "Hope <receipts@hope.example>"
    assert "receipt" in message["Subject"].lower()
    body = message.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    for expected in ("$42.00", "Dialysis for Omar", pledge["id"], "R-000001"):
        assert expected in text
    assert "Hope Foundation" in text and "EIN 12-3456789" in text
    assert server.logged_errors() == []
