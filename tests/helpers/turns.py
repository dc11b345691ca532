"""The check that SQLite writers take turns, in one process or across two."""

from __future__ import annotations

import threading

from careforall.db import Database
from careforall.sqlite import TakingTurns

TOUCH = "UPDATE app_secrets SET value = value"


def check_writes_take_turns(first: Database, second: Database) -> None:
    """A write through `second` waits for `first`'s COMMIT, then begins at
    once (no busy-handler sleep), and a ROLLBACK gives the turn back too.
    `first` and `second` are one Database (two writers of one process) or two
    on one file (two processes, through the file lock)."""
    began = threading.Event()

    def write() -> None:
        with second.write_connection() as conn, conn.begin():
            began.set()
            conn.exec_driver_sql(TOUCH)

    with first.write_connection() as conn:
        transaction = conn.begin()
        conn.exec_driver_sql(TOUCH)
        raw = conn.connection.dbapi_connection
        assert isinstance(raw, TakingTurns) and raw.holds_turn
        waiting = threading.Thread(target=write)
        waiting.start()
        waiting.join(0.3)
        assert waiting.is_alive() and not began.is_set()  # waits its turn
        transaction.commit()
        assert not raw.holds_turn
        waiting.join(10)
        assert began.is_set() and not waiting.is_alive()

        began.clear()
        transaction = conn.begin()
        conn.exec_driver_sql(TOUCH)
        transaction.rollback()
        assert not raw.holds_turn
    write()
    assert began.is_set()
