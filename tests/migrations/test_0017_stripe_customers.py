"""0017 adds `stripe_customers` beside the tables of a database in use: the
plans and users there stay as they were, down and up again."""

from __future__ import annotations

from sqlalchemy import text

from tests.migrations.seed import (
    STAMP,
    OldDatabase,
    insert,
    insert_campaign,
    insert_user,
)


def test_0017_on_existing_plans(old_database: OldDatabase) -> None:
    old_database.upgrade("0016")
    with old_database.engine.begin() as conn:
        insert_user(conn, "0016")
        insert_campaign(conn, "0016")
        insert(
            conn,
            "recurring_donations",
            id="rec_1",
            donor_user_id="usr_1",
            campaign_id="cmp_1",
            amount_cents=2500,
            currency="USD",
            interval="MONTHLY",
            status="ACTIVE",
            payment_method="pm_card_ok",
            idempotency_key="k",
            started_at=STAMP,
            period=1,
            attempt=0,
            created_at=STAMP,
            updated_at=STAMP,
        )
    old_database.upgrade()
    with old_database.engine.begin() as conn:
        insert(
            conn,
            "stripe_customers",
            user_id="usr_1",
            customer_id="cus_1",
            created_at=STAMP,
        )
        plans = conn.execute(
            text("SELECT id, payment_method, period FROM recurring_donations")
        ).all()
    assert [tuple(row) for row in plans] == [("rec_1", "pm_card_ok", 1)]
    old_database.downgrade("0016")
    assert old_database.rows("SELECT count(*) FROM recurring_donations") == [(1,)]
    assert "stripe_customers" not in old_database.tables()
    old_database.upgrade()
