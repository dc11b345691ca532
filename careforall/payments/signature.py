"""Stripe-style webhook signatures.

Header: `t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`.
"""

from __future__ import annotations

import hashlib
import hmac
import time

TOLERANCE_SECONDS = 300


class SignatureError(ValueError):
    """Why a signature was refused; the message is safe to return, and `kind`
    (missing, malformed, stale or mismatch) names it for metrics."""

    def __init__(self, message: str, kind: str = "malformed") -> None:
        super().__init__(message)
        self.kind = kind


SIGNATURE_FAILURES = ("missing", "malformed", "stale", "mismatch")


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256)
    return f"t={t},v1={digest.hexdigest()}"


def verify(
    secret: str,
    body: bytes,
    header: str | None,
    *,
    now: float | None = None,
    tolerance: int = TOLERANCE_SECONDS,
) -> None:
    """Raise SignatureError unless `header` signs `body` within the tolerance."""
    if not header:
        raise SignatureError("missing CareForAll-Signature header", "missing")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            # Unix seconds: more than 12 digits is no timestamp of this era.
            if not (value.isascii() and value.isdigit() and len(value) <= 12):
                raise SignatureError("malformed timestamp in signature")
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        raise SignatureError("signature header needs t= and v1=")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise SignatureError("signature timestamp is outside the tolerance", "stale")
    expected = hmac.new(
        secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256
    ).hexdigest()
    given = [c.encode() for c in candidates if c.isascii()]
    if not any(hmac.compare_digest(expected.encode(), c) for c in given):
        raise SignatureError("signature does not match", "mismatch")
