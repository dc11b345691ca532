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
from collections import deque
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

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
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), r"\1 [REDACTED]"),
    # The tokens of mailed links (/reset-password?token=…) in any logged URL.
    (re.compile(r"(?i)\btoken=[^&\s\"']+"), "token=[REDACTED]"),
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
_CARD_SIZED = 10**12  # an integer of 13 digits or more

# Exact secret values of this process (JWT and webhook secrets, the admin's
# password): redacted wherever they appear. The newest few are kept.
_SECRETS: deque[str] = deque(maxlen=32)


def keep_out(*values: str | None) -> None:
    """Never write these values (secrets of this process) to a log line."""
    for value in values:
        if value and len(value) >= 6 and value not in _SECRETS:
            _SECRETS.append(value)


def redact_text(text: str) -> str:
    for secret in tuple(_SECRETS):
        if secret in text:
            text = text.replace(secret, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact(value: Any, key: str | None = None) -> Any:
    """`value` as it may appear in a log line (under `key`, if it has one)."""
    if key is not None and _SENSITIVE_KEY.search(key) and value is not None:
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


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request = CURRENT_REQUEST.get()
        if request is not None:
            entry["request_id"] = request.request_id
        ids = tracing.current_ids()
        if ids is not None:
            entry["trace_id"], entry["span_id"] = ids
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(redact(entry), default=str)


def json_handler(stream: IO[str] | None = None) -> logging.Handler:
    handler = logging.StreamHandler(sys.stdout if stream is None else stream)
    handler.setFormatter(JsonFormatter())
    return handler


def configure_logging(level: str = "INFO") -> None:
    root = logging.getLogger()
    root.handlers[:] = [json_handler()]
    root.setLevel(level)
    # The machine logs each ignored or refused trigger; the services say what matters.
    logging.getLogger("transitions").setLevel(logging.ERROR)
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
