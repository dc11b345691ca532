"""Whether everything committed so far has been delivered: no outbox event
pending and no provider webhook owed. One pair of queries, read through the
test's `Database` here and through a server's own file or database by
`Server.settled` (tests/helpers/server.py)."""

from __future__ import annotations

from sqlalchemy import text

from careforall.db import Database

PENDING_EVENTS = "SELECT count(*) FROM outbox_events WHERE status = 'pending'"
OWED_WEBHOOKS = "SELECT count(*) FROM sim_webhooks WHERE delivered_at IS NULL"


def _count(db: Database, sql: str) -> int:
    with db.read() as session:
        return int(session.execute(text(sql)).scalar_one())


def outbox_drained(db: Database) -> bool:
    """No outbox event waits to be processed."""
    return _count(db, PENDING_EVENTS) == 0


def settled(db: Database) -> bool:
    """No outbox event waits and the provider owes no webhook."""
    return outbox_drained(db) and _count(db, OWED_WEBHOOKS) == 0
