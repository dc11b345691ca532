"""Group commit: jobs waiting for the writer share one transaction and one
commit; each runs in a savepoint of its own, and nobody hears back before the
commit is durable."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import replace
from typing import Any

import pytest
from sqlalchemy import event, insert, text
from sqlalchemy.exc import IntegrityError

from careforall.db import Database, make_engine
from careforall.domain.clock import utcnow
from careforall.domain.errors import IdempotencyKeyReused, NotFound, ServiceBusy
from careforall.domain.rules import Principal
from careforall.models import Campaign, Pledge, WebhookEvent, table_of
from careforall.services.payments import ProviderEvent, apply_provider_event
from careforall.services.pledges import PledgeData, create_pledge
from careforall.services.unit_of_work import UnitOfWork
from careforall.services.writer import Writer
from careforall.settings import Settings
from tests.services.conftest import MakeAnon, count_rows

# Group commit serves SQLite's single writer; PostgreSQL does not use it.
pytestmark = pytest.mark.sqlite_only

WAIT = 10.0


@pytest.fixture
def writer(db: Database) -> Iterator[Writer]:
    """A writer not started yet: jobs submitted first all wait for one batch."""
    w = Writer(db)
    yield w
    w.stop(timeout=WAIT)


@pytest.fixture
def guest(make_anon: MakeAnon) -> Principal:
    return make_anon()[0]


@pytest.fixture
def commits(db: Database, guest: Principal, campaign: Campaign) -> list[int]:
    """One entry per COMMIT any connection of the engine sends, from now on
    (after the guest and the campaign were made)."""
    seen: list[int] = []
    event.listen(db.engine, "commit", lambda _conn: seen.append(1))
    return seen


def _pledge(
    guest: Principal, campaign: Campaign | str, key: str, amount: int = 2500
) -> Callable[[UnitOfWork], Pledge]:
    campaign_id = campaign if isinstance(campaign, str) else campaign.id
    data = PledgeData(campaign_id=campaign_id, amount_cents=amount, idempotency_key=key)
    return lambda uow: create_pledge(uow, principal=guest, data=data)


def _results(futures: list[Future[Any]]) -> list[Any]:
    return [f.result(timeout=WAIT) for f in futures]


def _pledges_created(db: Database) -> int:
    with db.engine.connect() as conn:
        sql = "SELECT count(*) FROM outbox_events WHERE name = 'PledgeCreated'"
        return int(conn.execute(text(sql)).scalar_one())


def _sqlite_count(db_url: str, sql: str, *params: object) -> int:
    """Counted over a connection of its own: sees only committed rows."""
    conn = sqlite3.connect(db_url.removeprefix("sqlite:///"))
    try:
        return int(conn.execute(sql, params).fetchone()[0])
    finally:
        conn.close()


def test_waiting_jobs_share_one_transaction_and_one_commit(
    db: Database,
    writer: Writer,
    commits: list[int],
    guest: Principal,
    campaign: Campaign,
) -> None:
    futures = [writer.submit(_pledge(guest, campaign, f"k-{i}")) for i in range(20)]
    writer.start()
    pledges = _results(futures)
    assert len({p.id for p in pledges}) == 20
    assert [p.idempotency_key for p in pledges] == [f"k-{i}" for i in range(20)]
    assert len(commits) == 1
    assert count_rows(db, "pledges") == 20
    assert _pledges_created(db) == 20


def test_concurrent_requests_commit_fewer_times_than_there_are_requests(
    db: Database, commits: list[int], guest: Principal, campaign: Campaign
) -> None:
    w = Writer(db)
    w.start()
    try:

        async def burst() -> list[Pledge]:
            return await asyncio.gather(
                *(w.run(_pledge(guest, campaign, f"c-{i}")) for i in range(50))
            )

        pledges = asyncio.run(burst())
    finally:
        w.stop(timeout=WAIT)
    assert len({p.id for p in pledges}) == 50
    assert count_rows(db, "pledges") == 50
    assert 1 <= len(commits) < 50


def test_a_failing_job_is_undone_alone(
    db: Database,
    writer: Writer,
    commits: list[int],
    guest: Principal,
    campaign: Campaign,
) -> None:
    def writes_then_fails(uow: UnitOfWork) -> None:
        with uow:
            uow.session.add(WebhookEvent(event_id="half", type="x", pledge_id="p"))
            uow.session.flush()
            raise RuntimeError("boom")

    def duplicate_insert(uow: UnitOfWork) -> str:
        # The IntegrityError path of the services: caught, rolled back, answered.
        with uow:
            uow.session.add(WebhookEvent(event_id="first", type="x", pledge_id="p"))
            try:
                uow.commit()
            except IntegrityError:
                uow.rollback()
                return "duplicate"
        return "stored"

    def store_first(uow: UnitOfWork) -> str:
        with uow:
            uow.session.add(WebhookEvent(event_id="first", type="x", pledge_id="p"))
            uow.commit()
        return "stored"

    futures: list[Future[Any]] = [
        writer.submit(_pledge(guest, campaign, "ok-1")),
        writer.submit(writes_then_fails),
        writer.submit(_pledge(guest, "cmp_missing", "no-campaign")),
        writer.submit(store_first),
        writer.submit(duplicate_insert),
        writer.submit(_pledge(guest, campaign, "ok-2")),
    ]
    writer.start()
    assert futures[0].result(WAIT).idempotency_key == "ok-1"
    with pytest.raises(RuntimeError, match="boom"):
        futures[1].result(WAIT)
    with pytest.raises(NotFound):
        futures[2].result(WAIT)
    assert [f.result(WAIT) for f in futures[3:5]] == ["stored", "duplicate"]
    assert futures[5].result(WAIT).idempotency_key == "ok-2"
    assert len(commits) == 1
    with db.engine.connect() as conn:
        keys = conn.execute(
            text("SELECT idempotency_key FROM pledges ORDER BY idempotency_key")
        ).all()
        events = conn.execute(text("SELECT event_id FROM webhook_events")).all()
    assert [k for (k,) in keys] == ["ok-1", "ok-2"]
    assert [e for (e,) in events] == ["first"]
    assert _pledges_created(db) == 2


def _core_event(uow: UnitOfWork, event_id: str) -> None:
    """A webhook event row written with Core, on the unit's connection."""
    uow.connection.execute(
        insert(table_of(WebhookEvent)).values(
            event_id=event_id, type="x", pledge_id="p", received_at=utcnow()
        )
    )


