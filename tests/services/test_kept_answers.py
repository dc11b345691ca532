"""Which commits end the response cache's answers: those that may change a
public answer. New PENDING pledges do not (the stampede of donations on a busy
campaign would otherwise make every read of its page a miss); anything else
committed with them does."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import text, update

from careforall.db import Database
from careforall.domain.rules import Principal
from careforall.models import Campaign, Pledge, table_of
from careforall.services.pledges import PledgeData, create_pledge
from careforall.services.unit_of_work import UnitOfWork
from careforall.services.writer import Writer
from tests.services.conftest import MakeAnon

WAIT = 10.0
_CAMPAIGNS = table_of(Campaign)


@pytest.fixture
def guest(make_anon: MakeAnon) -> Principal:
    return make_anon()[0]


@pytest.fixture
def writer(db: Database) -> Iterator[Writer]:
    """Not started yet: jobs submitted first all wait for one batch."""
    w = Writer(db)
    yield w
    w.stop(timeout=WAIT)


def _pledge(
    guest: Principal, campaign: Campaign, key: str
) -> Callable[[UnitOfWork], Pledge]:
    data = PledgeData(campaign_id=campaign.id, amount_cents=2500, idempotency_key=key)
    return lambda uow: create_pledge(uow, principal=guest, data=data)


def _retitle(campaign: Campaign, title: str) -> Callable[[UnitOfWork], None]:
    def run(uow: UnitOfWork) -> None:
        with uow:
            uow.session.execute(
                update(_CAMPAIGNS)
                .where(_CAMPAIGNS.c.id == campaign.id)
                .values(title=title)
            )
            uow.commit()

    return run


def test_a_new_pledge_leaves_kept_answers_current(
    db: Database, guest: Principal, campaign: Campaign
) -> None:
    before = db.data_version

    pledge = _pledge(guest, campaign, "k-1")(UnitOfWork(db))

    assert pledge.status == "PENDING"
    assert db.data_version == before


def test_a_commit_that_changes_a_campaign_ends_kept_answers(
    db: Database, campaign: Campaign
) -> None:
    before = db.data_version

    _retitle(campaign, "A new title")(UnitOfWork(db))

    assert db.data_version != before


@pytest.mark.sqlite_only
def test_a_batch_of_new_pledges_leaves_kept_answers_current(
    db: Database, writer: Writer, guest: Principal, campaign: Campaign
) -> None:
    before = db.data_version
    futures = [writer.submit(_pledge(guest, campaign, f"k-{i}")) for i in range(5)]
    writer.start()

    assert len({f.result(WAIT).id for f in futures}) == 5
    assert db.data_version == before


@pytest.mark.sqlite_only
def test_a_batch_with_any_other_write_ends_kept_answers(
    db: Database, writer: Writer, guest: Principal, campaign: Campaign
) -> None:
    before = db.data_version
    futures = [
        writer.submit(_pledge(guest, campaign, "k-1")),
        writer.submit(_retitle(campaign, "A new title")),
        writer.submit(_pledge(guest, campaign, "k-2")),
    ]
    writer.start()
    for future in futures:
        future.result(WAIT)

    assert db.data_version != before


def test_a_rolled_back_transaction_leaves_no_mark_behind(
    db: Database, campaign: Campaign
) -> None:
    with db.write_connection() as connection:
        with connection.begin() as transaction:
            db.keep_answers(connection)
            transaction.rollback()
        before = db.data_version
        # The next transaction on the same connection changes a campaign.
        with connection.begin():
            connection.execute(
                text("UPDATE campaigns SET title = 'Renamed' WHERE id = :id"),
                {"id": campaign.id},
            )

    assert db.data_version != before
