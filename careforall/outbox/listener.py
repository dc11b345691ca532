"""PostgreSQL's LISTEN/NOTIFY: what one process commits, every process hears.

Each process keeps one extra connection that listens on two channels: new
outbox events (its dispatcher wakes and competes for them, FOR UPDATE SKIP
LOCKED decides who delivers) and changed totals (its subscribers get the new
figures). No broker: the database that holds the events also announces them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from opentelemetry.context import Context
from sqlalchemy import Engine

from careforall import tracing
from careforall.db import OUTBOX_CHANNEL, TOTALS_CHANNEL

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger("careforall.listener")

# How often the thread checks whether it should stop.
POLL_SECONDS = 0.1
MAX_RECONNECT_DELAY = 5.0


def conninfo(engine: Engine) -> str:
    """A libpq connection string for the engine's database."""
    url = engine.url.set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def totals_payload(changed: Mapping[str, Context | None]) -> str:
    """`campaign@traceparent,...`: what the listeners push, in whose trace."""
    return ",".join(
        f"{campaign_id}@{parent}"
        if (parent := tracing.traceparent_of(ctx))
        else campaign_id
        for campaign_id, ctx in changed.items()
    )


def parse_totals_payload(payload: str) -> dict[str, str | None]:
    changes: dict[str, str | None] = {}
    for entry in payload.split(","):
        campaign_id, _, parent = entry.partition("@")
        if campaign_id:
            changes[campaign_id] = parent or None
    return changes


class Listener:
    """A thread that turns notifications into calls, made in that thread.

    `on_outbox()` runs for new events, `on_totals({campaign: traceparent})`
    for changed totals, one call after the other in the order of the commits.
    After a lost connection it calls both (`on_totals(None)`: any campaign may
    have changed), since notifications sent meanwhile are gone.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        on_outbox: Callable[[], None],
        on_totals: Callable[[dict[str, str | None] | None], None],
    ) -> None:
        self._conninfo = conninfo(engine)
        self._on_outbox = on_outbox
        self._on_totals = on_totals
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.listening = threading.Event()

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name="careforall-listener", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _call(self, fn: Callable[..., None], *args: object) -> None:
        try:
            fn(*args)
        except Exception:
            # A failed push must not end the listening.
            log.exception("notification handling failed")

    def _run(self) -> None:
        # Imported here, by the thread that listens on PostgreSQL: a server
        # on SQLite never loads the driver (a sixth of a second at start).
        import psycopg

        delay = 0.1
        first = True
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {OUTBOX_CHANNEL}")
                    conn.execute(f"LISTEN {TOTALS_CHANNEL}")
                    self.listening.set()
                    delay = 0.1
                    if not first:
                        log.info("listening again after a lost connection")
                        self._call(self._on_outbox)
                        self._call(self._on_totals, None)
                    first = False
                    self._listen(conn)
            except psycopg.Error as exc:
                self.listening.clear()
                if self._stop.is_set():
                    return
                log.warning(
                    "notification listener lost its connection; reconnecting",
                    extra={"error": str(exc), "retry_in_seconds": delay},
                )
                self._stop.wait(delay)
                delay = min(delay * 2, MAX_RECONNECT_DELAY)
                first = False

    def _listen(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        while not self._stop.is_set():
            # Yields each notification as it arrives, for up to POLL_SECONDS.
            for note in conn.notifies(timeout=POLL_SECONDS):
                if note.channel == OUTBOX_CHANNEL:
                    self._call(self._on_outbox)
                elif note.channel == TOTALS_CHANNEL:
                    self._call(self._on_totals, parse_totals_payload(note.payload))
