"""Mails through the running app: a capture's receipt reaches a real SMTP
server through the app's mail sender; without SMTP, admins read the kept
mails (`adminMails`) and send one again (`replayMail`), audited."""

from __future__ import annotations

from collections.abc import Callable

from starlette.testclient import TestClient

from tests import factories as f
from tests.helpers.admin_mails import MAILS, REPLAY, give_and_pay, mails, receipts
from tests.helpers.api import GQL
from tests.helpers.smtp import MailServer
from tests.helpers.waiting import wait_until

AUDIT = "{ auditLog(first: 5) { edges { node { action targetType targetId } } } }"


def test_a_capture_sends_its_receipt_through_the_app(
    app_factory: Callable[..., TestClient], mail_server: MailServer
) -> None:
    client = app_factory(smtp=mail_server.smtp, org_name="Hope Foundation")
    gql = GQL(client)
    donor, pledge_id = give_and_pay(gql)

    # Each account was also sent a link to verify its address.
    received = mail_server.wait_for(3)
    [message] = [m for m in received if "receipt" in m["Subject"].lower()]
    assert message["To"] == donor.email
    assert "receipt" in message["Subject"].lower()
    body = message.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert "$25.00" in text and "Hip surgery for Ana" in text and pledge_id in text
    admin = f.admin(gql)
    wait_until(lambda: receipts(gql, admin.token)[0]["status"] == "SENT")


def test_without_smtp_admins_read_kept_mails_and_send_one_again(
    client: TestClient, gql: GQL
) -> None:
    admin = f.admin(gql)
    donor, pledge_id = give_and_pay(gql, amount=700)
    wait_until(lambda: receipts(gql, admin.token))
    [mail] = receipts(gql, admin.token)
    assert (mail["status"], mail["kind"], mail["to"]) == (
        "KEPT",
        "receipt",
        donor.email,
    )
    assert "$7.00" in mail["text"] and pledge_id in mail["text"]
    assert "Hip surgery for Ana" in mail["html"] and mail["sentAt"] is None
    assert mails(gql, admin.token, status="SENT") == []

    assert gql.code(MAILS, {}, donor.token) == "FORBIDDEN"

    assert gql.ok(REPLAY, {"id": mail["id"]}, admin.token)["replayMail"] == 1
    assert gql.ok(REPLAY, {"id": mail["id"]}, admin.token)["replayMail"] == 0
    assert receipts(gql, admin.token)[0]["status"] == "QUEUED"
    audit = gql.ok(AUDIT, None, admin.token)["auditLog"]["edges"][0]["node"]
    assert audit == {
        "action": "replay_mail",
        "targetType": "mail",
        "targetId": mail["id"],
    }
    assert gql.code(REPLAY, {"id": "999999"}, admin.token) == "NOT_FOUND"
