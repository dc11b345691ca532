"""The JSON lines handler: lines written in batches of whole lines, at once
for warnings and worse, on a timer, and at exit."""

from __future__ import annotations

import io
import logging
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest

from careforall.log_stream import CHUNK, FLUSH_SECONDS, JsonLines
from careforall.logs import configure_logging, json_handler
from tests.helpers.waiting import wait_until


class Writes(io.StringIO):
    """A stream that keeps each write apart."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


def record(message: str, level: int = logging.INFO) -> logging.LogRecord:
    return logging.makeLogRecord({"msg": message, "levelno": level})


@pytest.fixture
def batching() -> Iterator[tuple[JsonLines, Writes]]:
    stream = Writes()
    handler = JsonLines(stream, flush_seconds=3600)
    handler.setFormatter(logging.Formatter("%(message)s"))
    try:
        yield handler, stream
    finally:
        handler.close()


def test_info_lines_wait_and_a_warning_writes_them_with_it_in_order(
    batching: tuple[JsonLines, Writes],
) -> None:
    handler, stream = batching
    handler.handle(record("one"))
    handler.handle(record("two", logging.DEBUG))
    assert stream.getvalue() == ""
    handler.handle(record("three", logging.WARNING))
    assert stream.writes == ["one\ntwo\nthree\n"]
    handler.handle(record("four", logging.ERROR))
    assert stream.getvalue() == "one\ntwo\nthree\nfour\n"


def test_flush_and_close_write_what_waits(batching: tuple[JsonLines, Writes]) -> None:
    handler, stream = batching
    handler.handle(record("one"))
    handler.flush()
    assert stream.getvalue() == "one\n"
    handler.write_line("two", logging.INFO)
    handler.close()
    assert stream.getvalue() == "one\ntwo\n"


def test_each_write_holds_whole_lines_and_at_most_a_pipes_atomic_size(
    batching: tuple[JsonLines, Writes],
) -> None:
    handler, stream = batching
    lines = [f"line {n} " + "x" * (n % 300) for n in range(200)]
    long = "y" * (CHUNK + 10)
    for line in lines[:100]:
        handler.write_line(line, logging.INFO)
    handler.write_line(long, logging.INFO)  # alone: longer than a write may be
    for line in lines[100:]:
        handler.write_line(line, logging.INFO)
    handler.flush()
    assert stream.getvalue().splitlines() == [*lines[:100], long, *lines[100:]]
    assert len(stream.writes) > 1
    for text in stream.writes:
        assert text.endswith("\n")
        assert len(text) <= CHUNK or text == long + "\n"


def test_lines_are_written_within_the_flush_interval_without_more_logging() -> None:
    stream = Writes()
    handler = JsonLines(stream, flush_seconds=0.05)
    handler.setFormatter(logging.Formatter("%(message)s"))
    try:
        handler.handle(record("quiet hour"))
        wait_until(lambda: stream.getvalue() == "quiet hour\n", timeout=10)
    finally:
        handler.close()


def test_without_an_interval_each_line_is_written_at_once() -> None:
    stream = Writes()
    handler = json_handler(stream)
    logger = logging.getLogger("careforall.test.stream")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        logger.info("at once")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    assert len(stream.writes) == 1 and '"message":"at once"' in stream.writes[0]


def test_a_handler_whose_stream_is_gone_closes_without_failing() -> None:
    """Logging is replaced (configure_logging) after the stream it wrote to was
    closed: the waiting lines have nowhere to go, and the caller goes on."""
    stream = Writes()
    handler = JsonLines(stream, flush_seconds=60)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.handle(record("waiting"))
    stream.close()
    handler.close()
    assert handler.stream is stream


def test_the_server_batches_its_lines() -> None:
    root = logging.getLogger()  # given back after the test (tests/conftest.py)
    configure_logging("INFO", batched=True)
    (handler,) = root.handlers
    assert isinstance(handler, JsonLines) and handler.flush_seconds == FLUSH_SECONDS
    assert 0 < FLUSH_SECONDS <= 1
    # A command's lines are written at once, in order with what it prints.
    configure_logging("INFO")
    (handler,) = root.handlers
    assert isinstance(handler, JsonLines) and handler.flush_seconds == 0


def test_a_process_that_exits_writes_its_waiting_lines() -> None:
    program = (
        "import logging\n"
        "from careforall.logs import configure_logging\n"
        "configure_logging('INFO', batched=True)\n"
        "logging.getLogger('careforall.test').info('last words')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert '"message":"last words"' in done.stdout


def test_sigterm_writes_the_waiting_lines_then_ends_the_process() -> None:
    program = (
        "import logging, os, signal, time\n"
        "from careforall.logs import configure_logging\n"
        "configure_logging('INFO', batched=True)\n"
        "logging.getLogger('careforall.test').info('before the end')\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "time.sleep(30)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == -signal.SIGTERM, done.stderr
    assert '"message":"before the end"' in done.stdout
