"""Structured logs: one JSON object per line on stdout, with secrets redacted.

Every line carries the request id of the HTTP request it was written for and,
when tracing is on, the trace and span ids, so a request's log lines and its
trace find each other. Before a line is written, its values are redacted
(careforall/redaction.py); the lines are written in batches
(careforall/log_stream.py).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import IO, Any

import orjson

from careforall import tracing
from careforall.log_stream import (
    FLUSH_SECONDS,
    JsonLines,
    write_waiting_lines_on_sigterm,
)
from careforall.redaction import (
    cleared_with_secrets,
    redact_fields,
    redact_id,
    redact_text,
)

_STANDARD = set(vars(logging.makeLogRecord({})).keys()) | {
    "message",
    "asctime",
    "color_message",
    "taskName",
}

# --- the request a line belongs to -------------------------------------------


@dataclass
class RequestLog:
    """What the request's log line says; filled in as the request goes."""

    request_id: str
    operation: str | None = None
    operation_type: str | None = None
    principal: str = "none"  # none, anon, user, admin, invalid, unchecked
    user_id: str | None = None
    errors: list[str] = field(default_factory=list)


CURRENT_REQUEST: ContextVar[RequestLog | None] = ContextVar(
    "careforall_request", default=None
)


def current_request() -> RequestLog | None:
    return CURRENT_REQUEST.get()


# --- formatting --------------------------------------------------------------


# For what orjson refuses (keys that are not strings, integers over 64 bits)
# and for lines that are not ASCII. Made once: json.dumps(default=...) makes
# an encoder at each call.
_ENCODER = json.JSONEncoder(default=str, separators=(",", ":"))
_second: tuple[int, str] = (-1, "")  # the last second formatted, and its text
_milli: tuple[int, str] = (-1, "")  # the last millisecond formatted, and its text


def timestamp(created: float) -> str:
    """`created` (a Unix time) as ISO 8601 in UTC, to the millisecond; the
    date and time of day are formatted once a second."""
    global _second, _milli
    milli, text = _milli
    now = int(created * 1000)
    if now == milli:
        return text
    whole, fraction = divmod(now, 1000)
    second, prefix = _second
    if whole != second:
        prefix = datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _second = (whole, prefix)
    text = f"{prefix}.{fraction:03d}+00:00"
    _milli = (now, text)
    return text


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = _in_context({})
        values = record.__dict__
        items: Iterable[tuple[str, Any]] = values.items()
        if values.get("_templated"):  # made by log_line: its fields come last
            items = islice(items, _TEMPLATED, None)
        redact_fields(items, line, skip=_STANDARD)
        if record.exc_info:
            line["exception"] = redact_text(self.formatException(record.exc_info))
        elif record.exc_text:
            line["exception"] = redact_text(record.exc_text)
        head = line_head(record.name, record.levelname, record.getMessage())
        return _joined(record.created, head, encode(line))


def _in_context(line: dict[str, Any]) -> dict[str, Any]:
    """`line` with the ids of the request and the span it is written in."""
    request = CURRENT_REQUEST.get()
    if request is not None:
        line["request_id"] = redact_id(request.request_id)
    ids = tracing.current_ids()
    if ids is not None:
        line["trace_id"], line["span_id"] = map(redact_text, ids)
    return line


# The level, logger and message of a line, redacted and encoded, by logger
# name, level name and message: log_line's messages are a few constants.
_HEADS: dict[tuple[str, str, str], str] = cleared_with_secrets({})


def line_head(name: str, level: str, message: str) -> str:
    key = (name, level, message)
    head = _HEADS.get(key)
    if head is None:
        fields = {
            "level": level.lower(),
            "logger": redact_text(name),
            "message": redact_text(message),
        }
        head = encode(fields)[1:-1]
        if len(message) <= 200:
            if len(_HEADS) >= 2048:
                _HEADS.clear()
            _HEADS[key] = head
    return head


def _joined(created: float, head: str, rest: str) -> str:
    """The line: its time (ours, and holds no secret), its head, then the
    fields encoded in `rest` (an object, maybe empty)."""
    time_and_head = '{"time":"' + timestamp(created) + '",' + head
    return time_and_head + ("}" if rest == "{}" else "," + rest[1:])


def encoded_fields(fields: Mapping[str, Any]) -> str:
    """`fields` redacted, as a JSON object."""
    return encode(redact_fields(fields.items(), {}, skip=_STANDARD))