def test_a_unit_on_its_connection_keeps_or_undoes_its_own_writes_only(
    db: Database,
    writer: Writer,
    commits: list[int],
    guest: Principal,
    campaign: Campaign,
) -> None:
    """Units running Core statements on `uow.connection` (with no session, or
    with one made afterwards) commit and roll back exactly as session units do."""

    def core_then_fails(uow: UnitOfWork) -> None:
        with uow:
            _core_event(uow, "core-failed")
            raise RuntimeError("core boom")

    def core_and_session_then_fail(uow: UnitOfWork) -> None:
        with uow:
            _core_event(uow, "mixed-failed-core")
            uow.session.add(
                WebhookEvent(event_id="mixed-failed-orm", type="x", pledge_id="p")
            )
            uow.session.flush()
            raise RuntimeError("mixed boom")

    def core_and_session_commit(uow: UnitOfWork) -> None:
        with uow:
            _core_event(uow, "mixed-core")
            uow.session.add(WebhookEvent(event_id="mixed-orm", type="x", pledge_id="p"))
            _core_event(uow, "mixed-core-after")
            uow.commit()

    def commits_then_writes_more(uow: UnitOfWork) -> None:
        with uow:
            _core_event(uow, "committed")
            uow.commit()
            _core_event(uow, "after-commit")  # no commit: undone on leaving

    def rolls_back_then_writes(uow: UnitOfWork) -> None:
        with uow:
            _core_event(uow, "rolled-back")
            uow.rollback()
            _core_event(uow, "after-rollback")
            uow.commit()

    futures: list[Future[Any]] = [
        writer.submit(_pledge(guest, campaign, "c-1")),
        writer.submit(core_then_fails),
        writer.submit(core_and_session_then_fail),
        writer.submit(core_and_session_commit),
        writer.submit(commits_then_writes_more),
        writer.submit(rolls_back_then_writes),
        writer.submit(_pledge(guest, campaign, "c-1")),  # a replay in the batch
        writer.submit(_pledge(guest, campaign, "c-2")),
    ]
    writer.start()
    first = futures[0].result(WAIT)
    for future, message in ((futures[1], "core boom"), (futures[2], "mixed boom")):
        with pytest.raises(RuntimeError, match=message):
            future.result(WAIT)
    for future in futures[3:6]:
        assert future.result(WAIT) is None
    assert futures[6].result(WAIT).id == first.id
    assert futures[7].result(WAIT).idempotency_key == "c-2"
    assert len(commits) == 1
    with db.engine.connect() as conn:
        events = conn.execute(
            text("SELECT event_id FROM webhook_events ORDER BY event_id")
        ).all()
    assert [e for (e,) in events] == [
        "after-rollback",
        "committed",
        "mixed-core",
        "mixed-core-after",
        "mixed-orm",
    ]
    assert count_rows(db, "pledges") == 2
    assert _pledges_created(db) == 2


