"""Mails written through the real outbox: a capture sends one receipt, whatever
the redeliveries; refunds and declines have their own mails; receipt numbers
have no gaps, also with two writers at once on PostgreSQL; without SMTP the
mails are kept for the admins to read."""

from __future__ import annotations

import re
import threading

import pytest
from sqlmodel import col, select

from careforall.db import Database
from careforall.domain.clock import utcnow
from careforall.domain.events import PledgeStatusChanged
from careforall.domain.rules import Principal
from careforall.models import Campaign, Pledge
from careforall.services import mail_queue
from careforall.services.mails import write_pledge_mails
from careforall.settings import Settings
from tests.helpers.mails import ORG, all_mails, email_of, parts, send_due
from tests.helpers.outbox import deliver, deliver_everything_again
from tests.helpers.pledges import give, paid, provider_says
from tests.helpers.smtp import MailServer
from tests.services.conftest import MakeUser


def test_a_capture_sends_exactly_one_receipt(
    db: Database,
    mailing: Settings,
    mail_server: MailServer,
    make_user: MakeUser,
    campaign: Campaign,
) -> None:
    donor = make_user()
    pledge_id = paid(db, donor, campaign, 2500)
    deliver(db, mailing)
    deliver_everything_again(db, mailing)  # a redelivered capture writes nothing
    send_due(db, mailing.smtp)  # type: ignore[arg-type]
    send_due(db, mailing.smtp)  # type: ignore[arg-type]

    [message] = mail_server.wait_for(1)
    assert len(mail_server.wait_for(2, timeout=0.3)) == 1
    assert message["To"] == email_of(db, donor)
    assert message["From"] == ORG["mail_from"]
    assert "receipt" in message["Subject"].lower()
    assert message["Message-ID"] and message["Date"]
    text, html = parts(message)
    today = utcnow()
    for expected in (
        "$25.00",
        campaign.title,
        f"{today.day} {today:%B %Y}",
        pledge_id,
        "R-000001",
        ORG["org_name"],
        ORG["org_address"],
        ORG["org_tax_id"],
    ):
        assert expected in text
    assert "Hope &amp; Care Foundation" in html and "$25.00" in html
    [mail] = all_mails(db)
    assert (mail.status, mail.kind, mail.attempts) == ("sent", "receipt", 1)


def test_receipt_numbers_follow_each_other_and_notices_have_their_own_mails(
    db: Database, mailing: Settings, make_user: MakeUser, campaign: Campaign
) -> None:
    donor = make_user()
    first, second, declined = (give(db, donor, campaign, n) for n in (100, 200, 300))
    provider_says(db, first, "captured")
    provider_says(db, declined, "failed", reason="Insufficient funds.")
    deliver(db, mailing)
    provider_says(db, second, "captured")
    provider_says(db, first, "refunded")
    deliver(db, mailing)
    deliver_everything_again(db, mailing)

    mails = {mail.cause_key: mail for mail in all_mails(db)}
    assert sorted(mails) == sorted(
        [
            f"receipt:{first}",
            f"receipt:{second}",
            f"declined:{declined}",
            f"refund:{first}",
        ]
    )
    numbers = [
        re.search(r"R-\d{6}", mails[f"receipt:{p}"].text).group()  # type: ignore[union-attr]
        for p in (first, second)
    ]
    assert numbers == ["R-000001", "R-000002"]
    assert "Insufficient funds." in mails[f"declined:{declined}"].text
    assert "refunded" in mails[f"refund:{first}"].subject
    assert "$1.00" in mails[f"refund:{first}"].text


def test_without_smtp_the_mail_is_kept_and_an_admin_reads_it(
    db: Database,
    settings: Settings,
    make_user: MakeUser,
    admin: Principal,
    campaign: Campaign,
) -> None:
    assert settings.smtp is None
    donor = make_user()
    first = give(db, donor, campaign, 2500)
    second = give(db, donor, campaign, 700)
    provider_says(db, first, "captured")
    deliver(db, settings)
    provider_says(db, second, "captured")
    deliver(db, settings)

    with db.read() as session:
        page = mail_queue.mails(session, principal=admin, first=1, after=None)
        assert page.has_next_page
        rest = mail_queue.mails(
            session, principal=admin, first=10, after=page.end_cursor
        )
    newest, oldest = page.items[0], rest.items[0]
    assert (newest.status, oldest.status) == ("kept", "kept")
    assert second in newest.text and "$7.00" in newest.text
    assert first in oldest.text and "R-000001" in oldest.text
    assert newest.to_address == email_of(db, donor)


