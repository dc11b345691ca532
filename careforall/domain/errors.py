"""Domain errors, one class per error code of the public contract."""

from __future__ import annotations


class DomainError(Exception):
    """A refusal a client should see: `code` is the contract's error code."""

    code = "BAD_USER_INPUT"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Unauthenticated(DomainError):
    code = "UNAUTHENTICATED"


class Forbidden(DomainError):
    code = "FORBIDDEN"


class NotFound(DomainError):
    code = "NOT_FOUND"


class BadUserInput(DomainError):
    code = "BAD_USER_INPUT"


class IdempotencyKeyReused(DomainError):
    code = "IDEMPOTENCY_KEY_REUSED"


class InvalidTransition(DomainError):
    code = "INVALID_TRANSITION"


class CampaignNotActive(DomainError):
    code = "CAMPAIGN_NOT_ACTIVE"


class RateLimited(DomainError):
    code = "RATE_LIMITED"

    def __init__(self, message: str, retry_after_seconds: int) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class ServiceBusy(RateLimited):
    """The database stayed locked past its timeout: nothing changed; retry soon."""

    def __init__(self) -> None:
        super().__init__(
            "The service is busy right now and nothing was changed; "
            "try again in a moment.",
            retry_after_seconds=1,
        )


class ProviderBusy(RateLimited):
    """The payment provider did not answer: the call may have happened, and
    asking again is safe (every call is idempotent per pledge and step)."""

    def __init__(self) -> None:
        super().__init__(
            "The payment provider did not answer in time. The payment may still "
            "go through (the pledge's status will show it); asking again never "
            "charges twice.",
            retry_after_seconds=10,
        )


# The contract's codes, in the order of their classes above.
ERROR_CODES = tuple(cls.code for cls in DomainError.__subclasses__())