def test_a_unit_is_used_inside_with_only(db: Database) -> None:
    uow = UnitOfWork(db)
    for use in (lambda: uow.session, lambda: uow.connection, uow.commit, uow.rollback):
        with pytest.raises(RuntimeError, match="inside 'with'"):
            use()


def test_answers_and_events_come_only_after_the_commit(
    db: Database, db_url: str, writer: Writer, guest: Principal, campaign: Campaign
) -> None:
    seen_at_answer: list[int] = []
    seen_at_publish: list[int] = []
    count = "SELECT count(*) FROM pledges"
    db.on_commit(lambda: seen_at_publish.append(_sqlite_count(db_url, count)))
    futures = [writer.submit(_pledge(guest, campaign, f"d-{i}")) for i in range(5)]
    for future in futures:
        future.add_done_callback(
            lambda _f: seen_at_answer.append(_sqlite_count(db_url, count))
        )
    writer.start()
    _results(futures)
    writer.stop(timeout=WAIT)  # the callbacks ran in the writer's thread
    # Another connection already saw all five rows when the first answer left.
    assert seen_at_answer == [5] * 5
    assert seen_at_publish == [5]


def test_the_same_idempotency_key_twice_in_one_batch_makes_one_pledge(
    db: Database,
    writer: Writer,
    commits: list[int],
    guest: Principal,
    campaign: Campaign,
) -> None:
    futures = [
        writer.submit(_pledge(guest, campaign, "same")),
        writer.submit(_pledge(guest, campaign, "same")),
        writer.submit(_pledge(guest, campaign, "same", amount=9999)),
    ]
    writer.start()
    first, second = futures[0].result(WAIT), futures[1].result(WAIT)
    with pytest.raises(IdempotencyKeyReused):
        futures[2].result(WAIT)
    assert first.id == second.id
    assert len(commits) == 1
    assert count_rows(db, "pledges") == 1
    assert _pledges_created(db) == 1


def test_the_same_webhook_event_twice_in_one_batch_applies_once(
    db: Database, writer: Writer, guest: Principal, campaign: Campaign
) -> None:
    pledge = _pledge(guest, campaign, "hooked")(UnitOfWork(db))
    before = count_rows(db, "outbox_events")
    evt = ProviderEvent(
        id="evt-1",
        type="payment.authorized",
        pledge_id=pledge.id,
        amount_cents=pledge.amount_cents,
        currency=pledge.currency,
    )

    def apply(uow: UnitOfWork) -> bool:
        return apply_provider_event(uow, event=evt)

    futures = [writer.submit(apply), writer.submit(apply)]
    writer.start()
    assert _results(futures) == [False, True]
    # And across batches too.
    assert writer.submit(apply).result(WAIT) is True
    with db.read() as session:
        stored = session.get(Pledge, pledge.id)
        assert stored is not None
        assert stored.status == "AUTHORIZED"
    assert count_rows(db, "webhook_events") == 1
    assert count_rows(db, "outbox_events") == before + 1


def test_a_write_lock_held_past_the_busy_timeout_fails_the_batch_as_busy(
    settings: Settings, db_url: str, guest: Principal, campaign: Campaign
) -> None:
    db = Database(make_engine(replace(settings, busy_timeout_ms=100)))
    w = Writer(db)
    w.start()
    holder = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        futures = [w.submit(_pledge(guest, campaign, f"b-{i}")) for i in range(3)]
        for future in futures:
            with pytest.raises(ServiceBusy):
                future.result(WAIT)
        holder.execute("ROLLBACK")
        assert count_rows(db, "pledges") == 0
        # The lock gone, the same request succeeds.
        assert w.submit(_pledge(guest, campaign, "b-0")).result(WAIT).amount_cents
        assert count_rows(db, "pledges") == 1
    finally:
        holder.close()
        w.stop(timeout=WAIT)
        db.dispose()


def test_stop_finishes_the_queued_jobs_then_refuses_new_ones(
    db: Database, guest: Principal, campaign: Campaign
) -> None:
    w = Writer(db, max_batch=4)
    futures = [w.submit(_pledge(guest, campaign, f"s-{i}")) for i in range(10)]
    w.start()
    w.stop(timeout=WAIT)
    assert len({p.id for p in _results(futures)}) == 10
    late = w.submit(_pledge(guest, campaign, "late"))
    with pytest.raises(ServiceBusy):
        late.result(WAIT)
    assert count_rows(db, "pledges") == 10