# --- receipt numbers without gaps ---------------------------------------------


def captured(pledge_id: str, campaign: Campaign) -> PledgeStatusChanged:
    return PledgeStatusChanged(
        pledge_id=pledge_id,
        campaign_id=campaign.id,
        amount_cents=100,
        currency=campaign.currency,
        from_status="AUTHORIZED",
        to_status="CAPTURED",
        source="test",
    )


def receipt_numbers(db: Database) -> dict[str, str]:
    numbers = {}
    for mail in all_mails(db):
        found = re.search(r"R-\d{6}", mail.text)
        assert found is not None
        numbers[mail.cause_key.removeprefix("receipt:")] = found.group()
    # Each pledge keeps the number its receipt bears (the receipt page's).
    with db.read() as session:
        stored = {
            p.id: p.receipt_number
            for p in session.exec(select(Pledge).where(col(Pledge.id).in_(numbers)))
        }
    assert stored == numbers
    return numbers


def test_a_rolled_back_receipt_leaves_no_gap(
    db: Database, mailing: Settings, make_user: MakeUser, campaign: Campaign
) -> None:
    donor = make_user()
    first, second = (give(db, donor, campaign, 100) for _ in range(2))
    with db.write_connection() as conn, conn.begin() as transaction:
        assert write_pledge_mails(conn, [captured(first, campaign)], mailing) == 1
        transaction.rollback()  # the batch failed: its mail and number go
    with db.write_connection() as conn, conn.begin():
        events = [captured(second, campaign), captured(first, campaign)]
        assert write_pledge_mails(conn, events, mailing) == 2
        assert write_pledge_mails(conn, events, mailing) == 0  # written already
    assert receipt_numbers(db) == {second: "R-000001", first: "R-000002"}


@pytest.mark.postgres_only
def test_two_processes_number_receipts_without_gaps_or_twins(
    db: Database, mailing: Settings, make_user: MakeUser, campaign: Campaign
) -> None:
    """Writers on separate connections at once (as two server processes are):
    the second waits on the counter row until the first commits or rolls
    back, then numbers after what committed."""
    donor = make_user()
    pledges = [give(db, donor, campaign, 100) for _ in range(3)]
    first_has_raised = threading.Event()
    first_may_end = threading.Event()

    def slow_writer(pledge_id: str, commit: bool) -> None:
        with db.write_connection() as conn, conn.begin() as transaction:
            assert write_pledge_mails(conn, [captured(pledge_id, campaign)], mailing)
            first_has_raised.set()
            first_may_end.wait(10)
            if not commit:
                transaction.rollback()

    def writer(pledge_id: str) -> None:
        with db.write_connection() as conn, conn.begin():
            write_pledge_mails(conn, [captured(pledge_id, campaign)], mailing)

    rounds = ((False, pledges[0], pledges[1]), (True, pledges[2], pledges[0]))
    for commit, held, waiting in rounds:
        first_has_raised.clear()
        first_may_end.clear()
        slow = threading.Thread(target=slow_writer, args=(held, commit))
        slow.start()
        assert first_has_raised.wait(10)
        other = threading.Thread(target=writer, args=(waiting,))
        other.start()
        other.join(0.5)
        assert other.is_alive()  # held on the counter row
        first_may_end.set()
        slow.join(10)
        other.join(10)
    # Round one: pledge 0's receipt rolled back, so pledge 1's is number 1.
    # Round two: pledge 2's committed first (2), pledge 0's waited (3).
    assert receipt_numbers(db) == {
        pledges[1]: "R-000001",
        pledges[2]: "R-000002",
        pledges[0]: "R-000003",
    }
