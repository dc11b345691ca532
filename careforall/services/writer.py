"""Group commit: one thread writes for many requests, one fsync per batch.

A durable commit costs an fsync, and on SQLite only one writer holds the lock
at a time, so a commit per request both caps throughput and piles threads up
on the lock. The writer owns the hot write paths instead: requests queue their
service call, and its thread takes every waiting job (up to `max_batch`),
opens ONE write transaction, runs each job in a SAVEPOINT of its own (a failing
job undoes only its own writes), commits once, and only then answers each job
and publishes the batch's events. No answer leaves before its commit is
durable, and jobs in one batch see each other's writes, so idempotency keys and
webhook event ids hold within a batch as across batches.

Services that call the payment provider must not run here: the provider writes
in a transaction of its own and would wait for this one.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy.exc import OperationalError

from careforall import metrics
from careforall.db import BUSY_SQLSTATES, Database, sqlstate
from careforall.domain.errors import ServiceBusy
from careforall.domain.events import Event
from careforall.services import outbox
from careforall.services.unit_of_work import (
    SharedTransaction,
    UnitOfWork,
    log_events,
)
from careforall.sqlite import TransactionLost, check_still_open

log = logging.getLogger("careforall.writer")

R = TypeVar("R")

DEFAULT_MAX_BATCH = 64
# How long the writer lets this process's other writers (the outbox
# dispatcher, the provider) take the write lock before its next batch.
YIELD_TIMEOUT_S = 0.25


def is_busy(exc: OperationalError) -> bool:
    """The write was refused and rolled back, so the caller may retry later.

    The write lock stayed taken past the busy timeout (an overload), or the
    database cannot be written for now (a read-only file, a full disk, an
    I/O error: SQLite rolls the transaction back). On PostgreSQL the SQLSTATE
    says so (lock timeout, serialization failure, lost connection, ...).
    """
    state = sqlstate(exc)
    if state is not None:
        return state in BUSY_SQLSTATES or state.startswith("08")
    message = str(exc.orig)
    return any(
        word in message
        for word in ("locked", "busy", "readonly", "disk is full", "disk I/O error")
    )


def _failure(exc: BaseException) -> BaseException:
    if isinstance(exc, StopIteration):
        # No future may hold one (it would end the coroutine that awaits it).
        return RuntimeError(f"a write service raised StopIteration: {exc!r}")
    if isinstance(exc, TransactionLost) or (
        isinstance(exc, OperationalError) and is_busy(exc)
    ):
        # The transaction rolled back, so the caller may simply retry.
        return ServiceBusy()
    return exc


@dataclass(eq=False)
class _Job:
    fn: Callable[[UnitOfWork], Any]
    context: contextvars.Context
    # Answered through `future` (submit), or on `loop` through `waiter` (run).
    future: Future[Any] | None = None
    loop: asyncio.AbstractEventLoop | None = None
    waiter: asyncio.Future[Any] | None = None

    def start(self) -> bool:
        """False when the caller gave up before the job ran: it is skipped."""
        if self.future is not None:
            return self.future.set_running_or_notify_cancel()
        return self.waiter is None or not self.waiter.cancelled()


# (waiter, result, error): how a batch answers one caller on its loop.
_Answer = tuple["asyncio.Future[Any]", Any, BaseException | None]


def _answer(outcomes: list[tuple[_Job, Any, BaseException | None]]) -> None:
    """From the writer thread: each job's result or error. Callers on an event
    loop are answered with one callback per loop, not one wake-up each."""
    answers: dict[asyncio.AbstractEventLoop, list[_Answer]] = {}
    for job, result, error in outcomes:
        failure = None if error is None else _failure(error)
        if job.future is not None:
            if job.future.done():  # answered before the batch failed
                continue
            if failure is not None:
                job.future.set_exception(failure)
            else:
                job.future.set_result(result)
        elif job.loop is not None and job.waiter is not None:
            answers.setdefault(job.loop, []).append((job.waiter, result, failure))
    for loop, waiting in answers.items():
        with contextlib.suppress(RuntimeError):  # its loop closed: no one waits
            loop.call_soon_threadsafe(_settle, waiting)


def _settle(answers: list[_Answer]) -> None:
    """On the event loop: answer every waiter of a batch (one wake-up for all)."""
    for waiter, result, error in answers:
        if waiter.done():  # the request was cancelled meanwhile
            continue
        try:
            if error is not None:
                waiter.set_exception(error)
            else:
                waiter.set_result(result)
        except Exception as exc:  # pragma: no cover - _failure makes errors settable
            # One answer that cannot be given must not leave the others waiting.
            waiter.set_exception(RuntimeError(f"the write's answer was lost: {exc}"))


_STOP = object()


class Writer:
    """The single writer thread. Thread-safe: submit() from anywhere."""

    def __init__(self, db: Database, *, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.db = db
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[_Job | object] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._stopped = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        with self._lock:
            if self._thread is not None or self._stopped:
                raise RuntimeError("the writer was already started")
            self._thread = threading.Thread(
                target=self._loop, name="careforall-writer", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Finish every job already queued, then end the thread.

        Jobs submitted afterwards fail with ServiceBusy.
        """
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            self._queue.put(_STOP)
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
        else:
            # Never started: nothing will run what was queued.
            self._drain_unstarted()

    def submit(self, fn: Callable[[UnitOfWork], R]) -> Future[R]:
        """Queue `fn(uow)`; the future resolves after the batch's commit."""
        future: Future[R] = Future()
        job = _Job(fn=fn, context=contextvars.copy_context(), future=future)
        with self._lock:
            if self._stopped:
                future.set_exception(ServiceBusy())
                return future
            self._queue.put(job)
        return future

    async def run(self, fn: Callable[[UnitOfWork], R]) -> R:
        """submit() for the event loop: wait for the answer without a thread.

        The batch answers all of its waiters on a loop with one callback,
        rather than a thread-safe future (and a wake-up of the loop) each.
        """
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[R] = loop.create_future()
        job = _Job(fn=fn, context=contextvars.copy_context(), loop=loop, waiter=waiter)
        with self._lock:
            if self._stopped:
                raise ServiceBusy()
            self._queue.put(job)
        return await waiter

    def _loop(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            batch: list[_Job] = [first]  # type: ignore[list-item]
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)  # type: ignore[arg-type]
            try:
                self._run_batch(batch)
            except BaseException as exc:  # pragma: no cover - a bug; keep serving
                log.exception("write batch failed")
                _answer([(job, None, exc) for job in batch])
            # Under load the next batch would begin at once, ahead of this
            # process's writers still on their way to their turn (the
            # dispatcher, the provider): they go first, and the batch grows
            # meanwhile. Several
            # processes take turns instead (sqlite.TakingTurns: every writer
            # of every process queues in the kernel), and waiting here for
            # this process's writers, themselves queued behind the other
            # process's, would only leave the lock idle.
            if not self.db.shared:
                self.db.write_waiters.wait_until_none(YIELD_TIMEOUT_S)

    def _drain_unstarted(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, _Job) and item.start():
                _answer([(item, None, ServiceBusy())])

    def _run_batch(self, batch: list[_Job]) -> None:
        """Run the jobs in one transaction; answer them only after COMMIT."""
        jobs = [job for job in batch if job.start()]
        if not jobs:
            return
        outcomes: list[tuple[_Job, Any, BaseException | None, list[Event]]] = []
        try:
            with self.db.write_connection() as connection:
                with connection.begin():  # BEGIN IMMEDIATE ... one COMMIT
                    shared = SharedTransaction(connection)
                    for job in jobs:
                        uow = UnitOfWork(self.db, shared=shared)
                        start = len(shared.events)
                        result: Any = None
                        error: BaseException | None = None
                        try:
                            result = job.context.run(job.fn, uow)
                        except BaseException as exc:
                            error = exc
                        events = shared.events[start:]
                        outcomes.append((job, result, error, events))
                        check_still_open(connection)
                    if not shared.changes_answers:
                        # Only new pledges (say): the kept answers stay current.
                        self.db.keep_answers(connection)
        except Exception as exc:
            # BEGIN or COMMIT failed: nothing in this batch was written.
            _answer([(job, None, exc) for job in jobs])
            return
        if shared.events:
            try:
                metrics.count_events(shared.events)
                for job, _result, _error, events in outcomes:
                    # Logged in the job's context: its trace, its request id.
                    job.context.run(log_events, events)
                self.db.notify_commit(events_due=outbox.any_due(shared.events))
            except Exception:
                log.exception("committed events not published")
        _answer([(job, result, error) for job, result, error, _events in outcomes])
