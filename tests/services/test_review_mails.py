"""The organiser's mails about an admin's decisions, through the real outbox
and a real SMTP server: approved, rejected and suspended each mailed once
with the admin's note, even when the events are delivered again; no
unsubscribe link (the organiser must know what happened to the campaign)."""

from __future__ import annotations

from careforall.db import Database
from careforall.domain.rules import Principal
from careforall.settings import Settings
from tests.helpers.mails import ORG, all_mails, email_of, parts, send_due
from tests.helpers.outbox import deliver, deliver_everything_again
from tests.helpers.smtp import MailServer
from tests.services.conftest import Decided


def test_each_decision_is_mailed_once_with_its_note(
    db: Database,
    mailing: Settings,
    mail_server: MailServer,
    organiser: Principal,
    decided: Decided,
) -> None:
    approved, rejected = decided
    deliver(db, mailing)
    deliver_everything_again(db, mailing)
    written = [m for m in all_mails(db) if m.kind == "campaign_reviewed"]
    assert len(written) == 3
    assert {m.to_address for m in written} == {email_of(db, organiser)}
    assert all(m.list_unsubscribe is None for m in written)

    send_due(db, mailing.smtp)  # type: ignore[arg-type]
    received = {m["Subject"]: m for m in mail_server.wait_for(3)}
    assert set(received) == {
        f"Your campaign {approved.title} is approved",
        f"Your campaign {rejected.title} was not approved",
        f"Your campaign {approved.title} is suspended",
    }
    text, html = parts(received[f"Your campaign {rejected.title} was not approved"])
    assert "No medical <estimate>." in text
    assert "No medical &lt;estimate&gt;." in html
    assert f"/#/campaigns/{rejected.id}" in text and ORG["org_name"] in text
    text, _html = parts(received[f"Your campaign {approved.title} is suspended"])
    assert "Checking a report." in text
    for message in received.values():
        assert message["List-Unsubscribe"] is None
        assert "unsubscribe" not in parts(message)[0].lower()
