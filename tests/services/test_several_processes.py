"""Several processes on one SQLite file (`serve --workers N`): each outbox
event is leased by one dispatcher, a lease that ran out is taken over and
no longer the first's, two dispatchers delivering at once deliver every
event exactly once, with exact totals, a guest signed out in one process
is refused by the other at once, and their writes take turns. Also checked
on PostgreSQL, whose dispatchers claim with FOR UPDATE SKIP LOCKED."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from datetime import timedelta

import pytest
from sqlalchemy import Connection

from careforall.broadcaster import Broadcaster
from careforall.db import Database, make_engine
from careforall.domain.clock import utcnow
from careforall.domain.errors import DomainError
from careforall.models import Campaign
from careforall.outbox.dispatcher import Dispatcher
from careforall.outbox.handlers import HandlerContext
from careforall.payments.simulated import SimulatedProvider
from careforall.services import auth, outbox
from careforall.services.auth import TokenKeys
from careforall.services.unit_of_work import UnitOfWork
from careforall.settings import Settings
from tests.helpers.pledges import give, provider_says
from tests.helpers.turns import check_writes_take_turns
from tests.services.conftest import MakeAnon, MakeUser, totals


@pytest.fixture
def processes(settings: Settings) -> Iterator[list[Database]]:
    """Two databases as two server processes would hold them (an engine and
    a pool each), knowing that several processes serve."""
    shared = settings.with_(workers=2)
    dbs = [Database(make_engine(shared), processes=2) for _ in range(2)]
    yield dbs
    for db in dbs:
        db.dispose()


def test_an_event_is_leased_once_and_a_lease_that_ran_out_is_taken_over(
    processes: list[Database], make_user: MakeUser, campaign: Campaign
) -> None:
    one, two = processes
    give(one, make_user(), campaign, 1_000)
    now = utcnow()
    mine_until = now + timedelta(seconds=60)
    with one.write_session() as session:
        mine = outbox.lease(session, now=now, limit=10, until=mine_until)
        session.commit()
    assert mine
    ids = [row.id for row in mine if row.id is not None]
    with two.write_session() as session:
        assert outbox.lease(session, now=now, limit=10, until=mine_until) == []
        session.commit()
    # The first process stalls past its lease; the second takes the events.
    later = mine_until + timedelta(seconds=1)
    theirs_until = later + timedelta(seconds=60)
    with two.write_session() as session:
        theirs = outbox.lease(session, now=later, limit=10, until=theirs_until)
        session.commit()
    assert [row.id for row in theirs] == ids
    with one.read() as session:
        assert outbox.still_held(session, ids, until=mine_until) == set()
        assert outbox.still_held(session, ids, until=theirs_until) == set(ids)


def test_two_dispatchers_at_once_deliver_every_event_once_with_exact_totals(
    processes: list[Database],
    settings: Settings,
    make_user: MakeUser,
    campaign: Campaign,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    delivered: list[int] = []
    lock = threading.Lock()
    mark = outbox.mark_delivered

    def recording(conn: Connection, ids: Sequence[int], **kwargs: object) -> None:
        mark(conn, ids, **kwargs)  # type: ignore[arg-type]
        with lock:
            delivered.extend(ids)

    monkeypatch.setattr(outbox, "mark_delivered", recording)
    donor = make_user()
    amounts = [100 + n for n in range(40)]
    for amount in amounts:
        pledge_id = give(processes[0], donor, campaign, amount)
        provider_says(processes[0], pledge_id, "authorized")
        provider_says(processes[0], pledge_id, "captured")
    with processes[0].read() as session:
        waiting = outbox.counts(session).pending
    # PledgeCreated is written delivered: two status changes a pledge wait.
    assert waiting >= 2 * len(amounts)

    def run(db: Database) -> None:
        ctx = HandlerContext(
            db=db,
            settings=settings.with_(auto_capture=False, workers=2),
            provider=SimulatedProvider(db),
        )
        dispatcher = Dispatcher(ctx, Broadcaster(), batch_size=7)
        while True:
            dispatcher.process_due()
            with db.read() as session:
                if outbox.counts(session).pending == 0:
                    return

    threads = [threading.Thread(target=run, args=(db,)) for db in processes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(delivered) == len(set(delivered)) == waiting
    assert totals(processes[0], campaign.id) == (sum(amounts), len(amounts))


def test_a_guest_signed_out_in_one_process_is_refused_by_the_other_at_once(
    processes: list[Database], keys: TokenKeys, make_anon: MakeAnon
) -> None:
    one, two = processes
    principal, token = make_anon()
    for db in processes:  # each process has seen the token once
        assert auth.authenticate(db, keys, token) == principal
    auth.logout(UnitOfWork(one), principal=principal)
    with pytest.raises(DomainError):
        auth.authenticate(two, keys, token)


@pytest.mark.sqlite_only
def test_write_transactions_of_two_processes_take_turns(
    processes: list[Database],
) -> None:
    """The kernel hands the turn over from one process to the next."""
    one, two = processes
    check_writes_take_turns(one, two)
