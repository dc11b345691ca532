"""Structured logs: one JSON object per line on stdout, with secrets redacted.

Every line carries the request id of the HTTP request it was written for and,
when tracing is on, the trace and span ids, so a request's log lines and its
trace find each other. Before a line is written, values under sensitive keys
(password, token, secret, authorization, signature, ...) and anything that
looks like a token, a password hash, a signature or a card number are
replaced, wherever they occur.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections import deque
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import IO, Any

import orjson

from careforall import tracing

_STANDARD = set(vars(logging.makeLogRecord({})).keys()) | {
    "message",
    "asctime",
    "color_message",
    "taskName",
}

REDACTED = "[REDACTED]"
_SENSITIVE_KEY = re.compile(
    r"pass(word|wd|phrase)?|token|secret|authori[sz]ation|signature|cookie|"
    r"api[-_]?key|credential",
    re.IGNORECASE,
)
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # JSON Web Tokens (header.payload.signature, the header always starts "eyJ").
    (
        re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"),
        "[REDACTED_JWT]",
    ),
    (re.compile(r"\b(?i:(bearer|basic))\s+[A-Za-z0-9._~+/=-]+"), r"\1 [REDACTED]"),
    # The tokens of mailed links (/reset-password?token=…) in any logged URL.
    (re.compile(r"\b(?i:token)=[^&\s\"']+"), "token=[REDACTED]"),
    # Webhook signatures: t=<unix>,v1=<hex>.
    (re.compile(r"\bv1=[0-9a-fA-F]{16,}"), "v1=[REDACTED]"),
    (re.compile(r"\$argon2(?:id|i|d)\$[A-Za-z0-9$=,.+/_-]+"), "[REDACTED_HASH]"),
    # 13 to 19 digits, maybe grouped by spaces or dashes: a card number. Not
    # inside a word, so ids such as plg_0193... keep their hex digits.
    (
        re.compile(r"(?<![0-9A-Za-z_])(?:[0-9][ -]?){12,18}[0-9](?![0-9A-Za-z_])"),
        "[REDACTED_CARD]",
    ),
)
# Any of them, in one pass: most text holds none, and is then left as it is.
_ANY_PATTERN = re.compile("|".join(f"(?:{p.pattern})" for p, _ in _PATTERNS))
# Letters, digits and underscores only (ids, names, levels): of the patterns
# above, only a card number can match such text, and only as the whole of it.
_WORD = re.compile(r"\w*", re.ASCII)
_CARD_SIZED = 10**12  # an integer of 13 digits or more

# Exact secret values of this process (JWT and webhook secrets, the admin's
# password): redacted wherever they appear. The newest few are kept.
_SECRETS: deque[str] = deque(maxlen=32)


def keep_out(*values: str | None) -> None:
    """Never write these values (secrets of this process) to a log line."""
    for value in values:
        if value and len(value) >= 6 and value not in _SECRETS:
            _SECRETS.append(value)
    _REDACTED_TEXT.clear()


# Log lines repeat most of their values (logger names, levels, messages,
# methods, paths, operation names) and all their keys: each is checked once,
# then looked up. Bounded; the texts are checked again once a secret is added.
_CACHE_SIZE = 2048
_CACHE_LONGEST = 200
_REDACTED_TEXT: dict[str, str] = {}
_SENSITIVE_KEYS: dict[str, bool] = {}


def _redact_uncached(text: str) -> str:
    for secret in tuple(_SECRETS):
        if secret in text:
            text = text.replace(secret, REDACTED)
    if _WORD.fullmatch(text) is not None:
        if not (13 <= len(text) <= 19 and text.isdigit()):
            return text
    elif _ANY_PATTERN.search(text) is None:
        return text
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_text(text: str) -> str:
    cached = _REDACTED_TEXT.get(text)
    if cached is not None:
        return cached
    redacted = _redact_uncached(text)
    if len(text) <= _CACHE_LONGEST:
        if len(_REDACTED_TEXT) >= _CACHE_SIZE:
            _REDACTED_TEXT.clear()
        _REDACTED_TEXT[text] = redacted
    return redacted


def sensitive_key(key: str) -> bool:
    """Whether values under `key` are secrets whatever they hold."""
    sensitive = _SENSITIVE_KEYS.get(key)
    if sensitive is None:
        sensitive = _SENSITIVE_KEY.search(key) is not None
        if len(_SENSITIVE_KEYS) >= _CACHE_SIZE:
            _SENSITIVE_KEYS.clear()
        _SENSITIVE_KEYS[key] = sensitive
    return sensitive


def redact_fields(
    items: Iterable[tuple[str, Any]],
    into: dict[str, Any],
    skip: frozenset[str] | set[str] = frozenset(),
) -> dict[str, Any]:
    """The fields in `items` redacted, added to `into`, but those named in
    `skip` or starting with "_": `redact(dict(items))` unrolled for the
    commonest case, a text seen before under a key that is not sensitive."""
    texts, keys = _REDACTED_TEXT, _SENSITIVE_KEYS
    for key, value in items:
        if key in skip or key[:1] == "_":
            continue
        kind = value.__class__
        if keys.get(key) is not False:
            into[key] = redact(value, key)
        elif kind is str:
            cached = texts.get(value)
            into[key] = redact_text(value) if cached is None else cached
        elif kind is float or (kind is int and -_CARD_SIZED < value < _CARD_SIZED):
            into[key] = value
        else:
            into[key] = redact(value)
    return into


def redact(value: Any, key: str | None = None) -> Any:
    """`value` as it may appear in a log line (under `key`, if it has one)."""
    if key is not None and value is not None and sensitive_key(key):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        return "[REDACTED_CARD]" if abs(value) >= _CARD_SIZED else value
    if isinstance(value, dict):
        return {str(k): redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(v) for v in value]
    return redact_text(str(value))


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
        line: dict[str, Any] = {
            "time": timestamp(record.created),  # ours, and holds no secret
            "level": record.levelname.lower(),
            "logger": redact_text(record.name),
            "message": redact_text(record.getMessage()),
        }
        request = CURRENT_REQUEST.get()
        if request is not None:
            line["request_id"] = redact_text(request.request_id)
        ids = tracing.current_ids()
        if ids is not None:
            line["trace_id"], line["span_id"] = map(redact_text, ids)
        values = record.__dict__
        items: Iterable[tuple[str, Any]] = values.items()
        if values.get("_templated"):  # made by log_line: its fields come last
            items = islice(items, _TEMPLATED, None)
        redact_fields(items, line, skip=_STANDARD)
        if record.exc_info:
            line["exception"] = redact_text(self.formatException(record.exc_info))
        elif record.exc_text:
            line["exception"] = redact_text(record.exc_text)
        return encode(line)


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


class JsonLines(logging.StreamHandler[IO[str]]):
    """A StreamHandler writing each line with one call, flushed only where
    the stream keeps what it is given (stdout run unbuffered, as the image
    and the tests run it, writes through at once)."""

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
            stream = self.stream
            stream.write(line + "\n")
            if not getattr(stream, "write_through", False):
                stream.flush()
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)


def json_handler(stream: IO[str] | None = None) -> logging.Handler:
    handler = JsonLines(sys.stdout if stream is None else stream)
    handler.setFormatter(JsonFormatter())
    return handler


def configure_logging(level: str = "INFO") -> None:
    root = logging.getLogger()
    root.handlers[:] = [json_handler()]
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
