"""Recurring gifts charged by real processes: `careforall recurring run --now`
moving time month by month, a server killed (SIGKILL) in the middle of its
run and restarted, and two servers on one PostgreSQL database charging at
once. Each prints its figures (`pytest -s`): periods due, charged,
duplicates. No period is ever charged twice, and none is missed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import update
from sqlmodel import col

from careforall.db import Database, make_engine
from careforall.domain.clock import utcnow
from careforall.domain.recurring import RecurringInterval, period_due_at
from careforall.models import RecurringDonation
from careforall.settings import Settings
from tests import factories as f
from tests.helpers.api import ServerGQL
from tests.helpers.server import Server
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.server

MONTHLY = RecurringInterval.MONTHLY
CREATE = """
mutation($input: RecurringDonationInput!) {
  createRecurringDonation(input: $input) { id status }
}"""
# Every pledge a plan made for a period that was authorized or captured: what
# the donor paid, whatever the provider's webhooks did meanwhile.
PAID = (
    "SELECT recurring_donation_id, recurring_period FROM pledges "
    "WHERE recurring_donation_id IS NOT NULL "
    "AND status IN ('AUTHORIZED', 'CAPTURED')"
)


def _plans(server: Server, count: int) -> list[str]:
    """`count` monthly plans of one donor on a new campaign, each charged its
    first period already."""
    with httpx.Client(base_url=server.base_url, timeout=10.0) as http:
        return _plans_through(ServerGQL(http), count)


def _plans_through(api: ServerGQL, count: int) -> list[str]:
    donor = f.register(api)
    campaign = f.campaign(api, f.register(api).token)
    ids = []
    for _ in range(count):
        plan = api.ok(
            CREATE,
            {
                "input": {
                    "campaignId": campaign["id"],
                    "amountCents": 1_000,
                    "paymentMethod": "pm_card_ok",
                    "idempotencyKey": f.unique("plan"),
                }
            },
            donor.token,
        )["createRecurringDonation"]
        ids.append(plan["id"])
    return ids


@pytest.fixture
def beside(
    make_server: Callable[..., Server],
) -> Iterator[Callable[[Server], Database]]:
    """This test's own connection to a server's database."""
    opened: list[Database] = []

    def connect(server: Server) -> Database:
        db = Database(make_engine(Settings(database_url=server.database_url)))
        opened.append(db)
        return db

    yield connect
    for db in opened:
        db.dispose()


def _started_months_ago(db: Database, plan_ids: list[str], months: int) -> None:
    """Move the plans' start `months` back: periods 1 to `months` are due now."""
    with db.write_session() as session:
        for plan_id in plan_ids:
            plan = session.get(RecurringDonation, plan_id)
            assert plan is not None
            back = period_due_at(plan.started_at, MONTHLY, -months)
            session.execute(
                update(RecurringDonation)
                .where(col(RecurringDonation.id) == plan_id)
                .values(started_at=back, next_charge_at=period_due_at(back, MONTHLY, 1))
            )
        session.commit()


def _figures(server: Server, plan_ids: list[str], periods: int) -> tuple[int, int]:
    """Print and return (charged, duplicates) over the plans' periods."""
    rows = [r for r in server.query(PAID) if r[0] in set(plan_ids)]
    seen = {(plan, period) for plan, period in rows}
    duplicates = len(rows) - len(seen)
    due = len(plan_ids) * (periods + 1)
    print(
        f"\nperiods due {due} (with the first ones), charged {len(rows)}, "
        f"duplicates {duplicates}, missed {due - len(seen)}"
    )
    assert seen == {(p, n) for p in plan_ids for n in range(periods + 1)}
    return len(rows), duplicates


# The calendar is the command's: the database's part (each period charged
# once) is the kill and two-server tests' below, on both databases.
@pytest.mark.any_database
def test_thirteen_months_of_runs_give_twelve_periods_after_the_first(
    make_server: Callable[..., Server],
    beside: Callable[[Server], Database],
) -> None:
    # The server's own scheduler is off: only the command moves time here.
    server = make_server(CAREFORALL_RECURRING_INTERVAL_SECONDS="0")
    [plan_id] = _plans(server, 1)
    [(started,)] = server.query(
        "SELECT started_at FROM recurring_donations WHERE id = ?", (plan_id,)
    )
    start = _aware(started)
    runs = [period_due_at(start, MONTHLY, k) + timedelta(hours=1) for k in range(1, 13)]
    runs.append(period_due_at(start, MONTHLY, 13) - timedelta(seconds=1))
    for now in runs:
        done = server.command("recurring", "run", "--now", now.isoformat())
        assert done.returncode == 0, done.stderr
        assert "1 period(s) charged" in done.stdout or now == runs[-1], done.stdout
    charged, duplicates = _figures(server, [plan_id], 12)
    assert (charged, duplicates) == (13, 0)
    # The running server captures what the command authorized.
    wait_until(
        lambda: (
            server.scalar(
                "SELECT count(*) FROM pledges WHERE recurring_donation_id = ? "
                "AND status = 'CAPTURED'",
                (plan_id,),
            )
            == 13
        ),
        timeout=30,
    )


def test_a_server_killed_in_the_middle_of_its_run_misses_and_repeats_nothing(
    make_server: Callable[..., Server],
    beside: Callable[[Server], Database],
) -> None:
    server = make_server(CAREFORALL_RECURRING_INTERVAL_SECONDS="0")
    plan_ids = _plans(server, 8)
    server.stop()
    _started_months_ago(beside(server), plan_ids, 6)
    server.env["CAREFORALL_RECURRING_INTERVAL_SECONDS"] = "0.2"
    server.start()
    total = len(plan_ids) * 7
    # Killed once some, not all, of the due periods are charged.
    wait_until(lambda: len(server.query(PAID)) >= len(plan_ids) + 5, timeout=30)
    server.kill()
    at_kill = len(server.query(PAID))
    print(f"\nkilled with {at_kill} of {total} periods charged")
    # The plans it held wait for their lease to end: 30 s that pass here at once.
    lease_ended = utcnow() - timedelta(seconds=1)
    with beside(server).write_session() as session:
        held = col(RecurringDonation.claimed_until).is_not(None)
        session.execute(
            update(RecurringDonation).where(held).values(claimed_until=lease_ended)
        )
        session.commit()
    server.restart()
    wait_until(lambda: len(server.query(PAID)) >= total, timeout=90)
    charged, duplicates = _figures(server, plan_ids, 6)
    assert (charged, duplicates) == (total, 0)


@pytest.mark.postgres_only
def test_two_servers_charge_each_period_once(
    make_server: Callable[..., Server],
    beside: Callable[[Server], Database],
) -> None:
    first = make_server(CAREFORALL_RECURRING_INTERVAL_SECONDS="0")
    plan_ids = _plans(first, 20)
    first.stop()
    _started_months_ago(beside(first), plan_ids, 6)
    first.env["CAREFORALL_RECURRING_INTERVAL_SECONDS"] = "0.2"
    second = make_server(start=False, CAREFORALL_RECURRING_INTERVAL_SECONDS="0.2")
    # Busy machines start slowly; both must run at once.
    first.start(timeout=60)
    second.start(timeout=60)
    total = len(plan_ids) * 7
    wait_until(lambda: len(first.query(PAID)) >= total, timeout=60)
    charged, duplicates = _figures(first, plan_ids, 6)
    assert (charged, duplicates) == (total, 0)


def _aware(value: object) -> datetime:
    """A time read beside the server (SQLite gives text), in UTC."""
    moment = (
        value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    )
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
