"""What a log line may not hold: values under sensitive keys (password,
token, secret, authorization, signature, ...) and anything that looks like a
token, a password hash, a signature or a card number are replaced, wherever
they occur, and so are this process's own secrets.

Most values repeat from line to line: each is checked once, then looked up.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable
from typing import Any, TypeVar

Cache = TypeVar("Cache", bound=dict[Any, Any])

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
    for cache in _CLEARED_WITH_SECRETS:
        cache.clear()


def cleared_with_secrets(cache: Cache) -> Cache:
    """`cache` (of text made from redacted values), emptied whenever a
    secret is added, so that what was checked before is checked again."""
    _CLEARED_WITH_SECRETS.append(cache)
    return cache


# Log lines repeat most of their values (logger names, levels, messages,
# methods, paths, operation names) and all their keys: each is checked once,
# then looked up. Bounded; the texts are checked again once a secret is added.
_CACHE_SIZE = 2048
_CACHE_LONGEST = 200
_REDACTED_TEXT: dict[str, str] = {}
_SENSITIVE_KEYS: dict[str, bool] = {}
_CLEARED_WITH_SECRETS: list[dict[Any, Any]] = []


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


def plain_id(text: str) -> bool:
    """Whether `text` (an id: a request's, made by uuid4 or sent by the
    client) can be written as it is: letters and digits only, not a card
    number, holding no secret. Not remembered: most are seen once."""
    if not (text.isascii() and text.isalnum()):
        return False
    if 13 <= len(text) <= 19 and text.isdigit():
        return False
    for secret in tuple(_SECRETS):
        if secret in text:
            return False
    return True


def redact_id(text: str) -> str:
    """An id redacted as any text, without being remembered."""
    return text if plain_id(text) else _redact_uncached(text)


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