def test_a_writer_stopped_before_it_started_fails_what_was_queued(
    db: Database, guest: Principal, campaign: Campaign
) -> None:
    w = Writer(db)
    queued = w.submit(_pledge(guest, campaign, "never"))
    w.stop()
    with pytest.raises(ServiceBusy):
        queued.result(WAIT)
    assert count_rows(db, "pledges") == 0


def test_a_busy_writer_lets_the_other_writers_of_the_process_in(
    settings: Settings, guest: Principal, campaign: Campaign
) -> None:
    """The outbox dispatcher must not starve while requests keep coming."""
    db = Database(make_engine(replace(settings, busy_timeout_ms=500)))
    w = Writer(db)
    done = threading.Event()

    def slow_job(uow: UnitOfWork) -> None:
        with uow:
            uow.session.execute(text("SELECT 1"))
            time.sleep(0.002)  # holds the write lock, as real work does

    def feed() -> None:
        while not done.is_set():
            futures = [w.submit(slow_job) for _ in range(20)]
            for future in futures:
                future.result(WAIT)

    w.start()
    feeders = [threading.Thread(target=feed) for _ in range(3)]
    for feeder in feeders:
        feeder.start()
    try:
        for i in range(5):
            with db.write_session() as session:
                session.execute(
                    text("INSERT INTO app_secrets (name, value) VALUES (:n, 'v')"),
                    {"n": f"other-writer-{i}"},
                )
                session.commit()
    finally:
        done.set()
        for feeder in feeders:
            feeder.join(WAIT)
        w.stop(timeout=WAIT)
        db.dispose()
    assert count_rows(db, "app_secrets") >= 5


def test_callers_on_the_event_loop_share_a_batch_and_get_their_own_answers(
    db: Database,
    writer: Writer,
    commits: list[int],
    guest: Principal,
    campaign: Campaign,
) -> None:
    """`run` (what the API awaits) answers a whole batch on the loop at once."""

    async def main() -> list[Any]:
        calls = [
            writer.run(_pledge(guest, campaign, "loop-1")),
            writer.run(_pledge(guest, "cmp_missing", "loop-2")),
            writer.run(_pledge(guest, campaign, "loop-3")),
        ]
        tasks = [asyncio.ensure_future(call) for call in calls]
        await asyncio.sleep(0)  # all three queued before the writer starts
        writer.start()
        return await asyncio.gather(*tasks, return_exceptions=True)

    first, missing, third = asyncio.run(main())
    assert (first.idempotency_key, third.idempotency_key) == ("loop-1", "loop-3")
    assert isinstance(missing, NotFound)
    assert len(commits) == 1
    assert count_rows(db, "pledges") == 2


def test_a_caller_that_gave_up_before_its_batch_began_writes_nothing(
    db: Database, writer: Writer, guest: Principal, campaign: Campaign
) -> None:
    async def main() -> Any:
        gone = asyncio.ensure_future(writer.run(_pledge(guest, campaign, "gone")))
        kept = asyncio.ensure_future(writer.run(_pledge(guest, campaign, "kept")))
        await asyncio.sleep(0)  # one loop step: both jobs queued
        gone.cancel()  # the client went away while its job waited
        await asyncio.sleep(0)  # one loop step: the cancellation delivered
        writer.start()
        return await kept

    assert asyncio.run(main()).idempotency_key == "kept"
    assert count_rows(db, "pledges") == 1


def test_a_stopped_writer_refuses_callers_on_the_loop(db: Database) -> None:
    w = Writer(db)
    w.start()
    w.stop(timeout=WAIT)

    async def main() -> None:
        await w.run(lambda uow: None)

    with pytest.raises(ServiceBusy):
        asyncio.run(main())


def test_one_failing_caller_on_the_loop_leaves_the_others_answered(
    db: Database, writer: Writer, guest: Principal, campaign: Campaign
) -> None:
    """Even an error no future may hold (StopIteration) is answered as an
    error of its own, and the batch's other callers still get theirs."""

    def runs_dry(uow: UnitOfWork) -> None:
        next(iter(()))

    async def main() -> list[Any]:
        calls = [
            writer.run(_pledge(guest, campaign, "before")),
            writer.run(runs_dry),
            writer.run(_pledge(guest, campaign, "after")),
        ]
        tasks = [asyncio.ensure_future(call) for call in calls]
        await asyncio.sleep(0)  # one loop step: all three queued
        writer.start()
        return await asyncio.wait_for(
            asyncio.gather(*tasks, return_exceptions=True), WAIT
        )

    before, dry, after = asyncio.run(main())
    assert (before.idempotency_key, after.idempotency_key) == ("before", "after")
    assert isinstance(dry, RuntimeError)
    assert count_rows(db, "pledges") == 2
