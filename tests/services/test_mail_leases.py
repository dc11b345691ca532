"""The sender records a try only where it still holds the mail: on
PostgreSQL, a lease that ran out and was taken by another process is theirs
to record; and an outcome that cannot be recorded (the database away) is kept
and recorded later, its mail never sent twice meanwhile."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import update

from careforall.db import Database
from careforall.domain.clock import utcnow
from careforall.models import Campaign, Mail
from careforall.outbox.mailer import MailSender
from careforall.services import mail_queue
from careforall.services.mail_queue import Outcome
from careforall.services.unit_of_work import UnitOfWork
from careforall.settings import Settings
from tests.helpers.mails import ORG, all_mails
from tests.helpers.outbox import deliver
from tests.helpers.pledges import paid
from tests.helpers.smtp import MailServer
from tests.services.conftest import MakeUser


def queue_receipts(
    db: Database, settings: Settings, make_user: MakeUser, campaign: Campaign, n: int
) -> None:
    donor = make_user()
    for _ in range(n):
        paid(db, donor, campaign, 1_000)
    deliver(db, settings)


@pytest.mark.postgres_only
def test_a_lease_taken_over_by_another_process_is_theirs_to_record(
    db: Database, mailing: Settings, make_user: MakeUser, campaign: Campaign
) -> None:
    queue_receipts(db, mailing, make_user, campaign, 1)
    mine = mail_queue.take_due(db)
    [row] = mine.rows
    assert mine.lease is not None
    # This process is slow; its lease runs out and another process takes it.
    with UnitOfWork(db) as uow:
        uow.session.execute(update(Mail).values(next_attempt_at=utcnow()))
        uow.commit()
    theirs = mail_queue.take_due(db)
    assert [r.id for r in theirs.rows] == [row.id] and theirs.lease != mine.lease

    failed = Outcome(row.id, "TimeoutError: too slow")
    assert mail_queue.record(db, [(row, failed)], base_delay=1, lease=mine.lease) == 0
    [mail] = all_mails(db)
    assert (mail.status, mail.attempts, mail.last_error) == ("queued", 0, None)
    assert mail.next_attempt_at == theirs.lease  # still theirs

    sent = Outcome(row.id)
    assert mail_queue.record(db, [(row, sent)], base_delay=1, lease=theirs.lease) == 1
    [mail] = all_mails(db)
    assert (mail.status, mail.attempts) == ("sent", 1)


def test_a_mail_recorded_already_is_not_recorded_again(
    db: Database, mailing: Settings, make_user: MakeUser, campaign: Campaign
) -> None:
    queue_receipts(db, mailing, make_user, campaign, 1)
    taken = mail_queue.take_due(db)
    [row] = taken.rows
    outcome = Outcome(row.id)
    assert mail_queue.record(db, [(row, outcome)], base_delay=1, lease=taken.lease) == 1
    again = Outcome(row.id, "refused: 550", refused=True)
    assert mail_queue.record(db, [(row, again)], base_delay=1, lease=taken.lease) == 0
    [mail] = all_mails(db)
    assert (mail.status, mail.attempts) == ("sent", 1)


def test_outcomes_that_cannot_be_recorded_never_send_their_mails_again(
    db: Database,
    mailing: Settings,
    mail_server: MailServer,
    make_user: MakeUser,
    campaign: Campaign,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queue_receipts(db, mailing, make_user, campaign, 3)
    real_record = mail_queue.record
    failures = {"left": 3}  # the round's, then each of the first two alone

    def flaky(*args: object, **kwargs: object) -> int:
        if failures["left"]:
            failures["left"] -= 1
            raise ConnectionError("database away")
        return real_record(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(mail_queue, "record", flaky)
    sender = MailSender(db, mail_server.smtp, sender=ORG["mail_from"])

    async def rounds(n: int) -> None:
        for _ in range(n):
            await sender.send_due()

    asyncio.run(rounds(1))
    assert len(mail_server.wait_for(3)) == 3
    statuses = sorted(m.status for m in all_mails(db))
    assert statuses == ["queued", "queued", "sent"]  # two outcomes kept

    # A mail queued meanwhile is sent; the two kept are recorded, not resent.
    queue_receipts(db, mailing, make_user, campaign, 1)
    asyncio.run(rounds(2))
    assert len(mail_server.wait_for(5, timeout=0.5)) == 4
    assert [(m.status, m.attempts) for m in all_mails(db)] == [("sent", 1)] * 4
