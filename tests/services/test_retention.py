"""Retention: only finished rows past their days go, in short batches; pending
events, dead letters, the audit log and every money record stay."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta

import pytest
from prometheus_client import REGISTRY
from sqlmodel import SQLModel, col, select

from careforall.db import Database
from careforall.domain.clock import utcnow
from careforall.models import (
    AuditLog,
    Campaign,
    Mail,
    OutboxEvent,
    SimWebhook,
    WebhookEvent,
    WebhookLog,
)
from careforall.services.pledges import PledgeData, create_pledge
from careforall.services.retention import RetentionPolicy, prune
from careforall.services.unit_of_work import UnitOfWork
from careforall.settings import Settings, SettingsError
from tests.services.conftest import MakeAnon, count_rows

NOW = utcnow()
OUTBOX_ONLY = RetentionPolicy(outbox_days=30, webhook_log_days=0, sim_webhooks_days=0)
RETENTION_TABLES = {"outbox_events", "webhook_log", "sim_webhooks", "mails"}


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def add(db: Database, *rows: SQLModel) -> list[int]:
    """Insert rows; returns their ids."""
    with db.write_session() as session:
        session.add_all(rows)
        session.commit()
        return [row.id for row in rows]  # type: ignore[attr-defined]


def outbox(
    status: str, age_days: float, *, delivered: bool | None = None
) -> OutboxEvent:
    """An event written `age_days` ago; a done one was delivered a second later."""
    written = ago(age_days)
    delivered = status == "done" if delivered is None else delivered
    return OutboxEvent(
        name="PledgeCreated",
        payload="{}",
        status=status,
        created_at=written,
        available_at=written,
        processed_at=written + timedelta(seconds=1) if delivered else None,
        attempts=0 if status != "dead" else 8,
    )


def ids(db: Database, model: type[SQLModel]) -> set[int]:
    with db.read() as session:
        return set(session.exec(select(col(model.id))).all())  # type: ignore[attr-defined]


def pruned_metric(table: str) -> float:
    value = REGISTRY.get_sample_value(
        "careforall_retention_pruned_rows_total", {"table": table}
    )
    assert value is not None
    return value


def test_delivered_outbox_events_go_after_their_days_pending_and_dead_never(
    db: Database,
) -> None:
    old_done, done_31 = add(db, outbox("done", 200), outbox("done", 31))
    kept = add(
        db,
        outbox("pending", 400),  # never delivered, however old
        outbox("dead", 400),  # a dead letter waits for an admin
        outbox("pending", 400, delivered=True),  # delivered once, queued again
        outbox("done", 29),
        outbox("pending", 0),
        outbox("done", 0),
    )

    result = prune(UnitOfWork(db), policy=OUTBOX_ONLY, now=NOW)

    assert ids(db, OutboxEvent) == set(kept)
    assert result.deleted == {
        "outbox_events": 2,
        "webhook_log": 0,
        "sim_webhooks": 0,
        "mails": 0,
    }
    assert {old_done, done_31}.isdisjoint(ids(db, OutboxEvent))


def test_webhook_log_and_delivered_provider_webhooks_go_after_their_days(
    db: Database,
) -> None:
    policy = RetentionPolicy(outbox_days=0, webhook_log_days=90, sim_webhooks_days=30)
    logged = add(
        db,
        *(
            WebhookLog(outcome="processed", status_code=200, received_at=ago(days))
            for days in (365, 91, 89, 0)
        ),
    )
    sent = add(
        db,
        *(
            SimWebhook(
                event_id=f"evt_{days}_{delivered}",
                body="{}",
                next_attempt_at=ago(days),
                delivered_at=ago(days) if delivered else None,
            )
            for days, delivered in ((40, True), (31, True), (200, False), (10, True))
        ),
    )
    old_outbox = add(db, outbox("done", 400), outbox("done", 0))

    result = prune(UnitOfWork(db), policy=policy, now=NOW)

    assert ids(db, WebhookLog) == set(logged[2:])
    # A webhook the provider still owes stays, however long it has been owed.
    assert ids(db, SimWebhook) == set(sent[2:])
    assert ids(db, OutboxEvent) == set(old_outbox)  # 0 days: kept forever
    assert result.deleted == {
        "outbox_events": 0,
        "webhook_log": 2,
        "sim_webhooks": 2,
        "mails": 0,
    }


def test_zero_days_keeps_everything_forever(db: Database) -> None:
    policy = RetentionPolicy(
        outbox_days=0, webhook_log_days=0, sim_webhooks_days=0, mails_days=0
    )
    add(db, outbox("done", 3650), outbox("done", 3650))
    add(db, WebhookLog(outcome="duplicate", status_code=200, received_at=ago(3650)))

    result = prune(UnitOfWork(db), policy=policy, now=NOW)

    assert not policy.enabled
    assert result.total == 0
    assert count_rows(db, "outbox_events") == 2
    assert count_rows(db, "webhook_log") == 1


def test_the_newest_row_stays_so_ids_are_never_handed_out_again(db: Database) -> None:
    rows = add(db, *(outbox("done", 100) for _ in range(3)))

    prune(UnitOfWork(db), policy=OUTBOX_ONLY, now=NOW)
    (fresh,) = add(db, outbox("pending", 0))

    assert ids(db, OutboxEvent) == {rows[-1], fresh}
    assert fresh > rows[-1]


def test_rows_go_in_batches_and_a_stop_request_ends_the_run_between_them(
    db: Database,
) -> None:
    rows = add(db, *(outbox("done", 100) for _ in range(9)))
    asked: list[int] = []

    def should_stop() -> bool:
        asked.append(count_rows(db, "outbox_events"))
        return len(asked) > 2

    result = prune(
        UnitOfWork(db),
        policy=OUTBOX_ONLY,
        now=NOW,
        batch_size=3,
        should_stop=should_stop,
    )

    # Each batch committed on its own, three rows at a time, before the next.
    assert asked == [9, 6, 3]
    assert result.stopped
    assert result.deleted["outbox_events"] == 6
    assert ids(db, OutboxEvent) == set(rows[6:])
    rest = prune(UnitOfWork(db), policy=OUTBOX_ONLY, now=NOW, batch_size=3)
    assert (rest.deleted["outbox_events"], rest.stopped) == (2, False)
    assert ids(db, OutboxEvent) == {rows[-1]}


def test_money_records_audit_log_and_dedupe_keys_are_never_pruned(
    db: Database, make_anon: MakeAnon, campaign: Campaign
) -> None:
    donor, _ = make_anon()
    create_pledge(
        UnitOfWork(db),
        principal=donor,
        data=PledgeData(
            campaign_id=campaign.id, amount_cents=2500, idempotency_key="k"
        ),
    )
    add(
        db,
        AuditLog(at=ago(3650), action="refund", target_type="pledge", target_id="p"),
        outbox("done", 3650),
        outbox("done", 3650),
        outbox("pending", 3650),  # the table's newest row
    )
    with db.read() as session:
        statuses = dict(session.exec(select(OutboxEvent.id, OutboxEvent.status)).all())
    undelivered = {i for i, status in statuses.items() if status == "pending"}
    done = [i for i, status in statuses.items() if status == "done"]
    with db.write_session() as session:
        session.add(
            WebhookEvent(
                event_id="evt_old",
                type="payment.captured",
                pledge_id="p",
                received_at=ago(3650),
            )
        )
        session.commit()
    others = sorted(set(SQLModel.metadata.tables) - RETENTION_TABLES)
    before = {table: count_rows(db, table) for table in others}

    # A year from now everything is old: only the three tables may shrink.
    result = prune(
        UnitOfWork(db),
        policy=RetentionPolicy(outbox_days=1, webhook_log_days=1, sim_webhooks_days=1),
        now=NOW + timedelta(days=365),
    )

    assert {table: count_rows(db, table) for table in others} == before
    assert before["audit_log"] == 1 and before["webhook_events"] == 1
    assert before["pledges"] == 1 and before["pledge_transitions"] >= 1
    assert undelivered and undelivered <= ids(db, OutboxEvent)
    # Every finished event went: the new pledge's (written delivered) too.
    assert len(done) >= 3
    assert result.deleted["outbox_events"] == len(done)


def test_each_run_is_counted_by_table_and_logged_once(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    add(db, outbox("done", 100), outbox("done", 100), outbox("done", 0))
    add(db, WebhookLog(outcome="processed", status_code=200, received_at=ago(400)))
    add(db, WebhookLog(outcome="processed", status_code=200, received_at=ago(0)))
    before = {t: pruned_metric(t) for t in RETENTION_TABLES}

    with caplog.at_level(logging.INFO, logger="careforall.retention"):
        prune(UnitOfWork(db), policy=RetentionPolicy(), now=NOW)

    after = {t: pruned_metric(t) - before[t] for t in RETENTION_TABLES}
    assert after == {
        "outbox_events": 2,
        "webhook_log": 1,
        "sim_webhooks": 0,
        "mails": 0,
    }
    (line,) = [r for r in caplog.records if r.name == "careforall.retention"]
    assert line.getMessage() == "retention run"
    assert line.__dict__["deleted"] == {
        "outbox_events": 2,
        "webhook_log": 1,
        "sim_webhooks": 0,
        "mails": 0,
    }
    assert line.__dict__["keep_days"] == {
        "outbox_events": 30,
        "webhook_log": 90,
        "sim_webhooks": 30,
        "mails": 365,
    }


# --- settings ------------------------------------------------------------------


def _retention(env: Mapping[str, str]) -> tuple[float, float, float, float]:
    s = Settings.from_env(env)
    return (
        s.retention_outbox_days,
        s.retention_webhook_log_days,
        s.retention_sim_webhooks_days,
        s.retention_interval_seconds,
    )


def test_retention_settings_default_to_30_90_30_days_hourly() -> None:
    assert _retention({}) == (30, 90, 30, 3600)
    assert RetentionPolicy.from_settings(Settings()) == RetentionPolicy(30, 90, 30)


def test_one_variable_sets_every_table_and_per_table_ones_override_it() -> None:
    assert _retention({"CAREFORALL_RETENTION_DAYS": "7"}) == (7, 7, 7, 3600)
    env = {
        "CAREFORALL_RETENTION_DAYS": "7",
        "CAREFORALL_RETENTION_WEBHOOK_LOG_DAYS": "0",
        "CAREFORALL_RETENTION_SIM_WEBHOOKS_DAYS": "1.5",
        "CAREFORALL_RETENTION_INTERVAL_SECONDS": "60",
    }
    assert _retention(env) == (7, 0, 1.5, 60)
    assert _retention({"CAREFORALL_RETENTION_OUTBOX_DAYS": "0"}) == (0, 90, 30, 3600)


@pytest.mark.parametrize(
    "name", ["CAREFORALL_RETENTION_DAYS", "CAREFORALL_RETENTION_OUTBOX_DAYS"]
)
@pytest.mark.parametrize("raw", ["-1", "a month"])
def test_bad_retention_values_are_refused_by_name(name: str, raw: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: raw})


# --- mails ---------------------------------------------------------------------


def sent_mail(kind: str, days: float, status: str = "sent") -> Mail:
    at = ago(days)
    return Mail(
        kind=kind,
        cause_key=f"{kind}:{uuid.uuid4().hex}",
        to_address="someone@example.org",
        subject="s",
        text="t",
        html="h",
        status=status,
        attempts=1,
        created_at=at,
        next_attempt_at=at,
        sent_at=at if status == "sent" else None,
    )


def test_sent_mails_go_after_their_days_but_receipts_stay_however_old(
    db: Database,
) -> None:
    old = [sent_mail(kind, 400) for kind in ("digest", "alert", "refund", "declined")]
    kept = [
        sent_mail("receipt", 4000),  # a tax record
        sent_mail("goal_reached", 4000),  # once per campaign, ever
        sent_mail("digest", 300),  # not old enough
        sent_mail("alert", 400, status="dead"),  # not sent: an admin replays it
        sent_mail("digest", 400, status="kept"),
        sent_mail("digest", 0),  # the newest row
    ]
    add(db, *old, *kept)

    result = prune(UnitOfWork(db), policy=RetentionPolicy(), now=NOW)

    assert result.deleted["mails"] == 4
    with db.read() as session:
        left = session.exec(select(Mail.cause_key)).all()
    assert sorted(left) == sorted(m.cause_key for m in kept)


def test_mail_retention_reads_its_own_variable() -> None:
    assert Settings.from_env({}).retention_mails_days == 365
    env = {"CAREFORALL_RETENTION_MAILS_DAYS": "0"}
    assert Settings.from_env(env).retention_mails_days == 0