def encode(line: dict[str, Any]) -> str:
    """One JSON object on one line, ASCII only (as the standard library
    writes it), so no stream encoding can lose a character of it."""
    try:
        text = orjson.dumps(line, default=str).decode()
    except TypeError:
        return _ENCODER.encode(line)
    return text if text.isascii() else _ENCODER.encode(line)


# A record as logging makes it when it looks up neither the caller nor the
# thread or process (the lines leave them out), before its own values.
_TEMPLATE: dict[str, Any] = {
    "name": "",
    "msg": "",
    "args": (),
    "levelname": "",
    "levelno": 0,
    "pathname": "(unknown file)",
    "filename": "(unknown file)",
    "module": "(unknown file)",
    "exc_info": None,
    "exc_text": None,
    "stack_info": None,
    "lineno": 0,
    "funcName": "(unknown function)",
    "created": 0.0,
    "msecs": 0.0,
    "relativeCreated": 0.0,
    "thread": None,
    "threadName": None,
    "processName": None,
    "process": None,
    "taskName": None,
    "_templated": True,
}
_TEMPLATED = len(_TEMPLATE)
_RESERVED = _TEMPLATE.keys() | {"message", "asctime"}
_STARTED = time.time()


def log_line(
    logger: logging.Logger, level: int, message: str, fields: Mapping[str, Any]
) -> None:
    """`logger.log(level, message, extra=fields)` for the lines written for
    every request and every pledge, at a fraction of logging's work: the
    record is filled from a template rather than by LogRecord's constructor
    and the record factory, then handed to the logger's handlers as usual
    (its level, filters and handlers apply)."""
    if not logger.isEnabledFor(level):
        return
    if not _RESERVED.isdisjoint(fields):
        logger.log(level, message, extra=dict(fields))  # refused as logging does
        return
    handler = direct_handler(logger, level)
    if handler is not None:
        # No record at all: the line is all the handler would make of it.
        line = redact_fields(fields.items(), _in_context({}), skip=_STANDARD)
        head = line_head(logger.name, logging.getLevelName(level), message)
        handler.write_line(_joined(time.time(), head, encode(line)), level)
        return
    now = time.time()
    record: logging.LogRecord = object.__new__(logging.LogRecord)
    values = record.__dict__
    values.update(_TEMPLATE)
    values["name"] = logger.name
    values["msg"] = message
    values["levelname"] = logging.getLevelName(level)
    values["levelno"] = level
    values["created"] = now
    values["msecs"] = (now - int(now)) * 1000
    values["relativeCreated"] = (now - _STARTED) * 1000
    values.update(fields)
    logger.handle(record)


def direct_handler(logger: logging.Logger, level: int) -> JsonLines | None:
    """The handler a record of `logger` at `level` would reach when it is our
    JSON handler alone, with nothing on the way that could look at the record
    (a filter, another handler or formatter); else None."""
    found: JsonLines | None = None
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters or current.disabled:
            return None
        for handler in current.handlers:
            if found is not None or type(handler) is not JsonLines:
                return None
            if handler.filters or type(handler.formatter) is not JsonFormatter:
                return None
            found = handler
        current = current.parent if current.propagate else None
    return found if found is not None and level >= found.level else None


def json_handler(
    stream: IO[str] | None = None, flush_seconds: float = 0.0
) -> logging.Handler:
    """JSON lines on `stream` (stdout): each written at once, or with
    `flush_seconds` in batches (careforall/log_stream.py)."""
    handler = JsonLines(sys.stdout if stream is None else stream, flush_seconds)
    handler.setFormatter(JsonFormatter())
    return handler


def configure_logging(level: str = "INFO", *, batched: bool = False) -> None:
    """JSON lines on stdout at `level`. A server's lines are `batched` (a
    request's line is written with others, at most FLUSH_SECONDS later); a
    command's are written at once, in order with what it prints."""
    root = logging.getLogger()
    handler = json_handler(None, FLUSH_SECONDS if batched else 0.0)
    replaced, root.handlers[:] = root.handlers[:], [handler]
    for old in replaced:
        if isinstance(old, JsonLines):
            old.close()  # its waiting lines written first
    if batched:
        write_waiting_lines_on_sigterm()
    root.setLevel(level)
    # The lines name neither the caller's file and line nor the thread or
    # process: logging need not look them up for every record.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None
    # The machine logs each ignored or refused trigger; the services say what matters.
    logging.getLogger("transitions").setLevel(logging.ERROR)
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
