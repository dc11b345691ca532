"""The Database wrapper's own promises, on both databases."""

from __future__ import annotations

import pytest

from careforall.db import Database


def test_a_connection_given_back_after_dispose_is_closed(db: Database) -> None:
    """A worker thread that outlives shutdown returns its connection to a pool
    no one uses any more; it must be closed then, not left open."""
    conn = db.engine.connect()
    conn.exec_driver_sql("SELECT 1")
    raw = conn.connection.dbapi_connection
    assert raw is not None
    db.dispose()
    conn.close()  # given back late
    with pytest.raises(Exception, match="(?i)closed"):
        raw.cursor().execute("SELECT 1")


def test_a_connection_given_back_before_dispose_stays_usable(db: Database) -> None:
    with db.engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1")
    with db.engine.connect() as again:
        assert again.exec_driver_sql("SELECT 1").scalar() == 1
