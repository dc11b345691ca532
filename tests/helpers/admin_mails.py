"""The admins' view of mails over the API: list them, pick the receipts, replay one."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

from tests import factories as f
from tests.helpers.api import GQL
from tests.helpers.smtp import MailServer
from tests.helpers.waiting import wait_until

MAILS = """query($first: Int, $after: String, $status: MailStatus) {
  adminMails(first: $first, after: $after, status: $status) {
    edges { node { id kind to subject text html status attempts lastError
                   createdAt sentAt } }
    pageInfo { hasNextPage endCursor }
  }
}"""
REPLAY = "mutation($id: ID!) { replayMail(id: $id) }"


def mails(gql: GQL, token: str, **variables: Any) -> list[dict[str, Any]]:
    data = gql.ok(MAILS, variables, token)
    return [edge["node"] for edge in data["adminMails"]["edges"]]


def receipts(gql: GQL, token: str, **variables: Any) -> list[dict[str, Any]]:
    return [m for m in mails(gql, token, **variables) if m["kind"] == "receipt"]


def give_and_pay(gql: GQL, amount: int = 2500) -> tuple[f.Account, str]:
    """A registered donor gives `amount` USD and pays (captured at once)."""
    organiser = f.register(gql)
    campaign = f.campaign(gql, organiser.token, title="Hip surgery for Ana")
    donor = f.register(gql)
    pledge = f.pledge(gql, donor.token, campaign["id"], amount=amount)
    gql.ok(f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_ok"}, donor.token)
    return donor, pledge["id"]


def receipt_statuses(gql: GQL, token: str) -> list[str]:
    return [m["status"] for m in receipts(gql, token)]


def receipts_received(mail_server: MailServer, address: str) -> list[EmailMessage]:
    """Wait for the receipt mailed to `address`; every receipt it received."""

    def found() -> list[EmailMessage] | None:
        mine = [
            m
            for m in mail_server.messages
            if m["To"] == address and "receipt" in str(m["Subject"]).lower()
        ]
        return mine or None

    received: list[EmailMessage] = wait_until(found)
    return received
