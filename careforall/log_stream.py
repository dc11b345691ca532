"""The handler that writes the JSON lines: in batches, so that a busy server
does not make a system call for every line it logs.

Lines wait in memory until one of these comes first: WARNING or worse is
logged (written at once with the lines before it, so a crash leaves its
error line), the waiting lines reach 4 KB, `flush_seconds` pass (a thread
writes them), or the process exits normally (logging's shutdown flushes the
handler). A SIGKILL can thus lose the INFO and DEBUG lines of the last
`flush_seconds`, at most 4 KB of them. SIGTERM writes them too: uvicorn,
having shut down, hands SIGTERM back to the handler it found
(`write_waiting_lines_on_sigterm`), which writes the lines, then lets the
signal end the process as it would have.

Each write holds whole lines and at most 4 KB (PIPE_BUF), so when several
worker processes share one pipe (a container's stdout) their writes never
interleave within a line.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import weakref
from typing import IO

# The most one write holds (but for a longer line alone): what a pipe writes
# whole, without another process's bytes in between.
CHUNK = 4096
# Lines at this level or worse are written at once, with those waiting.
WRITE_AT_ONCE = logging.WARNING
# How long the server's INFO and DEBUG lines may wait (configure_logging).
FLUSH_SECONDS = 0.5


class JsonLines(logging.StreamHandler[IO[str]]):
    """A StreamHandler writing whole lines, each with one call when
    `flush_seconds` is 0, else in batches (see the module's text). The stream
    is flushed after each write where it keeps what it is given (stdout run
    unbuffered, as the image and the tests run it, writes through at once)."""

    def __init__(self, stream: IO[str], flush_seconds: float = 0.0) -> None:
        super().__init__(stream)
        self.flush_seconds = flush_seconds
        self._waiting: list[str] = []
        self._size = 0
        self._flusher: threading.Thread | None = None
        self._stopped = threading.Event()
        if flush_seconds > 0:
            _BATCHING.add(self)

    def handle(self, record: logging.LogRecord) -> bool:
        lock = self.lock
        if self.filters or lock is None:
            return bool(super().handle(record))
        # Handler.handle without a pass over no filters and the lock's wrappers.
        with lock:
            self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        try:
            formatter = self.formatter
            line = (
                self.format(record) if formatter is None else formatter.format(record)
            )
            self.add(line, record.levelno)
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def write_line(self, line: str, level: int) -> None:
        """Write (or queue) `line`, already formatted, as `emit` would."""
        with self.lock:  # type: ignore[union-attr]  # made by Handler.__init__
            try:
                # The commonest case (a request's INFO line joining a batch
                # that stays under CHUNK) without `add`'s other branches.
                if level < WRITE_AT_ONCE and self._flusher is not None:
                    size = self._size + len(line) + 1
                    if size < CHUNK:
                        self._waiting.append(line)
                        self._size = size
                        return
                self.add(line, level)
            except RecursionError:
                raise
            except Exception:
                self.handleError(logging.makeLogRecord({"msg": line[:200]}))

    def add(self, line: str, level: int) -> None:
        """`line` to the stream, now or with the next batch; the lock is held."""
        if self.flush_seconds <= 0:
            self._write(line + "\n")
            return
        size = len(line) + 1
        if self._size + size > CHUNK and self._waiting:
            self._write_waiting()
        self._waiting.append(line)
        self._size += size
        if level >= WRITE_AT_ONCE or self._size >= CHUNK:
            self._write_waiting()
        elif self._flusher is None:
            self._start_flusher()

    def flush(self) -> None:
        """Write the lines waiting, then flush the stream."""
        with self.lock:  # type: ignore[union-attr]
            if self._waiting:
                self._write_waiting()
            elif self.stream is not None and hasattr(self.stream, "flush"):
                self.stream.flush()

    def close(self) -> None:
        self._stopped.set()
        try:
            self.flush()
        except (OSError, ValueError):
            # The stream went first (closed, or its reader gone): what waited
            # cannot be written anywhere, and closing must not fail for it,
            # as logging's own shutdown does not.
            pass
        finally:
            super().close()

    def _write_waiting(self) -> None:
        waiting, self._waiting, self._size = self._waiting, [], 0
        waiting.append("")
        self._write("\n".join(waiting))

    def _write(self, text: str) -> None:
        stream = self.stream
        stream.write(text)
        if not getattr(stream, "write_through", False):
            stream.flush()

    def _start_flusher(self) -> None:
        # A daemon thread: it never holds the process open; the exit's flush
        # writes what it had not.
        flusher = threading.Thread(
            target=_flush_every,
            args=(weakref.ref(self), self._stopped, self.flush_seconds),
            name="careforall-log-flush",
            daemon=True,
        )
        self._flusher = flusher
        flusher.start()

    def _forget_after_fork(self) -> None:
        # The parent writes the lines it had; the child starts its own thread.
        self._waiting, self._size, self._flusher = [], 0, None


def _flush_every(
    handler: weakref.ref[JsonLines], closed: threading.Event, seconds: float
) -> None:
    while not closed.wait(seconds):
        alive = handler()
        if alive is None:
            return
        alive.flush()
        del alive


_BATCHING: weakref.WeakSet[JsonLines] = weakref.WeakSet()


def write_waiting_lines_on_sigterm() -> None:
    """From now on SIGTERM writes the waiting lines before it ends the
    process; unless something else already handles it (or this is not the
    main thread, which alone may set handlers)."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _write_then_end)


def _write_then_end(signum: int, _frame: object) -> None:
    for handler in list(_BATCHING):
        try:
            handler.flush()
        except Exception:  # ending the process matters more
            pass
    # The process ends as SIGTERM ends it (its exit status says so).
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)


def _after_fork_in_child() -> None:
    for handler in list(_BATCHING):
        handler._forget_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
